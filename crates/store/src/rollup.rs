//! Rollups: the per-hour and all-time totals the views read instead of flows.
//!
//! Three kinds are kept — client → server:port pairs, clients, and server:ports — as
//! *segments*: each ingest transaction sums its final records per key in memory and
//! writes, per kind, one segment per hour it touched and one all-time segment (compact
//! varint entries, see `encode`) in the transaction that writes the records, so a
//! killed store's rollups agree with its flows. An upsert per key and a B-tree index
//! per access path cost more than the flows themselves (`docs/ARCHITECTURE.md`, "The
//! store"); appending a segment costs one row. When a (kind, hour) — or the all-time
//! scope — has more than [`MAX_SEGMENTS`] segments, they are merged into one in the
//! same transaction, so a query reads at most that many per hour.
//!
//! Queries without time bounds or day slots read the all-time segments: their cost
//! depends on the number of distinct keys, not on flows or hours. Bounded queries read
//! the hourly segments of their range. The time view's per-minute totals stay a plain
//! table (`roll_minute`): at most 60 keys an hour.

use std::collections::HashMap;
use std::hash::BuildHasher;

use rusqlite::{params, OptionalExtension, Transaction};
use tunnelwatch_model::FlowRecord;

use crate::addr::addr_to_blob;
use crate::blocks::{addr16, le64};
use crate::codec::{R, W};
use crate::fast::{FastHasher, FastMap, FastSet, KeyedMap};
use crate::views::Totals;
use crate::{Store, StoreError};

/// Most segments of one (kind, hour) before they are merged.
pub const MAX_SEGMENTS: i64 = 8;

const HOUR_US: i64 = 3_600_000_000;
const MINUTE_US: i64 = 60_000_000;

/// First byte of a decompressed segment of format 1 (schema version 2: LZ4 of fixed
/// 98-byte entries).
const SEGMENT_FORMAT_1: u8 = 1;
/// Bytes of one format-1 entry: client (16), server (16), port (2), eight i64 totals.
const ENTRY_1: usize = 16 + 16 + 2 + 8 * 8;
/// First bytes of a segment of format 2 (compact entries, not compressed): as a format-1
/// blob's LZ4 size prefix they would claim 4 GiB, which no segment holds.
const COMPACT: [u8; 5] = [0xFF, 0xFF, 0xFF, 0xFF, 2];

/// What a rollup is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RollKind {
    /// Client → server:port.
    Pair = 1,
    /// Client.
    Client = 2,
    /// Server:port.
    Server = 3,
}

/// A rollup key; the fields a kind does not use are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollKey {
    /// Client address, stored form.
    pub client: [u8; 16],
    /// Server address, stored form.
    pub server: [u8; 16],
    /// Server port.
    pub port: u16,
}

impl std::hash::Hash for RollKey {
    /// Five words (the derived hash feeds each array's length too: seven), the most
    /// frequent hash of ingest's rollup sums.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for a in [&self.client, &self.server] {
            let (hi, lo) = a.split_at(8);
            h.write_u64(u64::from_le_bytes(le64(hi, 0)));
            h.write_u64(u64::from_le_bytes(le64(lo, 0)));
        }
        h.write_u16(self.port);
    }
}

impl Totals {
    /// The totals in stored order: conns, pkts_out, pkts_in, bytes_out, bytes_in,
    /// dur_us, first_us, last_us.
    fn fields(&self) -> [i64; 8] {
        [
            self.conns,
            self.pkts_out,
            self.pkts_in,
            self.bytes_out,
            self.bytes_in,
            self.dur_us,
            self.first_us,
            self.last_us,
        ]
    }

    fn from_fields(v: [i64; 8]) -> Totals {
        Totals {
            conns: v[0],
            pkts_out: v[1],
            pkts_in: v[2],
            bytes_out: v[3],
            bytes_in: v[4],
            dur_us: v[5],
            first_us: v[6],
            last_us: v[7],
        }
    }

