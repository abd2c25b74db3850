//! Queries of stored flows and alerts through the filter language.
//!
//! Flows are found by reading flow blocks (`blocks.rs`): a filter that names hosts reads
//! only the blocks whose Bloom filter may hold them, then evaluates each row of their
//! `meta`; the JSON of a block is decompressed only when one of its rows matches.
//! Records come back as the JSON text the sensor's record serialised to (what `read
//! --flows` writes, byte for byte) together with the decoded [`FlowRecord`] for other
//! formats.

use rusqlite::params_from_iter;
use tunnelwatch_model::FlowRecord;

use crate::blocks::{self, RowReader};
use crate::filter::{compile, FlowFilter, Target};
use crate::{Alert, Severity, Store, StoreError};

/// Which stored flows a query returns.
#[derive(Clone, Debug, Default)]
pub struct FlowQuery {
    /// Filter text (empty: all).
    pub filter: String,
    /// Most records returned (`None`: all).
    pub limit: Option<u64>,
    /// Leave out interim records whose flow has not ended in the store.
    pub final_only: bool,
}

/// A flow block as a query first sees it.
pub(crate) struct BlockRef {
    pub id: i64,
    pub min_ts: i64,
    pub max_ts: i64,
    /// The Bloom filter of its addresses (empty when not asked for).
    pub hosts: Vec<u8>,
}

impl BlockRef {
    /// Whether the block may hold one of `hashes` (address hashes), by its filter.
    pub(crate) fn may_hold_any(&self, hashes: &[u64]) -> bool {
        hashes
            .iter()
            .any(|&h| blocks::bloom_may_hold(&self.hosts, h))
    }
}

impl Store {
    /// Every flow block in insertion order, with its Bloom filter when `blooms`.
    pub(crate) fn block_refs(&self, blooms: bool) -> Result<Vec<BlockRef>, StoreError> {
        let err = |e| self.sql("listing flow blocks", e);
        let sql = if blooms {
            "SELECT id, min_ts, max_ts, hosts FROM flow_blocks ORDER BY id"
        } else {
            "SELECT id, min_ts, max_ts, x'' FROM flow_blocks ORDER BY id"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok(BlockRef {
                    id: r.get(0)?,
                    min_ts: r.get(1)?,
                    max_ts: r.get(2)?,
                    hosts: r.get(3)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// One decompressed blob (`meta` or `data`) of a block.
    pub(crate) fn block_blob(&self, id: i64, data: bool) -> Result<Vec<u8>, StoreError> {
        let err = |e| self.sql("reading a flow block", e);
        let sql = if data {
            "SELECT data FROM flow_blocks WHERE id = ?1"
        } else {
            "SELECT meta FROM flow_blocks WHERE id = ?1"
        };
        let packed: Vec<u8> = self
            .conn
            .prepare_cached(sql)
            .map_err(err)?
            .query_row([id], |r| r.get(0))
            .map_err(err)?;
        blocks::unpack(&packed).map_err(|d| self.bad_block(id, d))
    }

    pub(crate) fn bad_block(&self, id: i64, detail: String) -> StoreError {
        StoreError::BadRecord {
            path: self.path.clone(),
            id,
            detail: format!("flow block: {detail}"),
        }
    }

    /// Calls `each` with the stored JSON text and the decoded record of every stored
    /// flow matching `q`: final records in the order they were stored (the order flows
    /// ended, as nfdump lists a file), then interim records by first packet time.
    /// `each` returns `false` to stop.
    pub fn flows(
        &self,
        q: &FlowQuery,
        mut each: impl FnMut(&str, FlowRecord) -> bool,
    ) -> Result<u64, StoreError> {
        let f = FlowFilter::new(&q.filter)?;
        let limit = q.limit.unwrap_or(u64::MAX);
        let mut n = 0u64;
        if limit == 0 {
            return Ok(0);
        }
        let hashes: Option<Vec<u64>> = f
            .hosts()
            .map(|hs| hs.iter().map(blocks::addr_hash).collect());
        let decode = |id: i64, text: &str| {
            serde_json::from_str::<FlowRecord>(text).map_err(|e| StoreError::BadRecord {
                path: self.path.clone(),
                id,
                detail: e.to_string(),
            })
        };
        for b in self.block_refs(hashes.is_some())? {
            if hashes.as_ref().is_some_and(|h| !b.may_hold_any(h)) {
                continue;
            }
            let meta = self.block_blob(b.id, false)?;
            let rows = blocks::rows(&meta).map_err(|d| self.bad_block(b.id, d))?;
            let mut data: Option<Vec<u8>> = None;
            for (r, range) in rows {
                if !f.matches(&r) {
                    continue;
                }
                if data.is_none() {
                    data = Some(self.block_blob(b.id, true)?);
                }
                let text = data
                    .as_deref()
                    .and_then(|d| d.get(range))
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .ok_or_else(|| self.bad_block(b.id, "JSON text out of bounds".into()))?;
                n += 1;
                if !each(text, decode(b.id, text)?) || n >= limit {
                    return Ok(n);
                }
            }
        }
        if q.final_only {
            return Ok(n);
        }
        let err = |e| self.sql("querying interim flows", e);
        let mut st = self
            .conn
            .prepare_cached("SELECT uid, meta, record FROM flows_interim ORDER BY ts, uid")
            .map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let uid: String = row.get(0).map_err(err)?;
            let meta: Vec<u8> = row.get(1).map_err(err)?;
            let bad = |detail: String| StoreError::BadRecord {
                path: self.path.clone(),
                id: 0,
                detail: format!("interim flow {uid}: {detail}"),
            };
            let Some(r) = RowReader::single(&meta).next_row().map_err(bad)? else {
                return Err(bad("empty meta".into()));
            };
            if !f.matches(&r) {
                continue;
            }
            let packed: Vec<u8> = row.get(2).map_err(err)?;
            let json = blocks::unpack(&packed).map_err(bad)?;
            let text = String::from_utf8(json).map_err(|_| bad("record is not UTF-8".into()))?;
            n += 1;
            if !each(&text, decode(0, &text)?) || n >= limit {
                break;
            }
        }
        Ok(n)
    }

    /// Calls `each` for every stored alert matching `filter` at or above `min`, in time
    /// order. `each` returns `false` to stop.
    pub fn alerts(
        &self,
        filter: &str,
        min: Severity,
        limit: Option<u64>,
        mut each: impl FnMut(Alert) -> bool,
    ) -> Result<u64, StoreError> {
        let c = compile(filter, Target::Alerts)?;
        let sql = format!(
            "SELECT id, record FROM alerts WHERE ({}) AND severity >= ? ORDER BY ts, id LIMIT ?",
            c.sql
        );
        let mut params = c.params;
        params.push(rusqlite::types::Value::Integer(min.rank()));
        params.push(rusqlite::types::Value::Integer(
            limit.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        ));
        let mut st = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.sql("querying alerts", e))?;
        let mut rows = st
            .query(params_from_iter(params.iter()))
            .map_err(|e| self.sql("querying alerts", e))?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.sql("querying alerts", e))? {
            let id: i64 = row.get(0).map_err(|e| self.sql("querying alerts", e))?;
            let text: String = row.get(1).map_err(|e| self.sql("querying alerts", e))?;
            let a: Alert = serde_json::from_str(&text).map_err(|e| StoreError::BadRecord {
                path: self.path.clone(),
                id,
                detail: e.to_string(),
            })?;
            n += 1;
            if !each(a) {
                break;
            }
        }
        Ok(n)
    }
}
