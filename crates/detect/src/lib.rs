//! The detectors of tunnelwatch and the contract they share (`docs/specs/detector.md`).
//!
//! A [`Detector`] is a pure function of the flow records it is given and of its own
//! bounded state: no clock (time is the records' packet time), no I/O, the same input
//! gives the same alerts. Each raises one or more named rules (the alerts' `detector`
//! field, listed in [`RULES`]), every threshold comes from [`Config`], and each rule has
//! a positive and a benign test. [`Detection`] runs them all over a record stream and
//! applies the policy the seeds ask for: rules switched off, black / white / red lists,
//! and a minimum severity.
//!
//! The packet-level facts the TCP filter needs (first packets in order, header
//! oddities, zero-window and ACK-storm runs) are gathered by the flow table and
//! carried on the record, so detection never parses packets (Zeek's split between
//! the engine's facts and the policy's notices) and works the same on one thread or
//! many.
#![deny(missing_docs)]

use std::net::IpAddr;

use tunnelwatch_model::{Alert, Category, FlowRecord, Severity, Timestamp};

pub mod baseline;
pub mod beacon;
pub mod config;
pub mod dns_flow;
pub mod dns_tunnel;
pub mod flood;
pub mod http_checks;
pub mod icmp_tunnel;
pub mod interactive;
pub mod net;
mod once;
pub mod policy;
pub mod port_scan;
pub mod replay;
pub mod scoring;
pub mod signature;
pub mod stepping_stone;
pub mod summary;
pub mod tcp_filter;
pub mod threshold;
pub mod upload;

/// A hash map for keys taken from traffic: foldhash, seeded at random per map (several
/// times cheaper than SipHash on address keys; a sender cannot aim collisions without
/// the seed).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The set form of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use config::{Config, ConfigError};

/// Every rule name, with the category of its alerts.
pub const RULES: [(&str, Category); 50] = [
    ("reserved_bits", Category::TcpAnomaly),
    ("urg_without_pointer", Category::TcpAnomaly),
    ("pointer_without_urg", Category::TcpAnomaly),
    ("bad_tcp_option", Category::TcpAnomaly),
    ("land", Category::Dos),
    ("winnuke", Category::Dos),
    ("xmas_scan", Category::Scan),
    ("fin_scan", Category::Scan),
    ("null_scan", Category::Scan),
    ("ack_scan", Category::Scan),
    ("half_open_closed", Category::Scan),
    ("half_open_open", Category::Scan),
    ("synack_unanswered", Category::Scan),
    ("syn_no_answer", Category::Scan),
    ("connect_scan", Category::Scan),
    ("unused_connection", Category::Dos),
    ("ack_storm", Category::TcpAnomaly),
    ("zero_window", Category::Dos),
    ("syn_flood", Category::Dos),
    ("flow_flood", Category::Dos),
    ("port_scan", Category::Scan),
    ("long_duration", Category::Threshold),
    ("many_bytes", Category::Threshold),
    ("many_packets", Category::Threshold),
    ("black_list", Category::List),
    ("connect_without_tls", Category::Tunnel),
    ("connect_port_policy", Category::ProtocolAnomaly),
    ("ssh_in_http", Category::Tunnel),
    ("ssh_non_standard_port", Category::Tunnel),
    ("foreign_protocol_on_port", Category::Tunnel),
    ("http_without_host", Category::ProtocolAnomaly),
    ("exotic_method", Category::ProtocolAnomaly),
    ("response_without_request", Category::ProtocolAnomaly),
    ("dns_tunnel", Category::Tunnel),
    ("icmp_tunnel", Category::Tunnel),
    ("upload_volume", Category::Threshold),
    ("keystrokes", Category::CovertChannel),
    ("reverse_shell", Category::CovertChannel),
    ("interactive_in_other_protocol", Category::Tunnel),
    ("beacon", Category::Beacon),
    ("repeated_fetch", Category::Beacon),
    ("long_connection", Category::Threshold),
    ("signature", Category::Tunnel),
    ("dns_tunnel_flow", Category::Tunnel),
    ("stepping_stone", Category::Tunnel),
    ("tcp_replay", Category::TcpAnomaly),
    ("baseline_statistical", Category::Baseline),
    ("baseline_guess", Category::Baseline),
    ("baseline_probability", Category::Baseline),
    ("baseline_static", Category::Baseline),
];

