//! Flow blocks: how final flow records are kept.
//!
//! A block holds up to [`BLOCK_RECORDS`] final records of one capture, written in one
//! row of `flow_blocks`, instead of one SQLite row (and five B-tree entries) per
//! record: a row per record capped ingest at tens of thousands of records per second
//! (`docs/ARCHITECTURE.md`, "The store"). A block row carries
//!
//! - `hosts`: a Bloom filter of every originator and responder address in the block, so
//!   a host query reads a few kilobytes per block and decodes only the blocks that may
//!   hold the host;
//! - `keys`: each record's first packet time, addresses and server port, LZ4: what a
//!   scan probes first;
//! - `meta`: the queryable fields of each record ([`Row`]: times, addresses, ports,
//!   counters, state, uid…) in a compact binary form, LZ4-compressed in frames of
//!   [`FRAME_ROWS`] records, which is what the filter language and the views'
//!   connection lists evaluate;
//! - `data`: the whole records in their stored form (`codec.rs`), LZ4-compressed in
//!   frames of [`FRAME_ROWS`] records (neighbouring records compress far better
//!   together than apart; one record costs one frame to read). Blocks written before
//!   meta format 2 hold the records' JSON text there instead; both are read.
//!
//! Every decoder here checks its bounds and reports a damaged block as an error string
//! (the caller names the store and block); nothing panics on a bad file (the fuzz
//! target `store_blocks` runs every query over arbitrary block bytes).

use std::collections::HashSet;

use tunnelwatch_model::{Cause, FlowRecord};
use tunnelwatch_output::jsonl;

use crate::addr::addr_to_blob;
use crate::codec;

/// Most records in one block.
pub(crate) const BLOCK_RECORDS: usize = 2048;

/// First byte of a decompressed `meta` blob: the row format's version, which also says
/// how the records in `data` are kept: 2, in their stored form (`codec.rs`); 1 (schema
/// version 2's blocks and migrated interim rows), as JSON text.
const META_FORMAT: u8 = 2;
const META_FORMAT_JSON: u8 = 1;

/// A record as a block or interim row keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stored<'a> {
    /// The stored form (`codec.rs`), and the ids its meta row holds.
    Binary {
        body: &'a [u8],
        uid: &'a str,
        community_id: &'a str,
    },
    /// JSON text, as `read --flows` writes it (blocks of meta format 1).
    Json(&'a [u8]),
}

impl Stored<'_> {
    /// The record.
    pub(crate) fn record(self) -> Result<FlowRecord, String> {
        match self {
            Stored::Binary {
                body,
                uid,
                community_id,
            } => codec::decode(body, uid, community_id),
            Stored::Json(t) => {
                serde_json::from_slice(t).map_err(|e| format!("not a flow record: {e}"))
            }
        }
    }

    /// Appends the record's JSON as `read --flows` writes it (without the newline).
    pub(crate) fn write_json(self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Stored::Binary { .. } => jsonl::write_json(out, &self.record()?),
            Stored::Json(t) => {
                std::str::from_utf8(t).map_err(|_| "record text is not UTF-8".to_string())?;
                out.extend_from_slice(t);
            }
        }
        Ok(())
    }
}

/// Where a row's record is in its data frame, and in which form.
#[derive(Clone, Debug)]
pub(crate) struct RecordAt {
    pub range: std::ops::Range<usize>,
    pub json: bool,
}

impl RecordAt {
    /// The record in `frame` (its decompressed data frame), with the `uid` and
    /// `community_id` of its meta row.
    pub(crate) fn in_frame<'a>(
        self,
        frame: &'a [u8],
        uid: &'a str,
        community_id: &'a str,
    ) -> Result<Stored<'a>, String> {
        let body = frame
            .get(self.range)
            .ok_or_else(|| "record out of its data frame's bounds".to_string())?;
        Ok(if self.json {
            Stored::Json(body)
        } else {
            Stored::Binary {
                body,
                uid,
                community_id,
            }
        })
    }
}

/// Bloom filter bits per distinct address (rounded up to a power of two) and probes:
/// at 10–20 bits and 6 probes, under 1 % of the blocks without a host are read.
const BLOOM_BITS_PER_HOST: usize = 10;
const BLOOM_PROBES: u8 = 6;

