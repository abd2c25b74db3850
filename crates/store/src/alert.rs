//! Stored alerts: the alert record of `tunnelwatch-model` (`docs/specs/alert.md`) and
//! its insertion. The columns the filter language and the views use are kept beside the
//! whole alert as JSON.

use rusqlite::params;
use tunnelwatch_model::Alert;

use crate::addr::addr_to_blob;
use crate::{CaptureId, Store, StoreError};

impl Store {
    /// Deletes the alerts a capture set raised before (a re-read raises them again).
    pub fn delete_capture_alerts(&mut self, capture: CaptureId) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM alerts WHERE capture_id = ?1", [capture.0])
            .map_err(|e| StoreError::from_sql(&self.path, "deleting a capture's alerts", e))?;
        Ok(n as u64)
    }

    /// Inserts alerts in one transaction (`capture` when they came from a read).
    pub fn insert_alerts(
        &mut self,
        capture: Option<CaptureId>,
        alerts: &[Alert],
    ) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let err = |e| StoreError::from_sql(&path, "inserting alerts", e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO alerts (capture_id, ts, uids, community_id, orig_h, resp_h,
                       detector, category, severity, score, message, evidence, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(err)?;
            for a in alerts {
                let uids = serde_json::to_string(&a.uids).unwrap_or_else(|_| "[]".into());
                let record = serde_json::to_string(a).unwrap_or_else(|_| "{}".into());
                st.execute(params![
                    capture.map(|c| c.0),
                    a.ts.as_micros(),
                    uids,
                    a.community_id,
                    a.orig_h.map(|h| addr_to_blob(h).to_vec()),
                    a.resp_h.map(|h| addr_to_blob(h).to_vec()),
                    a.detector,
                    a.category.as_str(),
                    a.severity.rank(),
                    a.score,
                    a.message,
                    serde_json::Value::Object(a.evidence.clone()).to_string(),
                    record,
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(alerts.len() as u64)
    }
}