/// The category of a rule's alerts.
pub fn category_of(rule: &str) -> Category {
    RULES
        .iter()
        .find(|(n, _)| *n == rule)
        .map_or(Category::TcpAnomaly, |(_, c)| *c)
}

/// The shape every detector has.
pub trait Detector {
    /// Takes one flow record (final or interim, in the order flows ended).
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>);
    /// Packet time has reached `now`: raise what is due (nothing, for detectors that
    /// judge each record as it comes).
    fn advance(&mut self, _now: Timestamp, _out: &mut Vec<Alert>) {}
    /// The input ended: raise everything still pending.
    fn finish(&mut self, _out: &mut Vec<Alert>) {}
    /// Findings or keys not tracked because the detector's bounded state was full.
    fn untracked(&self) -> u64 {
        0
    }
}

/// How far `value` is past `threshold`, as a score in 0–1: 0 at the threshold, 0.5 at
/// twice it, 0.9 at ten times.
pub fn excess_score(value: f64, threshold: f64) -> f64 {
    if threshold <= 0.0 || value <= 0.0 {
        return 1.0;
    }
    round3((1.0 - threshold / value).clamp(0.0, 1.0))
}

/// Severity by how far a count is past its threshold: high at ten times, medium at
/// twice, low otherwise.
pub fn excess_severity(value: f64, threshold: f64) -> Severity {
    if value >= 10.0 * threshold {
        Severity::High
    } else if value >= 2.0 * threshold {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// A server's `address:port` as alert text shows it, written only when an alert is:
/// detectors build it for every record.
pub(crate) struct HostPort(pub std::net::IpAddr, pub u16);

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

/// Rounded to 3 decimals (scores and evidence read as text).
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The score of a rule whose severity is fixed rather than measured: 0.3, 0.6, 0.9.
pub fn severity_score(s: Severity) -> f64 {
    match s {
        Severity::Low => 0.3,
        Severity::Medium => 0.6,
        Severity::High => 0.9,
    }
}

/// Builds alerts with the fields every detector fills the same way.
pub struct AlertBuilder {
    alert: Alert,
    max_uids: usize,
}

impl AlertBuilder {
    /// An alert of `rule` raised at `ts`.
    pub fn new(rule: &str, ts: Timestamp, severity: Severity, score: f64, message: String) -> Self {
        AlertBuilder {
            alert: Alert {
                ts,
                first_ts: ts,
                last_ts: ts,
                detector: rule.to_string(),
                category: category_of(rule),
                severity,
                score,
                message,
                orig_h: None,
                resp_h: None,
                uids: Vec::new(),
                community_id: None,
                evidence: serde_json::Map::new(),
            },
            max_uids: usize::MAX,
        }
    }

    /// The alert is about one flow.
    pub fn flow(mut self, r: &FlowRecord) -> Self {
        let a = &mut self.alert;
        a.first_ts = r.ts;
        a.last_ts = r.last_ts;
        a.orig_h = Some(r.orig_h);
        a.resp_h = Some(r.resp_h);
        a.uids = vec![r.uid.clone()];
        a.community_id = Some(r.community_id.clone());
        self.evidence("resp_p", r.resp_p)
    }

    /// The two hosts.
    pub fn hosts(mut self, orig: Option<IpAddr>, resp: Option<IpAddr>) -> Self {
        self.alert.orig_h = orig;
        self.alert.resp_h = resp;
        self
    }

    /// The evidence's time span.
    pub fn span(mut self, first: Timestamp, last: Timestamp) -> Self {
        self.alert.first_ts = first;
        self.alert.last_ts = last;
        self
    }

    /// The flows to look at (kept up to the configured number) and the first one's
    /// Community ID.
    pub fn uids(mut self, uids: Vec<String>, community_id: Option<String>) -> Self {
        self.alert.uids = uids;
        self.alert.community_id = community_id;
        self
    }

    /// One evidence value.
    pub fn evidence(mut self, key: &str, v: impl Into<serde_json::Value>) -> Self {
        self.alert.evidence.insert(key.to_string(), v.into());
        self
    }

    /// Caps the `uid` list.
    pub fn max_uids(mut self, n: usize) -> Self {
        self.max_uids = n;
        self
    }

    /// The alert.
    pub fn build(mut self) -> Alert {
        self.alert.uids.truncate(self.max_uids);
        self.alert
    }
}

/// What [`Detection`] did, for the run's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectionStats {
    /// Alerts kept.
    pub raised: u64,
    /// Alerts dropped by the white list.
    pub whitelisted: u64,
    /// Alerts dropped by a red-list entry's severity.
    pub redlisted: u64,
    /// Alerts dropped below the minimum severity.
    pub below_min: u64,
    /// Findings or keys not tracked because a detector's state was full.
    pub untracked: u64,
}

/// All detectors over one record stream, with the lists and the severity floor.
pub struct Detection {
    config: Config,
    detectors: Vec<Box<dyn Detector + Send>>,
    /// Apart from the others: its profiles are loaded from and saved to the store.
    baseline: baseline::Baseline,
    now: Option<Timestamp>,
    pending: Vec<Alert>,
    stats: DetectionStats,
}

impl Detection {
    /// The detectors `config` enables.
    pub fn new(config: Config) -> Self {
        let detectors: Vec<Box<dyn Detector + Send>> = vec![
            Box::new(tcp_filter::TcpFilter::new(&config)),
            Box::new(flood::Flood::new(&config)),
            Box::new(port_scan::PortScan::new(&config)),
            Box::new(threshold::Thresholds::new(&config)),
            Box::new(http_checks::HttpChecks::new(&config)),
            Box::new(dns_tunnel::DnsTunnel::new(&config)),
            Box::new(dns_flow::DnsFlow::new(&config)),
            Box::new(icmp_tunnel::IcmpTunnel::new(&config)),
            Box::new(upload::Upload::new(&config)),
            Box::new(interactive::Interactive::new(&config)),
            Box::new(beacon::Beacon::new(&config)),
            Box::new(signature::Signature::new(&config)),
            Box::new(stepping_stone::SteppingStone::new(&config)),
            Box::new(replay::Replay::new(&config)),
            Box::new(policy::BlackList::new(&config)),
        ];
        Detection {
            baseline: baseline::Baseline::new(&config),
            config,
            detectors,
            now: None,
            pending: Vec::new(),
            stats: DetectionStats::default(),
        }
    }

    /// Takes one record; alerts that are due are appended to `out`.
    pub fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let mut pending = std::mem::take(&mut self.pending);
        for d in self.all() {
            d.record(r, &mut pending);
        }
        if self.now.is_none_or(|n| r.last_ts > n) {
            self.now = Some(r.last_ts);
            for d in self.all() {
                d.advance(r.last_ts, &mut pending);
            }
        }
        self.pending = pending;
        self.release(out);
    }

    /// Every detector, the baseline last.
    fn all(&mut self) -> impl Iterator<Item = &mut (dyn Detector + Send + 'static)> {
        self.detectors
            .iter_mut()
            .map(|d| &mut **d)
            .chain(std::iter::once(
                &mut self.baseline as &mut (dyn Detector + Send),
            ))
    }

    /// The baseline detector: its mode and its profiles.
    pub fn baseline(&mut self) -> &mut baseline::Baseline {
        &mut self.baseline
    }

    /// The input ended: everything pending is raised.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        let mut pending = std::mem::take(&mut self.pending);
        for d in self.all() {
            d.finish(&mut pending);
        }
        self.pending = pending;
        self.release(out);
    }

    /// What was raised and dropped so far.
    pub fn stats(&self) -> DetectionStats {
        let mut s = self.stats.clone();
        s.untracked =
            self.detectors.iter().map(|d| d.untracked()).sum::<u64>() + self.baseline.untracked();
        s
    }

    fn release(&mut self, out: &mut Vec<Alert>) {
        for mut a in self.pending.drain(..) {
            match policy::decide(&self.config, &mut a) {
                policy::Decision::Keep => {
                    self.stats.raised += 1;
                    out.push(a);
                }
                policy::Decision::White => self.stats.whitelisted += 1,
                policy::Decision::Red => self.stats.redlisted += 1,
                policy::Decision::BelowMin => self.stats.below_min += 1,
            }
        }
    }
}