/// The queryable fields of one stored record, borrowed from a decoded `meta` blob.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row<'a> {
    /// First packet, µs since the epoch.
    pub ts: i64,
    /// Last packet, µs.
    pub last_ts: i64,
    /// Seconds.
    pub duration: f64,
    /// Final record (every block row is; interim rows are not).
    pub fin: bool,
    /// Originator address, stored form.
    pub orig_h: [u8; 16],
    /// Responder address, stored form.
    pub resp_h: [u8; 16],
    /// Originator port.
    pub orig_p: u16,
    /// Responder port.
    pub resp_p: u16,
    /// Packets sent by the originator.
    pub orig_pkts: u64,
    /// Packets sent by the responder.
    pub resp_pkts: u64,
    /// Payload bytes sent by the originator.
    pub orig_bytes: u64,
    /// Payload bytes sent by the responder.
    pub resp_bytes: u64,
    /// IP bytes sent by the originator.
    pub orig_ip_bytes: u64,
    /// IP bytes sent by the responder.
    pub resp_ip_bytes: u64,
    /// Flow uid.
    pub uid: &'a str,
    /// Community ID.
    pub community_id: &'a str,
    /// Transport name.
    pub proto: &'a str,
    /// Service names, comma-joined.
    pub service: Option<&'a str>,
    /// Zeek conn_state.
    pub conn_state: &'a str,
    /// Zeek history.
    pub history: &'a str,
    /// Why the record was written.
    pub cause: &'a str,
}

/// Bytes of a row's fixed part: ts, last_ts, duration (8 each), orig_h, resp_h (16
/// each), orig_p, resp_p (2 each), flags (1), six counters (8 each), the offset and
/// length of the record in its data frame, offset of the row's text fields (4 each).
const FIXED: usize = 8 * 3 + 16 * 2 + 2 * 2 + 1 + 8 * 6 + 4 * 3;
/// Where each fixed field starts.
const AT_ORIG_H: usize = 24;
const AT_RESP_H: usize = 40;
const AT_PORTS: usize = 56;
const AT_FLAGS: usize = 60;
const AT_COUNTERS: usize = 61;
const AT_RECORD: usize = 109;

/// Appends the fixed part of `r`'s row to `fixed` and its text fields to `var`.
fn encode_row(fixed: &mut Vec<u8>, var: &mut Vec<u8>, r: &FlowRecord, at: (usize, usize)) {
    let u32_of = |v: usize| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
    fixed.extend_from_slice(&r.ts.as_micros().to_le_bytes());
    fixed.extend_from_slice(&r.last_ts.as_micros().to_le_bytes());
    fixed.extend_from_slice(&r.duration.to_le_bytes());
    fixed.extend_from_slice(&addr_to_blob(r.orig_h));
    fixed.extend_from_slice(&addr_to_blob(r.resp_h));
    fixed.extend_from_slice(&r.orig_p.to_le_bytes());
    fixed.extend_from_slice(&r.resp_p.to_le_bytes());
    fixed.push(u8::from(r.cause != Cause::Status) | (u8::from(r.service.is_some()) << 1));
    for v in [
        r.orig_pkts,
        r.resp_pkts,
        r.orig_bytes,
        r.resp_bytes,
        r.orig_ip_bytes,
        r.resp_ip_bytes,
    ] {
        fixed.extend_from_slice(&v.to_le_bytes());
    }
    fixed.extend_from_slice(&u32_of(at.0));
    fixed.extend_from_slice(&u32_of(at.1));
    fixed.extend_from_slice(&u32_of(var.len()));
    let mut w = codec::W(var);
    for t in [
        &r.uid,
        &r.community_id,
        &r.proto,
        r.service.as_deref().unwrap_or(""),
        r.conn_state.as_str(),
        &r.history,
        r.cause.as_str(),
    ] {
        w.str(t);
    }
}

/// An interim row's uncompressed `meta` and record (its stored form).
pub(crate) fn interim_of(r: &FlowRecord) -> (Vec<u8>, Vec<u8>) {
    let mut record = Vec::with_capacity(512);
    codec::encode(&mut record, r);
    let (mut fixed, mut var) = (Vec::with_capacity(FIXED), Vec::new());
    encode_row(&mut fixed, &mut var, r, (0, record.len()));
    (assemble(META_FORMAT, 1, &fixed, &var), record)
}

