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
//! - `meta`: the queryable fields of each record ([`Row`]: times, addresses, ports,
//!   counters, state, uid…) in a compact binary form, LZ4-compressed, which is what the
//!   filter language and the views' connection lists evaluate;
//! - `data`: the records' JSON text as `read --flows` writes it, LZ4-compressed as one
//!   stream (JSON of neighbouring records compresses far better together than apart),
//!   returned byte for byte by queries.
//!
//! Every decoder here checks its bounds and reports a damaged block as an error string
//! (the caller names the store and block); nothing panics on a bad file.

use std::collections::HashSet;

use tunnelwatch_model::{Cause, FlowRecord};
use tunnelwatch_output::jsonl;

use crate::addr::addr_to_blob;

/// Most records in one block.
pub(crate) const BLOCK_RECORDS: usize = 2048;

/// First byte of a decompressed `meta` blob: the row format's version.
const META_FORMAT: u8 = 1;

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
    /// Length of the record's JSON text in the block's `data`.
    pub json_len: usize,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the meta row of `r` (whose JSON text is `json_len` bytes) to `out`.
pub(crate) fn encode_row(out: &mut Vec<u8>, r: &FlowRecord, json_len: usize) {
    out.extend_from_slice(&r.ts.as_micros().to_le_bytes());
    out.extend_from_slice(&r.last_ts.as_micros().to_le_bytes());
    out.extend_from_slice(&r.duration.to_le_bytes());
    out.extend_from_slice(&addr_to_blob(r.orig_h));
    out.extend_from_slice(&addr_to_blob(r.resp_h));
    out.extend_from_slice(&r.orig_p.to_le_bytes());
    out.extend_from_slice(&r.resp_p.to_le_bytes());
    let flags = u8::from(r.cause != Cause::Status) | (u8::from(r.service.is_some()) << 1);
    out.push(flags);
    for v in [
        r.orig_pkts,
        r.resp_pkts,
        r.orig_bytes,
        r.resp_bytes,
        r.orig_ip_bytes,
        r.resp_ip_bytes,
        json_len as u64,
    ] {
        put_varint(out, v);
    }
    put_str(out, &r.uid);
    put_str(out, &r.community_id);
    put_str(out, &r.proto);
    put_str(out, r.service.as_deref().unwrap_or(""));
    put_str(out, r.conn_state.as_str());
    put_str(out, &r.history);
    put_str(out, r.cause.as_str());
}

/// A cursor over encoded rows.
pub(crate) struct RowReader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> RowReader<'a> {
    /// Rows of a decompressed `meta` blob (checks the format byte).
    pub(crate) fn block(buf: &'a [u8]) -> Result<RowReader<'a>, String> {
        match buf.first() {
            Some(&META_FORMAT) => Ok(RowReader { buf, at: 1 }),
            Some(v) => Err(format!(
                "meta format {v} is not known (expected {META_FORMAT})"
            )),
            None => Err("empty meta".into()),
        }
    }

    /// One row with no format byte (an interim record's meta).
    pub(crate) fn single(buf: &'a [u8]) -> RowReader<'a> {
        RowReader { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("meta truncated at byte {}", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.at))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "string length".to_string())?;
        let at = self.at;
        std::str::from_utf8(self.take(n)?).map_err(|_| format!("text at byte {at} is not UTF-8"))
    }

    /// The next row, `None` at the end.
    pub(crate) fn next_row(&mut self) -> Result<Option<Row<'a>>, String> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let ts = i64::from_le_bytes(self.arr()?);
        let last_ts = i64::from_le_bytes(self.arr()?);
        let duration = f64::from_le_bytes(self.arr()?);
        let orig_h = self.arr()?;
        let resp_h = self.arr()?;
        let orig_p = u16::from_le_bytes(self.arr()?);
        let resp_p = u16::from_le_bytes(self.arr()?);
        let flags = self.take(1)?[0];
        let mut n = [0u64; 7];
        for v in n.iter_mut() {
            *v = self.varint()?;
        }
        let uid = self.str()?;
        let community_id = self.str()?;
        let proto = self.str()?;
        let service = self.str()?;
        let conn_state = self.str()?;
        let history = self.str()?;
        let cause = self.str()?;
        Ok(Some(Row {
            ts,
            last_ts,
            duration,
            fin: flags & 1 != 0,
            orig_h,
            resp_h,
            orig_p,
            resp_p,
            orig_pkts: n[0],
            resp_pkts: n[1],
            orig_bytes: n[2],
            resp_bytes: n[3],
            orig_ip_bytes: n[4],
            resp_ip_bytes: n[5],
            json_len: usize::try_from(n[6]).map_err(|_| "JSON length".to_string())?,
            uid,
            community_id,
            proto,
            service: (flags & 2 != 0).then_some(service),
            conn_state,
            history,
            cause,
        }))
    }
}

/// Rows of a decompressed `meta` blob, with each row's JSON range in `data`.
pub(crate) fn rows(meta: &[u8]) -> Result<Vec<(Row<'_>, std::ops::Range<usize>)>, String> {
    let mut rd = RowReader::block(meta)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(r) = rd.next_row()? {
        let end = at
            .checked_add(r.json_len)
            .ok_or_else(|| "JSON lengths overflow".to_string())?;
        out.push((r, at..end));
        at = end;
    }
    Ok(out)
}

/// Decompresses a `meta` or `data` blob.
pub(crate) fn unpack(blob: &[u8]) -> Result<Vec<u8>, String> {
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

/// A block being filled.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    meta: Vec<u8>,
    data: Vec<u8>,
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
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

impl BlockBuilder {
    /// Records in the block so far.
    pub(crate) fn len(&self) -> usize {
        self.records
    }

    /// Adds a record.
    pub(crate) fn push(&mut self, r: &FlowRecord) {
        if self.records == 0 {
            self.meta.clear();
            self.meta.push(META_FORMAT);
            self.data.clear();
            self.hosts.clear();
            self.min_ts = i64::MAX;
            self.max_ts = i64::MIN;
        }
        let before = self.data.len();
        jsonl::write_json(&mut self.data, r);
        encode_row(&mut self.meta, r, self.data.len() - before);
        self.hosts.insert(addr_hash(&addr_to_blob(r.orig_h)));
        self.hosts.insert(addr_hash(&addr_to_blob(r.resp_h)));
        let ts = r.ts.as_micros();
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.records += 1;
    }

    /// Compresses the block and starts a new one.
    pub(crate) fn take(&mut self) -> Block {
        let b = Block {
            records: self.records as i64,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            hosts: bloom_build(&self.hosts),
            meta: lz4_flex::compress_prepend_size(&self.meta),
            data: lz4_flex::compress_prepend_size(&self.data),
        };
        self.records = 0;
        b
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
    fn truncated_meta_is_an_error_not_a_panic() {
        let r = crate::test_flow("C1", "10.0.0.1", "192.0.2.1", 443, 1000, true);
        let mut meta = vec![META_FORMAT];
        encode_row(&mut meta, &r, 10);
        assert!(rows(&meta[..1]).unwrap().is_empty());
        for cut in 2..meta.len() {
            let got = rows(&meta[..cut]);
            assert!(got.is_err(), "cut at {cut} decoded");
        }
        let all = rows(&meta).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.uid, r.uid);
        assert_eq!(all[0].1, 0..10);
    }
}