    /// Adds one final record (directions are the client's).
    pub(crate) fn add_record(&mut self, r: &FlowRecord) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.merge(&Totals {
            conns: 1,
            pkts_out: clamp(r.orig_pkts),
            pkts_in: clamp(r.resp_pkts),
            bytes_out: clamp(r.orig_bytes),
            bytes_in: clamp(r.resp_bytes),
            dur_us: (r.duration * 1e6).round() as i64,
            first_us: r.ts.as_micros(),
            last_us: r.last_ts.as_micros(),
        });
    }

    /// Adds another node's totals.
    pub(crate) fn merge(&mut self, b: &Totals) {
        if self.conns == 0 {
            self.first_us = b.first_us;
            self.last_us = b.last_us;
        } else {
            self.first_us = self.first_us.min(b.first_us);
            self.last_us = self.last_us.max(b.last_us);
        }
        self.conns = self.conns.saturating_add(b.conns);
        self.pkts_out = self.pkts_out.saturating_add(b.pkts_out);
        self.pkts_in = self.pkts_in.saturating_add(b.pkts_in);
        self.bytes_out = self.bytes_out.saturating_add(b.bytes_out);
        self.bytes_in = self.bytes_in.saturating_add(b.bytes_in);
        self.dur_us = self.dur_us.saturating_add(b.dur_us);
    }
}

type Sums = KeyedMap<RollKey, Totals>;

/// Sums a query builds (read-only work over stored keys: the fast hash is fine there).
pub(crate) type QuerySums = FastMap<RollKey, Totals>;

/// Why writing rollups failed: SQLite, or a stored segment that does not decode.
#[derive(Debug)]
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Bad(String),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Sql(e)
    }
}

impl Fail {
    pub(crate) fn into_store(self, path: &std::path::Path, what: &'static str) -> StoreError {
        match self {
            Fail::Sql(e) => StoreError::from_sql(path, what, e),
            Fail::Bad(detail) => StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("{detail} (while {what})"),
            },
        }
    }
}

/// Sums of one hour, by kind (pair, client, server): records add to the pairs only,
/// [`Deltas::apply`] sums the pairs into clients and servers (fewer map updates: a
/// batch has fewer distinct pairs than records).
type HourSums = [Sums; 3];

const KINDS: [RollKind; 3] = [RollKind::Pair, RollKind::Client, RollKind::Server];

/// Rollup deltas of one transaction. The store keeps one and reuses its maps (emptied,
/// with their room) from transaction to transaction: growing them anew each time cost
/// more in page faults than the sums themselves.
#[derive(Default)]
pub(crate) struct Deltas {
    /// Hour → sums.
    hourly: HashMap<i64, HourSums>,
    minute: HashMap<i64, Totals>,
    /// Emptied hour sums, for the next hours to use.
    spare: Vec<HourSums>,
}

impl Deltas {
    /// Adds a final record.
    pub(crate) fn add(&mut self, r: &FlowRecord) {
        let us = r.ts.as_micros();
        let hour = us.div_euclid(HOUR_US);
        let key = RollKey {
            client: addr_to_blob(r.orig_h),
            server: addr_to_blob(r.resp_h),
            port: r.resp_p,
        };
        let spare = &mut self.spare;
        let sums = self
            .hourly
            .entry(hour)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        sums[0].entry(key).or_default().add_record(r);
        self.minute
            .entry(us.div_euclid(MINUTE_US))
            .or_default()
            .add_record(r);
    }