/// The uncompressed `meta` of one record kept as JSON text of `json_len` bytes (an
/// interim row moved from schema version 1).
pub(crate) fn meta_of_json(r: &FlowRecord, json_len: usize) -> Vec<u8> {
    let (mut fixed, mut var) = (Vec::with_capacity(FIXED), Vec::new());
    encode_row(&mut fixed, &mut var, r, (0, json_len));
    assemble(META_FORMAT_JSON, 1, &fixed, &var)
}

fn assemble(format: u8, n: usize, fixed: &[u8], var: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + fixed.len() + var.len());
    out.push(format);
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(fixed);
    out.extend_from_slice(var);
    out
}

pub(crate) fn le64(b: &[u8], at: usize) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    a
}

fn le32(b: &[u8], at: usize) -> usize {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a) as usize
}

/// What the views' connection lists look at first, read without decoding a row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keys {
    pub ts: i64,
    pub orig_h: [u8; 16],
    pub resp_h: [u8; 16],
    pub resp_p: u16,
}

impl Keys {
    /// The keys from `b`, whose ts, orig_h, resp_h and resp_p start at `at` (in that
    /// order; the caller has checked the length).
    fn read(b: &[u8], at: [usize; 4]) -> Keys {
        Keys {
            ts: i64::from_le_bytes(le64(b, at[0])),
            orig_h: addr16(b, at[1]),
            resp_h: addr16(b, at[2]),
            resp_p: u16::from_le_bytes([b[at[3]], b[at[3] + 1]]),
        }
    }
}

/// The 16 bytes of an address at `at` (the caller has checked the length).
pub(crate) fn addr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

/// A decompressed `meta` blob: a format byte, the row count (u32), the rows' fixed
/// parts, then their text fields. Its length is checked once, so the fixed fields of
/// any row are read without further checks.
pub(crate) struct Meta<'a> {
    /// Records in `data` are JSON text (format 1).
    json: bool,
    n: usize,
    fixed: &'a [u8],
    var: &'a [u8],
}

impl<'a> Meta<'a> {
    /// Checks the format byte and that the fixed parts are all there.
    pub(crate) fn parse(buf: &'a [u8]) -> Result<Meta<'a>, String> {
        let json = match buf.first() {
            Some(&META_FORMAT) => false,
            Some(&META_FORMAT_JSON) => true,
            Some(v) => {
                return Err(format!(
                    "meta format {v} is not known (expected {META_FORMAT_JSON} or {META_FORMAT})"
                ))
            }
            None => return Err("empty meta".into()),
        };
        if buf.len() < 5 {
            return Err("meta truncated in its row count".into());
        }
        let n = le32(buf, 1);
        let end = n
            .checked_mul(FIXED)
            .and_then(|f| f.checked_add(5))
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| format!("meta of {} bytes cannot hold {n} rows", buf.len()))?;
        Ok(Meta {
            json,
            n,
            fixed: &buf[5..end],
            var: &buf[end..],
        })
    }

    /// Rows.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    fn fixed(&self, i: usize) -> &'a [u8] {
        &self.fixed[i * FIXED..(i + 1) * FIXED]
    }

    /// Row `i`'s first packet time, addresses and responder port (`i < len()`).
    pub(crate) fn keys(&self, i: usize) -> Keys {
        Keys::read(self.fixed(i), [0, AT_ORIG_H, AT_RESP_H, AT_PORTS + 2])
    }

    /// Row `i` whole (`i < len()`), and where its record is in its data frame.
    pub(crate) fn row(&self, i: usize) -> Result<(Row<'a>, RecordAt), String> {
        let f = self.fixed(i);
        let k = self.keys(i);
        let mut c = [0u64; 6];
        for (j, v) in c.iter_mut().enumerate() {
            *v = u64::from_le_bytes(le64(f, AT_COUNTERS + j * 8));
        }
        let (rec_at, rec_len) = (le32(f, AT_RECORD), le32(f, AT_RECORD + 4));
        let mut rd = codec::R::at(self.var, le32(f, AT_RECORD + 8));
        let flags = f[AT_FLAGS];
        let uid = rd.text()?;
        let community_id = rd.text()?;
        let proto = rd.text()?;
        let service = rd.text()?;
        let conn_state = rd.text()?;
        let history = rd.text()?;
        let cause = rd.text()?;
        let range = rec_at
            .checked_add(rec_len)
            .map(|end| rec_at..end)
            .ok_or_else(|| "record range overflows".to_string())?;
        Ok((
            Row {
                ts: k.ts,
                last_ts: i64::from_le_bytes(le64(f, 8)),
                duration: f64::from_le_bytes(le64(f, 16)),
                fin: flags & 1 != 0,
                orig_h: k.orig_h,
                resp_h: k.resp_h,
                orig_p: u16::from_le_bytes([f[AT_PORTS], f[AT_PORTS + 1]]),
                resp_p: k.resp_p,
                orig_pkts: c[0],
                resp_pkts: c[1],
                orig_bytes: c[2],
                resp_bytes: c[3],
                orig_ip_bytes: c[4],
                resp_ip_bytes: c[5],
                uid,
                community_id,
                proto,
                service: (flags & 2 != 0).then_some(service),
                conn_state,
                history,
                cause,
            },
            RecordAt {
                range,
                json: self.json,
            },
        ))
    }
}

