//! Ingest: batches of flow records → one transaction each (rows, then rollup deltas).
//!
//! Rows go through one prepared upsert keyed by (capture, `uid`): a new `uid` is
//! inserted; an interim row is replaced by a later record of its `uid`; a final row is
//! never replaced (a re-read is a no-op). Only rows that were actually inserted or
//! turned final add to the rollups, so rollups stay exact under re-reads and kills.
//! Rollup deltas are summed in memory per batch and applied as one upsert per key.

use std::collections::HashMap;

use rusqlite::{params, Transaction};
use tunnelwatch_model::{Cause, FlowRecord};

use tunnelwatch_output::jsonl;

use crate::addr::addr_to_blob;
use crate::{CaptureId, CaptureIdentity, Store, StoreError};

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertStats {
    /// Records inserted or superseding an interim row.
    pub written: u64,
    /// Records already stored (re-read) and left alone.
    pub unchanged: u64,
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

const UPSERT_FLOW: &str = "INSERT INTO flows (capture_id, uid, community_id, ts, last_ts, duration, proto,
    orig_h, orig_p, resp_h, resp_p, service, orig_pkts, resp_pkts, orig_bytes, resp_bytes,
    orig_ip_bytes, resp_ip_bytes, conn_state, history, cause, final, record)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
 ON CONFLICT (capture_id, ts, uid) DO UPDATE SET
    community_id = excluded.community_id, ts = excluded.ts, last_ts = excluded.last_ts,
    duration = excluded.duration, proto = excluded.proto, orig_h = excluded.orig_h,
    orig_p = excluded.orig_p, resp_h = excluded.resp_h, resp_p = excluded.resp_p,
    service = excluded.service, orig_pkts = excluded.orig_pkts, resp_pkts = excluded.resp_pkts,
    orig_bytes = excluded.orig_bytes, resp_bytes = excluded.resp_bytes,
    orig_ip_bytes = excluded.orig_ip_bytes, resp_ip_bytes = excluded.resp_ip_bytes,
    conn_state = excluded.conn_state, history = excluded.history, cause = excluded.cause,
    final = excluded.final, record = excluded.record
 WHERE flows.final = 0 AND (excluded.final = 1 OR excluded.last_ts >= flows.last_ts)";

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

    /// Marks a capture as completely read.
    pub fn finish_capture(&mut self, cid: CaptureId) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE captures SET complete = 1,
                   records = (SELECT count(*) FROM flows WHERE capture_id = ?1),
                   first_read = (SELECT min(ts) FROM flows WHERE capture_id = ?1)
                 WHERE id = ?1",
                [cid.0],
            )
            .map(|_| ())
            .map_err(|e| self.sql("finishing the capture", e))
    }

    /// Writes a batch of records of capture `cid` and their rollup deltas in one
    /// transaction.
    pub fn insert_flows(
        &mut self,
        cid: CaptureId,
        recs: &[FlowRecord],
    ) -> Result<InsertStats, StoreError> {
        let path = self.path.clone();
        let err = |e| StoreError::from_sql(&path, "inserting flows", e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut stats = InsertStats::default();
        let mut roll = Rollups::default();
        let mut json = Vec::with_capacity(2048);
        {
            let mut st = tx.prepare_cached(UPSERT_FLOW).map_err(err)?;
            for r in recs {
                json.clear();
                jsonl::write_json(&mut json, r);
                // About 2x smaller: less to write twice (WAL, then the file) and to move
                // through the B-tree; the JSON comes back whole on query.
                let packed = lz4_flex::compress_prepend_size(&json);
                let fin = r.cause != Cause::Status;
                let c = addr_to_blob(r.orig_h);
                let s = addr_to_blob(r.resp_h);
                let n = st
                    .execute(params![
                        cid.0,
                        r.uid,
                        r.community_id,
                        r.ts.as_micros(),
                        r.last_ts.as_micros(),
                        r.duration,
                        r.proto,
                        &c[..],
                        r.orig_p,
                        &s[..],
                        r.resp_p,
                        r.service,
                        clamp(r.orig_pkts),
                        clamp(r.resp_pkts),
                        clamp(r.orig_bytes),
                        clamp(r.resp_bytes),
                        clamp(r.orig_ip_bytes),
                        clamp(r.resp_ip_bytes),
                        r.conn_state.as_str(),
                        r.history,
                        r.cause.as_str(),
                        fin,
                        packed,
                    ])
                    .map_err(err)?;
                if n == 0 {
                    stats.unchanged += 1;
                    continue;
                }
                stats.written += 1;
                if fin {
                    roll.add(r, c, s);
                }
            }
        }
        roll.apply(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(stats)
    }
}
