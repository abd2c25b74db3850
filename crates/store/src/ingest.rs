//! Ingest: batches of flow records → one transaction each (blocks, interim rows, then
//! rollup deltas).
//!
//! Final records are packed into flow blocks (`blocks.rs`); interim records
//! (`cause: status`) are one row each, keyed by (capture, `uid`), replaced by a later
//! interim record of their flow and deleted when its final record comes. Re-reads are
//! idempotent per capture and `uid`: a capture whose read completed is not stored
//! again; a capture whose read was interrupted resumes — the uids of its stored final
//! records are loaded once and those records are skipped. Only final records count in
//! the rollups, so rollups agree with the blocks after a kill at any point. Rollup
//! deltas are summed in memory per batch and applied as one upsert per key.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Transaction};
use tunnelwatch_model::{Cause, FlowRecord};

use tunnelwatch_output::jsonl;

use crate::addr::addr_to_blob;
use crate::blocks::{self, Block, BlockBuilder, BLOCK_RECORDS};
use crate::{CaptureId, CaptureIdentity, Store, StoreError};

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertStats {
    /// Records inserted or superseding an interim row.
    pub written: u64,
    /// Records already stored (re-read) and left alone.
    pub unchanged: u64,
}

/// What the store knows of the capture it is writing.
pub(crate) struct Ingest {
    cid: CaptureId,
    /// A read of it completed before: nothing more is stored.
    complete: bool,
    /// uid hashes of final records stored by an earlier, interrupted read.
    stored: HashSet<u64>,
    /// uid hashes of its interim rows.
    interim: HashSet<u64>,
}

/// The 64-bit hash of a uid the ingest state keeps (collisions across the records of
/// one capture are ~n²/2⁶⁵: 3·10⁻⁶ at 10 million).
fn uid_hash(uid: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in uid.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    blocks::mix(h)
}

#[derive(Default, Clone, Copy)]
struct Agg {
    conns: i64,
    pkts_out: i64,
    pkts_in: i64,
    bytes_out: i64,
    bytes_in: i64,
    dur_us: i64,
    first_us: i64,
    last_us: i64,
}

impl Agg {
    fn add(&mut self, r: &FlowRecord) {
        let first = r.ts.as_micros();
        let last = r.last_ts.as_micros();
        if self.conns == 0 {
            self.first_us = first;
            self.last_us = last;
        } else {
            self.first_us = self.first_us.min(first);
            self.last_us = self.last_us.max(last);
        }
        self.conns += 1;
        self.pkts_out += clamp(r.orig_pkts);
        self.pkts_in += clamp(r.resp_pkts);
        self.bytes_out += clamp(r.orig_bytes);
        self.bytes_in += clamp(r.resp_bytes);
        self.dur_us += (r.duration * 1e6).round() as i64;
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const HOUR_US: i64 = 3_600_000_000;
const MINUTE_US: i64 = 60_000_000;

const INSERT_BLOCK: &str =
    "INSERT INTO flow_blocks (capture_id, records, min_ts, max_ts, hosts, meta, data)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const UPSERT_INTERIM: &str =
    "INSERT INTO flows_interim (capture_id, uid, ts, last_ts, meta, record)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
 ON CONFLICT (capture_id, uid) DO UPDATE SET ts = excluded.ts, last_ts = excluded.last_ts,
    meta = excluded.meta, record = excluded.record
 WHERE excluded.last_ts >= flows_interim.last_ts";

const DELETE_INTERIM: &str = "DELETE FROM flows_interim WHERE capture_id = ?1 AND uid = ?2";

fn rollup_sql(table: &str, keys: &[&str]) -> String {
    let cols = keys.join(", ");
    let marks: Vec<String> = (1..=keys.len() + 8).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({cols}, conns, pkts_out, pkts_in, bytes_out, bytes_in, dur_us, first_us, last_us)
         VALUES ({})
         ON CONFLICT ({cols}) DO UPDATE SET conns = conns + excluded.conns,
           pkts_out = pkts_out + excluded.pkts_out, pkts_in = pkts_in + excluded.pkts_in,
           bytes_out = bytes_out + excluded.bytes_out, bytes_in = bytes_in + excluded.bytes_in,
           dur_us = dur_us + excluded.dur_us, first_us = min(first_us, excluded.first_us),
           last_us = max(last_us, excluded.last_us)",
        marks.join(", ")
    )
}

fn agg_params(a: &Agg) -> [i64; 8] {
    [
        a.conns,
        a.pkts_out,
        a.pkts_in,
        a.bytes_out,
        a.bytes_in,
        a.dur_us,
        a.first_us,
        a.last_us,
    ]
}

type PairKey = (i64, [u8; 16], [u8; 16], u16);

#[derive(Default)]
struct Rollups {
    pair: HashMap<PairKey, Agg>,
    client: HashMap<(i64, [u8; 16]), Agg>,
    server: HashMap<(i64, [u8; 16], u16), Agg>,
    minute: HashMap<i64, Agg>,
}

impl Rollups {
    fn add(&mut self, r: &FlowRecord, c: [u8; 16], s: [u8; 16]) {
        let us = r.ts.as_micros();
        let hour = us.div_euclid(HOUR_US);
        self.pair.entry((hour, c, s, r.resp_p)).or_default().add(r);
        self.client.entry((hour, c)).or_default().add(r);
        self.server.entry((hour, s, r.resp_p)).or_default().add(r);
        self.minute
            .entry(us.div_euclid(MINUTE_US))
            .or_default()
            .add(r);
    }