    /// Writes the segments and minute totals, then merges where segments piled up;
    /// leaves the deltas empty. A batch within one hour (most are) writes the same
    /// bytes as that hour's segment and as its all-time segment, encoded once.
    pub(crate) fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), Fail> {
        let hours: Vec<(i64, HourSums)> = self.hourly.drain().collect();
        let mut all = (hours.len() > 1).then(|| self.spare.pop().unwrap_or_default());
        for (hour, mut sums) in hours {
            let [pairs, clients, servers] = &mut sums;
            for (k, t) in pairs.iter() {
                let client = RollKey {
                    client: k.client,
                    ..RollKey::default()
                };
                let server = RollKey {
                    client: [0; 16],
                    ..*k
                };
                clients.entry(client).or_default().merge(t);
                servers.entry(server).or_default().merge(t);
            }
            for (i, (kind, m)) in KINDS.iter().zip(&mut sums).enumerate() {
                let data = encode(m);
                put_segment(tx, *kind, Some(hour), m.len(), &data)?;
                merge_if_needed(tx, *kind, Some(hour))?;
                match all.as_mut() {
                    Some(all) => {
                        for (k, t) in m.iter() {
                            all[i].entry(*k).or_default().merge(t);
                        }
                    }
                    None => {
                        put_segment(tx, *kind, None, m.len(), &data)?;
                        merge_if_needed(tx, *kind, None)?;
                    }
                }
                m.clear();
            }
            self.keep(sums);
        }
        if let Some(mut all) = all {
            for (kind, m) in KINDS.iter().zip(&mut all) {
                put_segment(tx, *kind, None, m.len(), &encode(m))?;
                merge_if_needed(tx, *kind, None)?;
                m.clear();
            }
            self.keep(all);
        }
        let mut st = tx
            .prepare_cached(
                "INSERT INTO roll_minute (minute, conns, pkts_out, pkts_in, bytes_out, bytes_in,
                   dur_us, first_us, last_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (minute) DO UPDATE SET conns = conns + excluded.conns,
                   pkts_out = pkts_out + excluded.pkts_out, pkts_in = pkts_in + excluded.pkts_in,
                   bytes_out = bytes_out + excluded.bytes_out, bytes_in = bytes_in + excluded.bytes_in,
                   dur_us = dur_us + excluded.dur_us, first_us = min(first_us, excluded.first_us),
                   last_us = max(last_us, excluded.last_us)",
            )?;
        for (m, t) in self.minute.drain() {
            let v = t.fields();
            st.execute(params![m, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]])?;
        }
        Ok(())
    }

    /// Forgets what was added (after a failed transaction), keeping the room.
    pub(crate) fn clear(&mut self) {
        let hours: Vec<HourSums> = self.hourly.drain().map(|(_, s)| s).collect();
        for mut sums in hours {
            sums.iter_mut().for_each(Sums::clear);
            self.keep(sums);
        }
        self.minute.clear();
    }

    /// Keeps emptied sums for later hours (a few: a batch spanning many hours must not
    /// leave its room behind for good).
    fn keep(&mut self, sums: HourSums) {
        if self.spare.len() < 4 {
            self.spare.push(sums);
        }
    }
}

/// A segment's bytes (format 2): [`COMPACT`], the earliest `first_us` of its entries
/// (zigzag varint), the number of entries (varint), then each entry: client and server addresses (a byte 0 for none,
/// 4 and the IPv4 address for one mapped into `::ffff:0:0/96`, 16 and the 16 bytes
/// otherwise), the port (varint), `conns`, `pkts_out`, `pkts_in`, `bytes_out`,
/// `bytes_in`, `dur_us`, `first_us` − earliest, `last_us` − `first_us` (zigzag varints).
/// About a third of a format-1 entry; encoding it costs less than LZ4 and sorting did,
/// which were a quarter of ingest's work.
fn encode(sums: &Sums) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + sums.len() * 32);
    out.extend_from_slice(&COMPACT);
    let mut w = W(&mut out);
    let base = sums.values().map(|t| t.first_us).min().unwrap_or(0);
    w.int(base);
    w.uint(sums.len() as u64);
    for (k, t) in sums {
        put_addr(&mut w, &k.client);
        put_addr(&mut w, &k.server);
        w.uint(u64::from(k.port));
        let f = t.fields();
        for v in &f[..6] {
            w.int(*v);
        }
        w.int(f[6].wrapping_sub(base));
        w.int(f[7].wrapping_sub(f[6]));
    }
    out
}

const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

fn put_addr(w: &mut W<'_>, a: &[u8; 16]) {
    if *a == [0; 16] {
        w.0.push(0);
    } else if a[..12] == V4_MAPPED {
        w.0.push(4);
        w.0.extend_from_slice(&a[12..]);
    } else {
        w.0.push(16);
        w.0.extend_from_slice(a);
    }
}

