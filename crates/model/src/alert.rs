//! The alert record: what a detector saw, which numbers crossed which threshold, and
//! which flows to look at. Its JSON form is a contract documented in
//! `docs/specs/alert.md` (fields as in `../shared/DESIGN.md`).
//!
//! Alerts are plain data: detectors build them, policy (lists, minimum severity) keeps
//! or drops them, sinks write them as JSON lines and into the store.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// How urgent an alert is, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Unusual; worth a look when hunting.
    Low,
    /// Suspicious; worth a look today.
    Medium,
    /// Likely an attack or a tunnel; act now.
    High,
}

impl Severity {
    /// All severities in increasing order.
    pub const ALL: [Severity; 3] = [Severity::Low, Severity::Medium, Severity::High];

    /// The stored rank (1 = low, 2 = medium, 3 = high).
    pub fn rank(self) -> i64 {
        self as i64 + 1
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of finding an alert is. Exactly these ten values exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A tunnel: one protocol carried inside another against policy.
    Tunnel,
    /// A covert channel: data hidden in fields or timing.
    CovertChannel,
    /// Periodic call-backs.
    Beacon,
    /// Probing of many ports or hosts.
    Scan,
    /// Denial of service: floods, resource exhaustion.
    Dos,
    /// TCP headers or behaviour no correct stack produces.
    TcpAnomaly,
    /// Application-protocol misuse.
    ProtocolAnomaly,
    /// Departure from a learnt profile.
    Baseline,
    /// A configured limit exceeded.
    Threshold,
    /// A black-listed host, network or port.
    List,
}

impl Category {
    /// All categories.
    pub const ALL: [Category; 10] = [
        Category::Tunnel,
        Category::CovertChannel,
        Category::Beacon,
        Category::Scan,
        Category::Dos,
        Category::TcpAnomaly,
        Category::ProtocolAnomaly,
        Category::Baseline,
        Category::Threshold,
        Category::List,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Tunnel => "tunnel",
            Category::CovertChannel => "covert_channel",
            Category::Beacon => "beacon",
            Category::Scan => "scan",
            Category::Dos => "dos",
            Category::TcpAnomaly => "tcp_anomaly",
            Category::ProtocolAnomaly => "protocol_anomaly",
            Category::Baseline => "baseline",
            Category::Threshold => "threshold",
            Category::List => "list",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// When the evidence was complete and the alert was raised (packet time).
    pub ts: Timestamp,
    /// The earliest packet time of the evidence.
    pub first_ts: Timestamp,
    /// The latest packet time of the evidence.
    pub last_ts: Timestamp,
    /// The named rule that raised it (`xmas_scan`, `syn_flood`, …).
    pub detector: String,
    /// What kind of finding it is.
    pub category: Category,
    /// How urgent.
    pub severity: Severity,
    /// How strongly the evidence exceeds the threshold, 0–1 (see `docs/specs/alert.md`).
    pub score: f64,
    /// One sentence for a person, with the numbers.
    pub message: String,
    /// Source / client address (the scanner, the flooder, the originator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_h: Option<IpAddr>,
    /// Target / server address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_h: Option<IpAddr>,
    /// `uid`s of flows to look at (at most a detector-defined number, the first ones).
    #[serde(default)]
    pub uids: Vec<String>,
    /// Community ID of the first flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// The numbers and the thresholds they crossed.
    pub evidence: serde_json::Map<String, serde_json::Value>,
}