    fn apply(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut st = tx.prepare_cached(&rollup_sql(
            "roll_pair",
            &["hour", "client", "server", "port"],
        ))?;
        for ((h, c, s, p), a) in &self.pair {
            let v = agg_params(a);
            st.execute(params![
                h,
                &c[..],
                &s[..],
                p,
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                v[6],
                v[7]
            ])?;
        }
        let mut st = tx.prepare_cached(&rollup_sql("roll_client", &["hour", "client"]))?;
        for ((h, c), a) in &self.client {
            let v = agg_params(a);
            st.execute(params![
                h,
                &c[..],
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                v[6],
                v[7]
            ])?;
        }
        let mut st = tx.prepare_cached(&rollup_sql("roll_server", &["hour", "server", "port"]))?;
        for ((h, s, p), a) in &self.server {
            let v = agg_params(a);
            st.execute(params![
                h,
                &s[..],
                p,
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                v[6],
                v[7]
            ])?;
        }
        let mut st = tx.prepare_cached(&rollup_sql("roll_minute", &["minute"]))?;
        for (m, a) in &self.minute {
            let v = agg_params(a);
            st.execute(params![m, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]])?;
        }
        Ok(())
    }
}

impl Store {
    /// Registers a capture (or finds it when it was read before) and returns its id.
    pub fn begin_capture(&mut self, id: &CaptureIdentity) -> Result<CaptureId, StoreError> {
        let paths: Vec<String> = id.paths.iter().map(|p| p.display().to_string()).collect();
        let paths = serde_json::to_string(&paths).unwrap_or_else(|_| "[]".into());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| StoreError::from_sql(&self.path, "registering the capture", e))?;
        let r = (|| {
            tx.execute(
                "INSERT INTO captures (identity, paths, bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (identity) DO NOTHING",
                params![id.digest, paths, clamp(id.bytes)],
            )?;
            let cid: i64 = tx.query_row(
                "SELECT id FROM captures WHERE identity = ?1",
                [&id.digest],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(cid)
        })();
        r.map(CaptureId)
            .map_err(|e| StoreError::from_sql(&self.path, "registering the capture", e))
    }

