//! Queries of stored flows and alerts through the filter language.
//!
//! Flows are found by reading flow blocks (`blocks.rs`): a filter that names hosts reads
//! only the blocks whose Bloom filter may hold them, then evaluates each row of their
//! `meta`; the records of a block (`data`) are decompressed only when one of its rows
//! matches, frame by frame. Records come back decoded ([`Store::flows`]) or as the JSON
//! text `read --flows` writes for them, byte for byte ([`Store::flow_texts`]).

use std::collections::HashMap;

use rusqlite::params_from_iter;
use tunnelwatch_model::FlowRecord;

use crate::blocks::{self, Frames, KeyList, Meta, MetaFrames, RecordAt, Stored, FRAME_ROWS};
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
    pub records: usize,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// A blob of a flow block.
#[derive(Clone, Copy)]
pub(crate) enum Part {
    /// The rows' keys.
    Keys,
    /// The rows' queryable fields, in frames.
    Meta,
    /// The records, in frames.
    Data,
}

/// Whether a Bloom filter may hold one of `hashes` (address hashes).
pub(crate) fn may_hold_any(bloom: &[u8], hashes: &[u64]) -> bool {
    hashes.iter().any(|&h| blocks::bloom_may_hold(bloom, h))
}

impl Store {
    /// The flow blocks `accept` takes (given a block and its Bloom filter), in
    /// insertion order. Filters are read in place, never copied.
    pub(crate) fn blocks_where(
        &self,
        accept: impl Fn(&BlockRef, &[u8]) -> bool,
    ) -> Result<Vec<BlockRef>, StoreError> {
        let err = |e| self.sql("listing flow blocks", e);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, records, min_ts, max_ts, hosts FROM flow_blocks ORDER BY id",
            )
            .map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let b = BlockRef {
                id: r.get(0).map_err(err)?,
                records: r.get::<_, i64>(1).map_err(err)?.max(0) as usize,
                min_ts: r.get(2).map_err(err)?,
                max_ts: r.get(3).map_err(err)?,
            };
            let bloom = r
                .get_ref(4)
                .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
                .map_err(err)?;
            if accept(&b, bloom) {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// A part of a block as stored.
    pub(crate) fn block_part(&self, id: i64, part: Part) -> Result<Vec<u8>, StoreError> {
        let err = |e| self.sql("reading a flow block", e);
        let sql = match part {
            Part::Keys => "SELECT keys FROM flow_blocks WHERE id = ?1",
            Part::Meta => "SELECT meta FROM flow_blocks WHERE id = ?1",
            Part::Data => "SELECT data FROM flow_blocks WHERE id = ?1",
        };
        self.conn
            .prepare_cached(sql)
            .map_err(err)?
            .query_row([id], |r| r.get(0))
            .map_err(err)
    }

    /// The decompressed `keys` of a block.
    pub(crate) fn block_keys(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        blocks::unpack(&self.block_part(id, Part::Keys)?).map_err(|d| self.bad_block(id, d))
    }

    pub(crate) fn bad_block(&self, id: i64, detail: String) -> StoreError {
        StoreError::BadRecord {
            path: self.path.clone(),
            id,
            detail: format!("flow block: {detail}"),
        }
    }

    /// Calls `each` with every stored flow matching `q`: final records in the order
    /// they were stored (the order flows ended, as nfdump lists a file), then interim
    /// records by first packet time. `each` returns `false` to stop.
    pub fn flows(
        &self,
        q: &FlowQuery,
        mut each: impl FnMut(FlowRecord) -> bool,
    ) -> Result<u64, StoreError> {
        self.scan_flows(q, |rec| rec.record().map(&mut each))
    }

    /// As [`Store::flows`], with each record's JSON as `read --flows` writes it
    /// (without the newline).
    pub fn flow_texts(
        &self,
        q: &FlowQuery,
        mut each: impl FnMut(&str) -> bool,
    ) -> Result<u64, StoreError> {
        let mut buf = Vec::with_capacity(2048);
        self.scan_flows(q, |rec| {
            buf.clear();
            rec.write_json(&mut buf)?;
            // Both forms give UTF-8 (checked for stored text, written for records).
            let text = std::str::from_utf8(&buf).map_err(|_| "record text is not UTF-8")?;
            Ok(each(text))
        })
    }

    /// The flows matching `q` as stored, in the order of [`Store::flows`]; `each`
    /// returns `false` to stop, or an error for a record that does not decode (named
    /// with its block or interim uid).
    fn scan_flows(
        &self,
        q: &FlowQuery,
        mut each: impl FnMut(Stored<'_>) -> Result<bool, String>,
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
        let refs =
            self.blocks_where(|_, bloom| hashes.as_ref().is_none_or(|h| may_hold_any(bloom, h)))?;
        for b in refs {
            // Rows to look at: those holding a wanted host, by their keys; or all.
            let rows: Vec<usize> = match f.hosts() {
                Some(hs) => {
                    let keys = self.block_keys(b.id)?;
                    let kl = KeyList::parse(&keys).map_err(|d| self.bad_block(b.id, d))?;
                    (0..kl.len())
                        .filter(|&i| {
                            let k = kl.get(i);
                            hs.iter().any(|h| *h == k.orig_h || *h == k.resp_h)
                        })
                        .collect()
                }
                None => (0..b.records).collect(),
            };
            if rows.is_empty() {
                continue;
            }
            let meta = self.block_part(b.id, Part::Meta)?;
            let mut mf = MetaFrames::new(&meta).map_err(|d| self.bad_block(b.id, d))?;
            // Matching rows: where their records are, and their ids (kept in meta).
            let mut hits: Vec<(usize, RecordAt, String, String)> = Vec::new();
            for i in rows {
                let hit = mf
                    .with_row(i, |r, at| {
                        f.matches(r)
                            .then(|| (i, at, r.uid.to_string(), r.community_id.to_string()))
                    })
                    .map_err(|d| self.bad_block(b.id, d))?;
                if let Some(hit) = hit {
                    hits.push(hit);
                    if n + hits.len() as u64 >= limit {
                        break;
                    }
                }
            }
            if hits.is_empty() {
                continue;
            }
            let data = self.block_part(b.id, Part::Data)?;
            let frames = Frames::parse(&data).map_err(|d| self.bad_block(b.id, d))?;
            let mut open: HashMap<usize, Vec<u8>> = HashMap::new();
            for (i, at, uid, community_id) in hits {
                let fno = i / FRAME_ROWS;
                if let std::collections::hash_map::Entry::Vacant(e) = open.entry(fno) {
                    e.insert(frames.frame(fno).map_err(|d| self.bad_block(b.id, d))?);
                }
                let frame = open.get(&fno).map_or(&[][..], Vec::as_slice);
                let more = at
                    .in_frame(frame, &uid, &community_id)
                    .and_then(&mut each)
                    .map_err(|d| self.bad_block(b.id, format!("record {i}: {d}")))?;
                n += 1;
                if !more || n >= limit {
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
            let m = Meta::parse(&meta).map_err(bad)?;
            if m.len() != 1 {
                return Err(bad(format!("{} rows in its meta", m.len())));
            }
            let (r, at) = m.row(0).map_err(bad)?;
            if !f.matches(&r) {
                continue;
            }
            let packed: Vec<u8> = row.get(2).map_err(err)?;
            let record = blocks::unpack(&packed).map_err(bad)?;
            let more = at
                .in_frame(&record, r.uid, r.community_id)
                .and_then(&mut each)
                .map_err(bad)?;
            n += 1;
            if !more || n >= limit {
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
