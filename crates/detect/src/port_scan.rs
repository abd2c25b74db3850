//! Port scans from flow records alone (seed 002, "NMAP scan" in NetFlow): one source
//! reaching many (destination, port) pairs that did not reply within a window of
//! packet time. It reads only counters any flow export has (packets per direction,
//! the TCP state), so it works the same on NetFlow/IPFIX records.
//!
//! Unanswered: the responder sent nothing (filtered ports, dead hosts), or refused a
//! TCP connection with a reset (closed ports: Zeek state REJ). Windows are aligned to
//! multiples of their length; a flow counts in the window of its first packet. State
//! is bounded by `max_sources` keys and 65,536 pairs per key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use tunnelwatch_model::{Alert, Cause, ConnState, FlowRecord, Timestamp};

use crate::config::{Config, PortScanConfig};
use crate::summary::{keep_first, split_due, split_first, FirstFlows, LOWEST};
use crate::{AlertBuilder, Detector};

const MAX_PAIRS: usize = 65_536;

#[derive(Default)]
struct Seen {
    pairs: BTreeSet<(IpAddr, u8, u16)>,
    flows: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    uids: FirstFlows,
}

/// The detector.
pub struct PortScan {
    cfg: PortScanConfig,
    on: bool,
    window_ns: i64,
    lateness_ns: i64,
    max_uids: usize,
    seen: BTreeMap<(i64, IpAddr), Seen>,
    untracked: u64,
}

/// True when the responder did not answer, or refused with a reset.
pub fn unanswered(r: &FlowRecord) -> bool {
    r.resp_pkts == 0 || (r.ip_proto == 6 && r.conn_state == ConnState::REJ)
}

/// Multicast or broadcast destinations.
fn is_group(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_multicast() || v.is_broadcast() || v.octets()[3] == 255,
        IpAddr::V6(v) => v.is_multicast(),
    }
}

impl PortScan {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        PortScan {
            cfg: config.port_scan.clone(),
            on: config.enabled("port_scan"),
            window_ns: ((config.port_scan.window * 1e9) as i64).max(1),
            lateness_ns: (config.tcp_filter.lateness * 1e9) as i64,
            max_uids: config.alerts.max_uids,
            seen: BTreeMap::new(),
            untracked: 0,
        }
    }

    fn judge(&self, (w, src): (i64, IpAddr), s: Seen, out: &mut Vec<Alert>) {
        let n = s.pairs.len() as u64;
        if n < self.cfg.unanswered {
            return;
        }
        let hosts: BTreeSet<IpAddr> = s.pairs.iter().map(|p| p.0).collect();
        let ports: BTreeSet<u16> = s.pairs.iter().map(|p| p.2).collect();
        let shape = if hosts.len() == 1 {
            "vertical"
        } else if ports.len() == 1 {
            "horizontal"
        } else {
            "block"
        };
        let ts = Timestamp((w + 1) * self.window_ns).max(s.last.unwrap_or_default());
        let (uids, cid) = split_first(&s.uids);
        let resp = (hosts.len() == 1).then(|| *hosts.iter().next().unwrap_or(&src));
        out.push(
            AlertBuilder::new(
                "port_scan",
                ts,
                crate::excess_severity(n as f64, self.cfg.unanswered as f64),
                crate::excess_score(n as f64, self.cfg.unanswered as f64),
                format!(
                    "{shape} port scan from {src}: {n} destination ports without a reply in {} s ({} hosts, {} ports; threshold {})",
                    self.cfg.window,
                    hosts.len(),
                    ports.len(),
                    self.cfg.unanswered
                ),
            )
            .hosts(Some(src), resp)
            .span(s.first.unwrap_or_default(), s.last.unwrap_or_default())
            .uids(uids, cid)
            .max_uids(self.max_uids)
            .evidence("unanswered", n)
            .evidence("threshold", self.cfg.unanswered)
            .evidence("window", self.cfg.window)
            .evidence("distinct_hosts", hosts.len() as u64)
            .evidence("distinct_ports", ports.len() as u64)
            .evidence("flows", s.flows)
            .evidence("shape", shape)
            .build(),
        );
    }
}

impl Detector for PortScan {
    fn record(&mut self, r: &FlowRecord, _out: &mut Vec<Alert>) {
        // TCP and UDP only: ICMP, IGMP and the like have no ports to scan, and traffic
        // to a group or broadcast address expects no reply.
        if !self.on || r.cause == Cause::Status || !matches!(r.ip_proto, 6 | 17) {
            return;
        }
        if !unanswered(r) || is_group(r.resp_h) {
            return;
        }
        let key = (r.ts.as_nanos().div_euclid(self.window_ns), r.orig_h);
        if self.seen.len() >= self.cfg.max_sources && !self.seen.contains_key(&key) {
            self.untracked += 1;
            return;
        }
        let s = self.seen.entry(key).or_default();
        s.flows += 1;
        if s.pairs.len() < MAX_PAIRS {
            s.pairs.insert((r.resp_h, r.ip_proto, r.resp_p));
        }
        s.first = Some(s.first.map_or(r.ts, |t| t.min(r.ts)));
        s.last = Some(s.last.map_or(r.last_ts, |t| t.max(r.last_ts)));
        keep_first(&mut s.uids, r, self.max_uids);
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let due = split_due(&mut self.seen, now, self.window_ns, self.lateness_ns, |w| {
            (w, LOWEST)
        });
        for (k, s) in due {
            self.judge(k, s, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Alert>) {
        for (k, s) in std::mem::take(&mut self.seen) {
            self.judge(k, s, out);
        }
    }

    fn untracked(&self) -> u64 {
        self.untracked
    }
}