    /// Marks a capture as completely read: a later read of it stores nothing.
    pub fn finish_capture(&mut self, cid: CaptureId) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE captures SET complete = 1,
                   records = (SELECT coalesce(sum(records), 0) FROM flow_blocks WHERE capture_id = ?1)
                     + (SELECT count(*) FROM flows_interim WHERE capture_id = ?1),
                   first_read = (SELECT min(t) FROM (
                     SELECT min(min_ts) AS t FROM flow_blocks WHERE capture_id = ?1
                     UNION ALL SELECT min(ts) FROM flows_interim WHERE capture_id = ?1))
                 WHERE id = ?1",
                [cid.0],
            )
            .map_err(|e| self.sql("finishing the capture", e))?;
        if let Some(st) = self.ingest.as_mut().filter(|s| s.cid == cid) {
            st.complete = true;
        }
        Ok(())
    }

    /// Loads what the store holds of capture `cid` (once per capture).
    fn ingest_state(&mut self, cid: CaptureId) -> Result<(), StoreError> {
        if self.ingest.as_ref().is_some_and(|i| i.cid == cid) {
            return Ok(());
        }
        let err = |e| StoreError::from_sql(&self.path, "loading the capture's stored flows", e);
        let complete: bool = self
            .conn
            .query_row(
                "SELECT complete FROM captures WHERE id = ?1",
                [cid.0],
                |r| r.get(0),
            )
            .map_err(err)?;
        let mut st = Ingest {
            cid,
            complete,
            stored: HashSet::new(),
            interim: HashSet::new(),
        };
        if !complete {
            let mut q = self
                .conn
                .prepare("SELECT id, meta FROM flow_blocks WHERE capture_id = ?1")
                .map_err(err)?;
            let mut rows = q.query([cid.0]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let id: i64 = row.get(0).map_err(err)?;
                let packed: Vec<u8> = row.get(1).map_err(err)?;
                let bad = |detail: String| StoreError::BadRecord {
                    path: self.path.clone(),
                    id,
                    detail: format!("flow block: {detail}"),
                };
                let meta = blocks::unpack(&packed).map_err(bad)?;
                for (r, _) in blocks::rows(&meta).map_err(bad)? {
                    st.stored.insert(uid_hash(r.uid));
                }
            }
            let mut q = self
                .conn
                .prepare("SELECT uid FROM flows_interim WHERE capture_id = ?1")
                .map_err(err)?;
            let mut rows = q.query([cid.0]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let uid: String = row.get(0).map_err(err)?;
                st.interim.insert(uid_hash(&uid));
            }
        }
        self.ingest = Some(st);
        Ok(())
    }

    /// Writes a batch of records of capture `cid` and their rollup deltas in one
    /// transaction.
    pub fn insert_flows(
        &mut self,
        cid: CaptureId,
        recs: &[FlowRecord],
    ) -> Result<InsertStats, StoreError> {
        self.ingest_state(cid)?;
        let mut state = self.ingest.take().filter(|s| s.cid == cid).ok_or_else(|| {
            StoreError::Invalid("the store lost track of the capture being written".into())
        })?;
        let r = self.insert_batch(&mut state, recs);
        // A failed transaction leaves the sets unknown: they are loaded again.
        if r.is_ok() {
            self.ingest = Some(state);
        }
        r
    }

    fn insert_batch(
        &mut self,
        state: &mut Ingest,
        recs: &[FlowRecord],
    ) -> Result<InsertStats, StoreError> {
        let mut stats = InsertStats::default();
        if state.complete {
            stats.unchanged = recs.len() as u64;
            return Ok(stats);
        }
        let path = self.path.clone();
        let err = |e| StoreError::from_sql(&path, "inserting flows", e);
        let cid = state.cid;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut roll = Rollups::default();
        let mut json = Vec::with_capacity(2048);
        let mut meta = Vec::with_capacity(256);
        let mut builder = std::mem::take(&mut self.builder);
        {
            let mut put_block = tx.prepare_cached(INSERT_BLOCK).map_err(err)?;
            let mut upsert = tx.prepare_cached(UPSERT_INTERIM).map_err(err)?;
            let mut delete = tx.prepare_cached(DELETE_INTERIM).map_err(err)?;
            for r in recs {
                let h = uid_hash(&r.uid);
                if state.stored.contains(&h) {
                    stats.unchanged += 1;
                    continue;
                }
                if r.cause != Cause::Status {
                    if state.interim.remove(&h) {
                        delete.execute(params![cid.0, r.uid]).map_err(err)?;
                    }
                    builder.push(r);
                    if builder.len() == BLOCK_RECORDS {
                        write_block(&mut put_block, cid, &builder.take()).map_err(err)?;
                    }
                    roll.add(r, addr_to_blob(r.orig_h), addr_to_blob(r.resp_h));
                    stats.written += 1;
                    continue;
                }
                json.clear();
                jsonl::write_json(&mut json, r);
                meta.clear();
                blocks::encode_row(&mut meta, r, json.len());
                let n = upsert
                    .execute(params![
                        cid.0,
                        r.uid,
                        r.ts.as_micros(),
                        r.last_ts.as_micros(),
                        meta,
                        lz4_flex::compress_prepend_size(&json),
                    ])
                    .map_err(err)?;
                state.interim.insert(h);
                if n == 0 {
                    stats.unchanged += 1;
                } else {
                    stats.written += 1;
                }
            }
            if builder.len() > 0 {
                write_block(&mut put_block, cid, &builder.take()).map_err(err)?;
            }
        }
        self.builder = builder;
        roll.apply(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(stats)
    }
}