/// Decompresses a `meta` or `data` blob.
///
/// The size written before the LZ4 block is checked first: LZ4 cannot expand data more
/// than 255 times, so a larger claim is damage, refused before anything is allocated
/// (a damaged prefix must not make a query ask for gigabytes).
pub(crate) fn unpack(blob: &[u8]) -> Result<Vec<u8>, String> {
    let Some(prefix) = blob.get(..4) else {
        return Err("does not decompress: shorter than its size".into());
    };
    let size = le32(prefix, 0);
    if size > (blob.len() - 4).saturating_mul(255).saturating_add(16) {
        return Err(format!(
            "does not decompress: {size} bytes claimed from {} stored",
            blob.len()
        ));
    }
    lz4_flex::decompress_size_prepended(blob).map_err(|e| format!("does not decompress: {e}"))
}

/// SplitMix64's finaliser: a fixed, well-mixed 64-bit hash step. Stored Bloom filters
/// depend on it, so it never changes without a new `hosts` format.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of an address (stored form) the Bloom filters use.
pub(crate) fn addr_hash(a: &[u8; 16]) -> u64 {
    let (hi, lo) = a.split_at(8);
    let hi = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
    let lo = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
    mix(hi ^ mix(lo ^ 0x7477_7374_626c_6f6f))
}

/// A Bloom filter over address hashes: byte 0 is the probe count, the rest a bit array
/// whose length is a power of two.
pub(crate) fn bloom_build(hashes: &HashSet<u64>) -> Vec<u8> {
    let bits = (hashes.len() * BLOOM_BITS_PER_HOST)
        .max(512)
        .next_power_of_two();
    let mut out = vec![0u8; 1 + bits / 8];
    out[0] = BLOOM_PROBES;
    for &h in hashes {
        let (mut x, step) = (h, mix(h) | 1);
        for _ in 0..BLOOM_PROBES {
            let b = (x as usize) & (bits - 1);
            out[1 + b / 8] |= 1 << (b % 8);
            x = x.wrapping_add(step);
        }
    }
    out
}

/// Whether the filter may hold `h` (a damaged filter answers yes: the block is read).
pub(crate) fn bloom_may_hold(bloom: &[u8], h: u64) -> bool {
    let Some((&k, bitv)) = bloom.split_first() else {
        return true;
    };
    let bits = bitv.len() * 8;
    if bits == 0 || !bits.is_power_of_two() {
        return true;
    }
    let (mut x, step) = (h, mix(h) | 1);
    for _ in 0..k {
        let b = (x as usize) & (bits - 1);
        if bitv[b / 8] & (1 << (b % 8)) == 0 {
            return false;
        }
        x = x.wrapping_add(step);
    }
    true
}

/// Rows whose meta and records are compressed together in one frame of `meta` and of
/// `data`: a query that wants one record decompresses ~20 + ~80 KB, not the block's
/// megabytes, and LZ4 (whose matches reach back 64 KiB) compresses frames of this size
/// about as well as a whole block.
pub(crate) const FRAME_ROWS: usize = 64;

/// Bytes of a row in the `keys` blob: ts (i64), orig_h, resp_h (16 each), resp_p (u16).
const KEY_BYTES: usize = 8 + 16 + 16 + 2;

/// The rows' keys of a block (its decompressed `keys` blob): what scans probe first.
pub(crate) struct KeyList<'a> {
    buf: &'a [u8],
}