fn get_addr(r: &mut R<'_>) -> Result<[u8; 16], String> {
    let mut a = [0u8; 16];
    match r.byte()? {
        0 => {}
        4 => {
            a[..12].copy_from_slice(&V4_MAPPED);
            a[12..].copy_from_slice(r.take(4)?);
        }
        16 => a.copy_from_slice(r.take(16)?),
        v => return Err(format!("address tag {v} is not known")),
    }
    Ok(a)
}

/// Adds the entries of a stored segment (either format) that `keep` accepts to
/// `into`; with `seen`, notes the hash of every entry's key there (to count distinct
/// keys).
fn decode_into<S: BuildHasher>(
    packed: &[u8],
    into: &mut HashMap<RollKey, Totals, S>,
    keep: &dyn Fn(&RollKey) -> bool,
    mut seen: Option<&mut FastSet>,
) -> Result<(), String> {
    let mut add = |k: RollKey, v: [i64; 8]| {
        if let Some(seen) = seen.as_deref_mut() {
            let mut b = [0u8; 34];
            b[..16].copy_from_slice(&k.client);
            b[16..32].copy_from_slice(&k.server);
            b[32..].copy_from_slice(&k.port.to_le_bytes());
            seen.insert(FastHasher::hash_bytes(&b));
        }
        if keep(&k) {
            into.entry(k).or_default().merge(&Totals::from_fields(v));
        }
    };
    if let Some(body) = packed.strip_prefix(&COMPACT) {
        let mut r = R::new(body);
        let base = r.int()?;
        let n = r.uint()?;
        for _ in 0..n {
            let k = RollKey {
                client: get_addr(&mut r)?,
                server: get_addr(&mut r)?,
                port: u16::try_from(r.uint()?).map_err(|_| "port out of range".to_string())?,
            };
            let mut v = [0i64; 8];
            for x in &mut v[..6] {
                *x = r.int()?;
            }
            v[6] = base.wrapping_add(r.int()?);
            v[7] = v[6].wrapping_add(r.int()?);
            add(k, v);
        }
        if !r.done() {
            return Err(format!("bytes after the segment's {n} entries"));
        }
        return Ok(());
    }
    let raw = crate::blocks::unpack(packed)?;
    let body = match raw.split_first() {
        Some((&SEGMENT_FORMAT_1, body)) => body,
        Some((v, _)) => return Err(format!("segment format {v} is not known")),
        None => return Err("empty segment".into()),
    };
    if body.len() % ENTRY_1 != 0 {
        return Err(format!(
            "{} bytes is not a whole number of entries",
            body.len()
        ));
    }
    for e in body.chunks_exact(ENTRY_1) {
        let k = RollKey {
            client: addr16(e, 0),
            server: addr16(e, 16),
            port: u16::from_le_bytes([e[32], e[33]]),
        };
        add(
            k,
            std::array::from_fn(|i| i64::from_le_bytes(le64(e, 34 + i * 8))),
        );
    }
    Ok(())
}

fn put_segment(
    tx: &Transaction<'_>,
    kind: RollKind,
    hour: Option<i64>,
    entries: usize,
    data: &[u8],
) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO rollup_segments (kind, hour, entries, data) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind as u8, hour, entries as i64, data])?;
    Ok(())
}

/// Past [`MAX_SEGMENTS`] in a scope, merges its smallest [`MAX_SEGMENTS`] segments into
/// one: the largest is left alone until others outgrow it, so a long read rewrites each
/// entry a logarithmic number of times, not once per merge.
fn merge_if_needed(tx: &Transaction<'_>, kind: RollKind, hour: Option<i64>) -> Result<(), Fail> {
    let mut segs: Vec<(i64, i64)> = tx
        .prepare_cached("SELECT id, entries FROM rollup_segments WHERE kind = ?1 AND hour IS ?2")?
        .query_map(params![kind as u8, hour], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if segs.len() as i64 <= MAX_SEGMENTS {
        return Ok(());
    }
    segs.sort_by_key(|&(id, entries)| (entries, id));
    let mut sums = Sums::default();
    let mut get = tx.prepare_cached("SELECT data FROM rollup_segments WHERE id = ?1")?;
    let mut del = tx.prepare_cached("DELETE FROM rollup_segments WHERE id = ?1")?;
    for &(id, _) in segs.iter().take(MAX_SEGMENTS as usize) {
        get.query_row([id], |r| {
            let data = r.get_ref(0)?.as_blob()?;
            Ok(decode_into(data, &mut sums, &|_| true, None))
        })?
        .map_err(|e| Fail::Bad(format!("rollup segment {id}: {e}")))?;
        del.execute([id])?;
    }
    put_segment(tx, kind, hour, sums.len(), &encode(&sums))
}

/// Which rollups a query reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourRange {
    /// First hour (floor(µs / 1 h)), inclusive.
    pub from: Option<i64>,
    /// Last hour, exclusive.
    pub to: Option<i64>,
    /// Modulo-day slot: (period hours, slot index).
    pub slot: Option<(u32, u32)>,
}

