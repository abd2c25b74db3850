//! Ingest: batches of flow records → one transaction each (interim rows, rollup
//! segments, then blocks; the blocks are built on other threads meanwhile).
//!
//! Final records are packed into flow blocks (`blocks.rs`); interim records
//! (`cause: status`) are one row each, keyed by (capture, `uid`), replaced by a later
//! interim record of their flow and deleted when its final record comes. Re-reads are
//! idempotent per capture and `uid`: a capture whose read completed is not stored
//! again; a capture whose read was interrupted resumes — the uids of its stored final
//! records are loaded once and those records are skipped. Only final records count in
//! the rollups, so rollups agree with the blocks after a kill at any point. Rollup
//! deltas are summed in memory per batch and written as segments (`rollup.rs`).

use std::collections::HashSet;

use rusqlite::{params, Transaction};
use tunnelwatch_model::{Cause, FlowRecord};

use crate::blocks::{self, Block, BlockBuilder, MetaFrames, BLOCK_RECORDS};
use crate::{CaptureId, CaptureIdentity, Store, StoreError};

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertStats {
    /// Records inserted or superseding an interim row.
    pub written: u64,
    /// Records already stored (re-read) and left alone.
    pub unchanged: u64,
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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

const INSERT_BLOCK: &str =
    "INSERT INTO flow_blocks (capture_id, records, min_ts, max_ts, hosts, keys, meta, data)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const UPSERT_INTERIM: &str =
    "INSERT INTO flows_interim (capture_id, uid, ts, last_ts, meta, record)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
 ON CONFLICT (capture_id, uid) DO UPDATE SET ts = excluded.ts, last_ts = excluded.last_ts,
    meta = excluded.meta, record = excluded.record
 WHERE excluded.last_ts >= flows_interim.last_ts";

const DELETE_INTERIM: &str = "DELETE FROM flows_interim WHERE capture_id = ?1 AND uid = ?2";

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
                .prepare("SELECT id, records, meta FROM flow_blocks WHERE capture_id = ?1")
                .map_err(err)?;
            let mut rows = q.query([cid.0]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let id: i64 = row.get(0).map_err(err)?;
                let records: i64 = row.get(1).map_err(err)?;
                let packed: Vec<u8> = row.get(2).map_err(err)?;
                let bad = |detail: String| StoreError::BadRecord {
                    path: self.path.clone(),
                    id,
                    detail: format!("flow block: {detail}"),
                };
                let mut mf = MetaFrames::new(&packed).map_err(bad)?;
                for i in 0..records.max(0) as usize {
                    let h = mf.with_row(i, |r, _| uid_hash(r.uid)).map_err(bad)?;
                    st.stored.insert(h);
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
        // A failed transaction leaves the sets unknown: they are loaded again; the
        // deltas it summed are dropped with it.
        if r.is_ok() {
            self.ingest = Some(state);
        } else {
            self.deltas.clear();
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
        // Pass 1, in order: skip what is stored, write interim rows, gather finals.
        let mut finals: Vec<&FlowRecord> = Vec::with_capacity(recs.len());
        {
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
                    finals.push(r);
                    continue;
                }
                let (meta, record) = blocks::interim_of(r);
                let n = upsert
                    .execute(params![
                        cid.0,
                        r.uid,
                        r.ts.as_micros(),
                        r.last_ts.as_micros(),
                        meta,
                        lz4_flex::compress_prepend_size(&record),
                    ])
                    .map_err(err)?;
                state.interim.insert(h);
                if n == 0 {
                    stats.unchanged += 1;
                } else {
                    stats.written += 1;
                }
            }
        }
        stats.written += finals.len() as u64;
        // Pass 2: blocks (encoding and LZ4, most of the work) built on worker threads while
        // this one sums the rollup deltas and writes their segments; then the blocks are
        // written in order.
        let deltas = &mut self.deltas;
        let (built, rolled) = build_blocks(&mut self.builders, &finals, || {
            for r in &finals {
                deltas.add(r);
            }
            deltas.apply(&tx)
        });
        rolled.map_err(|f| f.into_store(&path, "writing rollups"))?;
        let built: Vec<Block> = built.into_iter().collect::<Option<_>>().ok_or_else(|| {
            StoreError::Invalid("a flow block could not be built (thread failed)".into())
        })?;
        {
            let mut put_block = tx.prepare_cached(INSERT_BLOCK).map_err(err)?;
            for b in &built {
                write_block(&mut put_block, cid, b).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.checkpoint_soon();
        Ok(stats)
    }
}

/// Blocks of `finals` (in order, [`BLOCK_RECORDS`] each) built by up to
/// `builders.len()` threads, `None` in place of a block whose thread failed; and what
/// `meanwhile` returned, run on this thread while they work.
fn build_blocks<R>(
    builders: &mut [BlockBuilder],
    finals: &[&FlowRecord],
    meanwhile: impl FnOnce() -> R,
) -> (Vec<Option<Block>>, R) {
    let chunks: Vec<&[&FlowRecord]> = finals.chunks(BLOCK_RECORDS).collect();
    let workers = builders.len().min(chunks.len());
    let fill = |b: &mut BlockBuilder, chunk: &[&FlowRecord]| {
        for r in chunk {
            b.push(r);
        }
        b.take()
    };
    if workers <= 1 {
        let built = match builders.first_mut() {
            Some(b) => chunks.iter().map(|c| Some(fill(b, c))).collect(),
            None => (0..chunks.len()).map(|_| None).collect(),
        };
        return (built, meanwhile());
    }
    let mut built: Vec<Option<Block>> = Vec::new();
    built.resize_with(chunks.len(), || None);
    let r = std::thread::scope(|s| {
        let handles: Vec<_> = builders[..workers]
            .iter_mut()
            .enumerate()
            .map(|(w, b)| {
                let chunks = &chunks;
                s.spawn(move || {
                    (w..chunks.len())
                        .step_by(workers)
                        .map(|i| (i, fill(b, chunks[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let r = meanwhile();
        for h in handles {
            // A worker that failed leaves its blocks `None`: the batch fails rather
            // than storing a gap.
            if let Ok(done) = h.join() {
                for (i, b) in done {
                    built[i] = Some(b);
                }
            }
        }
        r
    });
    (built, r)
}

fn write_block(
    st: &mut rusqlite::CachedStatement<'_>,
    cid: CaptureId,
    b: &Block,
) -> rusqlite::Result<()> {
    st.execute(params![
        cid.0, b.records, b.min_ts, b.max_ts, b.hosts, b.keys, b.meta, b.data
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
                upsert
                    .execute(params![
                        cid,
                        rec.uid,
                        rec.ts.as_micros(),
                        rec.last_ts.as_micros(),
                        blocks::meta_of_json(&rec, json.len()),
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