impl<'a> KeyList<'a> {
    /// Checks that the blob is whole rows.
    pub(crate) fn parse(buf: &'a [u8]) -> Result<KeyList<'a>, String> {
        if buf.len() % KEY_BYTES != 0 {
            return Err(format!("keys of {} bytes are not whole rows", buf.len()));
        }
        Ok(KeyList { buf })
    }

    /// Rows.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() / KEY_BYTES
    }

    /// Row `i`'s keys (`i < len()`).
    pub(crate) fn get(&self, i: usize) -> Keys {
        Keys::read(
            &self.buf[i * KEY_BYTES..(i + 1) * KEY_BYTES],
            [0, 8, 24, 40],
        )
    }
}

/// A framed blob (`meta` or `data`): a u32 LE frame count, a u32 LE length per frame,
/// then the frames, each LZ4 with its size first; frame *f* holds rows
/// *f*·[`FRAME_ROWS`] onwards.
pub(crate) struct Frames<'a> {
    frames: Vec<&'a [u8]>,
}

impl<'a> Frames<'a> {
    /// Splits a stored blob into its frames.
    pub(crate) fn parse(blob: &'a [u8]) -> Result<Frames<'a>, String> {
        if blob.len() < 4 {
            return Err("framed blob truncated in its frame count".into());
        }
        let n = le32(blob, 0);
        let mut at = n
            .checked_mul(4)
            .and_then(|l| l.checked_add(4))
            .filter(|&e| e <= blob.len())
            .ok_or_else(|| format!("blob of {} bytes cannot hold {n} frame lengths", blob.len()))?;
        let mut frames = Vec::with_capacity(n);
        for i in 0..n {
            let len = le32(blob, 4 + i * 4);
            let end = at
                .checked_add(len)
                .filter(|&e| e <= blob.len())
                .ok_or_else(|| format!("frame {i} runs past the blob"))?;
            frames.push(&blob[at..end]);
            at = end;
        }
        Ok(Frames { frames })
    }

    /// Frames.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Frame `f`, decompressed.
    pub(crate) fn frame(&self, f: usize) -> Result<Vec<u8>, String> {
        let packed = self.frames.get(f).ok_or_else(|| format!("no frame {f}"))?;
        unpack(packed)
    }
}

fn framed(frames: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = frames.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(4 + 4 * frames.len() + total);
    let u32_of = |v: usize| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&u32_of(frames.len()));
    for f in frames {
        out.extend_from_slice(&u32_of(f.len()));
    }
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

/// A block being filled.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    /// Meta rows of the current frame: fixed parts and text fields.
    fixed: Vec<u8>,
    var: Vec<u8>,
    /// Records of the current frame, stored form.
    data: Vec<u8>,
    keys: Vec<u8>,
    /// Frames done, compressed.
    meta_frames: Vec<Vec<u8>>,
    data_frames: Vec<Vec<u8>>,
    hosts: HashSet<u64>,
    records: usize,
    min_ts: i64,
    max_ts: i64,
}

/// A block ready to be written.
pub(crate) struct Block {
    pub records: i64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub hosts: Vec<u8>,
    pub keys: Vec<u8>,
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

impl BlockBuilder {
    /// Records in the block so far.
    pub(crate) fn len(&self) -> usize {
        self.records
    }

    fn end_frame(&mut self) {
        let rows = self.records - FRAME_ROWS * self.meta_frames.len();
        let meta = assemble(META_FORMAT, rows, &self.fixed, &self.var);
        self.meta_frames
            .push(lz4_flex::compress_prepend_size(&meta));
        self.data_frames
            .push(lz4_flex::compress_prepend_size(&self.data));
        self.fixed.clear();
        self.var.clear();
        self.data.clear();
    }