impl HourRange {
    fn unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.slot.is_none()
    }

    fn holds(&self, hour: i64) -> bool {
        self.from.is_none_or(|f| hour >= f)
            && self.to.is_none_or(|t| hour < t)
            && self
                .slot
                .is_none_or(|(p, k)| hour.rem_euclid(24) / i64::from(p.max(1)) == i64::from(k))
    }
}

impl Store {
    /// The totals per key of a rollup over `range`, for the keys `keep` accepts:
    /// all-time segments when the range is unbounded, the hours' segments otherwise.
    pub(crate) fn rollup(
        &self,
        kind: RollKind,
        range: &HourRange,
        keep: &dyn Fn(&RollKey) -> bool,
    ) -> Result<QuerySums, StoreError> {
        self.rollup_counted(kind, range, keep, false)
            .map(|(s, _)| s)
    }

    /// As [`Store::rollup`], and with `count` the number of distinct keys in range
    /// (kept or not).
    pub(crate) fn rollup_counted(
        &self,
        kind: RollKind,
        range: &HourRange,
        keep: &dyn Fn(&RollKey) -> bool,
        count: bool,
    ) -> Result<(QuerySums, u64), StoreError> {
        let err = |e| self.sql("reading the rollups", e);
        let mut sums = QuerySums::default();
        let mut seen = count.then(FastSet::default);
        let sql = if range.unbounded() {
            "SELECT id, hour, data FROM rollup_segments WHERE kind = ?1 AND hour IS NULL"
        } else {
            "SELECT id, hour, data FROM rollup_segments WHERE kind = ?1 AND hour IS NOT NULL
               AND hour >= ?2 AND hour < ?3"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let mut rows = if range.unbounded() {
            st.query(params![kind as u8])
        } else {
            st.query(params![
                kind as u8,
                range.from.unwrap_or(i64::MIN),
                range.to.unwrap_or(i64::MAX)
            ])
        }
        .map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let id: i64 = row.get(0).map_err(err)?;
            let hour: Option<i64> = row.get(1).map_err(err)?;
            if hour.is_some_and(|h| !range.holds(h)) {
                continue;
            }
            let data = row
                .get_ref(2)
                .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
                .map_err(err)?;
            decode_into(data, &mut sums, keep, seen.as_mut()).map_err(|detail| {
                StoreError::BadRecord {
                    path: self.path.clone(),
                    id,
                    detail: format!("rollup segment: {detail}"),
                }
            })?;
        }
        let distinct = seen.map_or(0, |s| s.len() as u64);
        Ok((sums, distinct))
    }

    /// Connections counted by each rollup kind over all time (they agree with the
    /// stored final flows; a check for tests and tools).
    pub fn rollup_conns(&self) -> Result<[i64; 4], StoreError> {
        let mut out = [0i64; 4];
        for (i, kind) in [RollKind::Pair, RollKind::Client, RollKind::Server]
            .into_iter()
            .enumerate()
        {
            out[i] = self
                .rollup(kind, &HourRange::default(), &|_| true)?
                .values()
                .fold(0i64, |a, t| a.saturating_add(t.conns));
        }
        out[3] = self
            .conn
            .query_row("SELECT sum(conns) FROM roll_minute", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(|e| self.sql("reading the rollups", e))?
            .flatten()
            .unwrap_or(0);
        Ok(out)
    }
}