fn write_block(
    st: &mut rusqlite::CachedStatement<'_>,
    cid: CaptureId,
    b: &Block,
) -> rusqlite::Result<()> {
    st.execute(params![
        cid.0, b.records, b.min_ts, b.max_ts, b.hosts, b.meta, b.data
    ])
    .map(|_| ())
}

/// Schema version 2's data step: the version-1 `flows` rows (one per record, LZ4 JSON)
/// become blocks (final records) and interim rows; then the table goes.
pub(crate) fn move_v1_flows(tx: &Transaction<'_>) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    {
        let mut q = tx
            .prepare("SELECT id, capture_id, final, record FROM flows ORDER BY capture_id, id")
            .map_err(sql)?;
        let mut put_block = tx.prepare_cached(INSERT_BLOCK).map_err(sql)?;
        let mut upsert = tx.prepare_cached(UPSERT_INTERIM).map_err(sql)?;
        let mut rows = q.query([]).map_err(sql)?;
        let mut builder = BlockBuilder::default();
        let mut current: Option<i64> = None;
        let mut meta = Vec::new();
        while let Some(row) = rows.next().map_err(sql)? {
            let id: i64 = row.get(0).map_err(sql)?;
            let cid: i64 = row.get(1).map_err(sql)?;
            let fin: bool = row.get(2).map_err(sql)?;
            let packed: Vec<u8> = row.get(3).map_err(sql)?;
            let json = blocks::unpack(&packed).map_err(|e| format!("flow row {id}: {e}"))?;
            let rec: FlowRecord = serde_json::from_slice(&json)
                .map_err(|e| format!("flow row {id} is not a flow record: {e}"))?;
            if current != Some(cid) && builder.len() > 0 {
                if let Some(c) = current {
                    write_block(&mut put_block, CaptureId(c), &builder.take()).map_err(sql)?;
                }
            }
            current = Some(cid);
            if fin {
                builder.push(&rec);
                if builder.len() == BLOCK_RECORDS {
                    write_block(&mut put_block, CaptureId(cid), &builder.take()).map_err(sql)?;
                }
            } else {
                meta.clear();
                blocks::encode_row(&mut meta, &rec, json.len());
                upsert
                    .execute(params![
                        cid,
                        rec.uid,
                        rec.ts.as_micros(),
                        rec.last_ts.as_micros(),
                        meta,
                        packed
                    ])
                    .map_err(sql)?;
            }
        }
        if let (Some(c), true) = (current, builder.len() > 0) {
            write_block(&mut put_block, CaptureId(c), &builder.take()).map_err(sql)?;
        }
    }
    tx.execute_batch("DROP TABLE flows").map_err(sql)
}