    /// Adds a record.
    pub(crate) fn push(&mut self, r: &FlowRecord) {
        if self.records == 0 {
            self.fixed.clear();
            self.var.clear();
            self.data.clear();
            self.keys.clear();
            self.meta_frames.clear();
            self.data_frames.clear();
            self.hosts.clear();
            self.min_ts = i64::MAX;
            self.max_ts = i64::MIN;
        } else if self.records % FRAME_ROWS == 0 {
            self.end_frame();
        }
        let before = self.data.len();
        codec::encode(&mut self.data, r);
        encode_row(
            &mut self.fixed,
            &mut self.var,
            r,
            (before, self.data.len() - before),
        );
        let (c, s) = (addr_to_blob(r.orig_h), addr_to_blob(r.resp_h));
        let ts = r.ts.as_micros();
        self.keys.extend_from_slice(&ts.to_le_bytes());
        self.keys.extend_from_slice(&c);
        self.keys.extend_from_slice(&s);
        self.keys.extend_from_slice(&r.resp_p.to_le_bytes());
        self.hosts.insert(addr_hash(&c));
        self.hosts.insert(addr_hash(&s));
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.records += 1;
    }

    /// Compresses the block and starts a new one.
    pub(crate) fn take(&mut self) -> Block {
        if self.records > FRAME_ROWS * self.meta_frames.len() {
            self.end_frame();
        }
        let b = Block {
            records: self.records as i64,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            hosts: bloom_build(&self.hosts),
            keys: lz4_flex::compress_prepend_size(&self.keys),
            meta: framed(&self.meta_frames),
            data: framed(&self.data_frames),
        };
        self.records = 0;
        b
    }
}

/// Rows of a block whose meta is read: `frames` of the block's `meta`, decompressed on
/// first use.
pub(crate) struct MetaFrames<'a> {
    frames: Frames<'a>,
    open: Vec<Option<Vec<u8>>>,
}

impl<'a> MetaFrames<'a> {
    /// Over a stored `meta` blob.
    pub(crate) fn new(blob: &'a [u8]) -> Result<MetaFrames<'a>, String> {
        let frames = Frames::parse(blob)?;
        let open = (0..frames.len()).map(|_| None).collect();
        Ok(MetaFrames { frames, open })
    }

    /// Calls `f` with row `i` of the block and where its record is in its data frame.
    pub(crate) fn with_row<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&Row<'_>, RecordAt) -> T,
    ) -> Result<T, String> {
        let n = i / FRAME_ROWS;
        let slot = self
            .open
            .get_mut(n)
            .ok_or_else(|| format!("no meta frame for row {i}"))?;
        if slot.is_none() {
            *slot = Some(self.frames.frame(n)?);
        }
        let buf = slot.as_deref().unwrap_or_default();
        let m = Meta::parse(buf)?;
        let at = i % FRAME_ROWS;
        if at >= m.len() {
            return Err(format!("row {i} is not in its meta frame"));
        }
        let (r, rec) = m.row(at)?;
        Ok(f(&r, rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_holds_what_was_put_and_rejects_most_else() {
        let put: HashSet<u64> = (0..2000u64).map(mix).collect();
        let f = bloom_build(&put);
        assert!(put.iter().all(|&h| bloom_may_hold(&f, h)));
        let false_pos = (10_000..110_000u64)
            .map(mix)
            .filter(|&h| bloom_may_hold(&f, h))
            .count();
        assert!(false_pos < 2_000, "{false_pos} false positives in 100,000");
        // A damaged filter reads the block rather than hiding it.
        assert!(bloom_may_hold(&[], 1));
        assert!(bloom_may_hold(&[6, 0, 0, 0], 1));
    }

    #[test]
    fn damaged_meta_is_an_error_not_a_panic() {
        let r = crate::test_flow("C1", "10.0.0.1", "192.0.2.1", 443, 1000, true);
        let (meta, record) = interim_of(&r);
        let m = Meta::parse(&meta).unwrap();
        assert_eq!(m.len(), 1);
        let (row, at) = m.row(0).unwrap();
        assert_eq!(
            (row.uid, row.resp_p, &at.range),
            ("C1", 443, &(0..record.len()))
        );
        let stored = at.in_frame(&record, row.uid, row.community_id).unwrap();
        assert_eq!(stored.record().unwrap(), r);
        assert_eq!(m.keys(0).orig_h, addr_to_blob(r.orig_h));
        // Cut anywhere: the count check or a text field says so.
        for cut in 0..meta.len() {
            let bad = Meta::parse(&meta[..cut]).and_then(|m| m.row(0).map(|_| ()));
            assert!(bad.is_err(), "cut at {cut} decoded");
        }
        // A row count the bytes cannot hold.
        let mut lying = meta.clone();
        lying[1..5].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Meta::parse(&lying).is_err());
    }
}
