//! Queries of stored flows and alerts through the filter language.
//!
//! Records come back as the JSON text the sensor's record serialised to (what `read
//! --flows` writes, byte for byte) together with the decoded [`FlowRecord`] for other
//! formats.

use rusqlite::params_from_iter;
use tunnelwatch_model::FlowRecord;

use crate::filter::{compile, Target};
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

impl Store {
    /// Calls `each` with the stored JSON text and the decoded record of every stored
    /// flow matching `q`, in order of first packet time (then insertion). `each`
    /// returns `false` to stop.
    pub fn flows(
        &self,
        q: &FlowQuery,
        mut each: impl FnMut(&str, FlowRecord) -> bool,
    ) -> Result<u64, StoreError> {
        let c = compile(&q.filter, Target::Flows)?;
        let mut sql = format!("SELECT id, record FROM flows WHERE {}", c.sql);
        if q.final_only {
            sql.push_str(" AND final = 1");
        }
        sql.push_str(" ORDER BY ts, id");
        let mut params = c.params;
        if let Some(n) = q.limit {
            sql.push_str(" LIMIT ?");
            params.push(rusqlite::types::Value::Integer(
                i64::try_from(n).unwrap_or(i64::MAX),
            ));
        }
        let mut st = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.sql("querying flows", e))?;
        let mut rows = st
            .query(params_from_iter(params.iter()))
            .map_err(|e| self.sql("querying flows", e))?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(|e| self.sql("querying flows", e))? {
            let id: i64 = row.get(0).map_err(|e| self.sql("querying flows", e))?;
            let packed: Vec<u8> = row.get(1).map_err(|e| self.sql("querying flows", e))?;
            let bad = |detail: String| StoreError::BadRecord {
                path: self.path.clone(),
                id,
                detail,
            };
            let json = lz4_flex::decompress_size_prepended(&packed)
                .map_err(|e| bad(format!("record does not decompress: {e}")))?;
            let text =
                String::from_utf8(json).map_err(|e| bad(format!("record is not UTF-8: {e}")))?;
            let rec: FlowRecord =
                serde_json::from_str(&text).map_err(|e| StoreError::BadRecord {
                    path: self.path.clone(),
                    id,
                    detail: e.to_string(),
                })?;
            n += 1;
            if !each(&text, rec) {
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
