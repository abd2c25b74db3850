//! Stored alerts: the alert record of `../shared/DESIGN.md` (`ts`, `uids`,
//! `community_id`, `orig_h`, `resp_h`, `detector`, `category`, `severity`, `score`,
//! `message`, `evidence`) and its insertion.
//!
//! No detector produces alerts yet; this type is the store's side of the contract and
//! moves to `tunnelwatch-model` when the first detector lands.

use std::net::IpAddr;

use rusqlite::params;
use serde::{Deserialize, Serialize};
use tunnelwatch_model::Timestamp;

use crate::addr::addr_to_blob;
use crate::{CaptureId, Store, StoreError};

/// How urgent an alert is, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Unusual.
    Low,
    /// Suspicious.
    Medium,
    /// Likely malicious.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// All severities in increasing order.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The stored rank (0 = info … 4 = critical).
    pub fn rank(self) -> i64 {
        self as i64
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// When the evidence was complete (packet time).
    pub ts: Timestamp,
    /// `uid`s of the flows the alert is about.
    pub uids: Vec<String>,
    /// Community ID of the main flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// Client (originator) address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_h: Option<IpAddr>,
    /// Server (responder) address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_h: Option<IpAddr>,
    /// The detector that raised it (`beacon`, `dns_tunnel`, …).
    pub detector: String,
    /// tunnel, covert_channel, beacon, scan, dos, tcp_anomaly, protocol_anomaly,
    /// baseline, threshold or list.
    pub category: String,
    /// How urgent.
    pub severity: Severity,
    /// Detector score (0–1 or detector-defined).
    pub score: f64,
    /// One sentence for a person.
    pub message: String,
    /// The numbers and thresholds that crossed.
    pub evidence: serde_json::Value,
}

impl Store {
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
                    a.category,
                    a.severity.rank(),
                    a.score,
                    a.message,
                    a.evidence.to_string(),
                    record,
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(alerts.len() as u64)
    }
}