/// Schema version 2's rollup step: the version-1 per-hour tables become segments.
pub(crate) fn move_v1_rollups(tx: &Transaction<'_>) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    for (table, kind, cols) in [
        ("roll_pair", RollKind::Pair, "client, server, port"),
        ("roll_client", RollKind::Client, "client, NULL, 0"),
        ("roll_server", RollKind::Server, "NULL, server, port"),
    ] {
        let mut by_hour: HashMap<i64, Sums> = HashMap::new();
        {
            let mut st = tx
                .prepare(&format!(
                    "SELECT hour, {cols}, conns, pkts_out, pkts_in, bytes_out, bytes_in, dur_us,
                       first_us, last_us FROM {table}"
                ))
                .map_err(sql)?;
            let mut rows = st.query([]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                let blob = |i: usize| -> rusqlite::Result<[u8; 16]> {
                    let b: Option<Vec<u8>> = r.get(i)?;
                    Ok(b.and_then(|b| b.try_into().ok()).unwrap_or([0; 16]))
                };
                let key = RollKey {
                    client: blob(1).map_err(sql)?,
                    server: blob(2).map_err(sql)?,
                    port: r.get(3).map_err(sql)?,
                };
                let t = Totals::from_row(r, 4).map_err(sql)?;
                let hour: i64 = r.get(0).map_err(sql)?;
                by_hour
                    .entry(hour)
                    .or_default()
                    .entry(key)
                    .or_default()
                    .merge(&t);
            }
        }
        let mut all = Sums::default();
        for (hour, sums) in &by_hour {
            for (k, t) in sums {
                all.entry(*k).or_default().merge(t);
            }
            put_segment(tx, kind, Some(*hour), sums.len(), &encode(sums))
                .map_err(|e| format!("{e:?}"))?;
        }
        if !all.is_empty() {
            put_segment(tx, kind, None, all.len(), &encode(&all)).map_err(|e| format!("{e:?}"))?;
        }
        tx.execute_batch(&format!("DROP TABLE {table}"))
            .map_err(sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_reject_damage() {
        let mut s = Sums::default();
        let t = |conns, first_us, last_us| Totals {
            conns,
            pkts_out: 10,
            pkts_in: 12,
            bytes_out: 1000,
            bytes_in: i64::MAX,
            dur_us: 5,
            first_us,
            last_us,
        };
        let v4 = |a: u8| {
            let mut b = [0u8; 16];
            b[..12].copy_from_slice(&V4_MAPPED);
            b[15] = a;
            b
        };
        s.insert(
            RollKey {
                client: v4(1),
                server: [2; 16],
                port: 443,
            },
            t(3, -7, 9),
        );
        s.insert(
            RollKey {
                client: v4(9),
                ..RollKey::default()
            },
            t(1, i64::MAX, i64::MIN),
        );
        let packed = encode(&s);
        let mut back = Sums::default();
        decode_into(&packed, &mut back, &|_| true, None).unwrap();
        assert_eq!(back, s);
        for cut in COMPACT.len()..packed.len() {
            let mut b = Sums::default();
            assert!(
                decode_into(&packed[..cut], &mut b, &|_| true, None).is_err(),
                "cut at {cut} decoded"
            );
        }
        assert!(decode_into(&[1, 2, 3], &mut back, &|_| true, None).is_err());
    }

    #[test]
    fn format_1_segments_are_still_read() {
        let mut raw = vec![SEGMENT_FORMAT_1];
        raw.extend_from_slice(&[7; 16]);
        raw.extend_from_slice(&[0; 16]);
        raw.extend_from_slice(&0u16.to_le_bytes());
        for v in [2i64, 3, 4, 5, 6, 7, 100, 200] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        let mut back = Sums::default();
        decode_into(
            &lz4_flex::compress_prepend_size(&raw),
            &mut back,
            &|_| true,
            None,
        )
        .unwrap();
        let k = RollKey {
            client: [7; 16],
            ..RollKey::default()
        };
        assert_eq!(back[&k].fields(), [2, 3, 4, 5, 6, 7, 100, 200]);
        let cut = lz4_flex::compress_prepend_size(&raw[..raw.len() - 1]);
        assert!(decode_into(&cut, &mut back, &|_| true, None).is_err());
    }
}
