//! SYN floods and flow floods per destination host: connection attempts that never
//! completed a handshake (`syn_flood`), or flows of any kind (`flow_flood`), counted per
//! destination over fixed windows of packet time, with the number of distinct sources
//! (many sources for one destination is the mark of spoofing).
//!
//! A connection attempt is a TCP flow whose originator sent a SYN but never an ACK
//! (Zeek history with `S` and without `A`): unanswered (S0), refused (REJ), or answered
//! by a SYN/ACK that the (often spoofed) source never acknowledged. A flood hammers one
//! port, or comes from many sources; a scan from one source touches many ports once,
//! which is the port-scan rules' business. Windows are aligned
//! to multiples of their length and a flow counts in the window of its first packet,
//! so any record order gives the same alerts; a window is judged once packet time is
//! past its end by the TCP filter's lateness, or at the end of the input. State is
//! bounded by `max_destinations` keys.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tunnelwatch_model::{Alert, Cause, FlowRecord, Timestamp};

use crate::config::{Config, FloodConfig};
use crate::net::addr_order;
use crate::summary::{keep_first, split_due, split_first, FirstFlows};
use crate::{AlertBuilder, Detector, FastMap, FastSet};

/// Distinct sources remembered per destination and window.
const MAX_SOURCES: usize = 65_536;

#[derive(Default)]
struct Count {
    flows: u64,
    attempts: u64,
    sources: FastSet<IpAddr>,
    attempt_sources: FastSet<IpAddr>,
    attempt_ports: BTreeMap<u16, u64>,
    ports: BTreeMap<u16, u64>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    uids: FirstFlows,
}

/// The detector.
pub struct Flood {
    cfg: FloodConfig,
    syn_on: bool,
    flows_on: bool,
    window_ns: i64,
    lateness_ns: i64,
    max_uids: usize,
    /// Per window, per destination: hashed within a window (a tree of (window,
    /// address) keys compared addresses all the way down, per record), put in address
    /// order when the window is judged.
    windows: BTreeMap<i64, FastMap<IpAddr, Count>>,
    /// Destinations over all windows (bounded by `max_destinations`).
    keys: usize,
    untracked: u64,
}

impl Flood {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Flood {
            cfg: config.flood.clone(),
            syn_on: config.enabled("syn_flood"),
            flows_on: config.enabled("flow_flood"),
            window_ns: ((config.flood.window * 1e9) as i64).max(1),
            lateness_ns: (config.tcp_filter.lateness * 1e9) as i64,
            max_uids: config.alerts.max_uids,
            windows: BTreeMap::new(),
            keys: 0,
            untracked: 0,
        }
    }

    /// Judges `windows` in order of window, then destination address.
    fn judge_windows(
        &mut self,
        windows: BTreeMap<i64, FastMap<IpAddr, Count>>,
        out: &mut Vec<Alert>,
    ) {
        for (w, counts) in windows {
            self.keys -= counts.len();
            let mut counts: Vec<_> = counts.into_iter().collect();
            counts.sort_unstable_by_key(|(dst, _)| addr_order(*dst));
            for (dst, c) in counts {
                self.judge((w, dst), c, out);
            }
        }
    }

    fn judge(&self, (w, dst): (i64, IpAddr), c: Count, out: &mut Vec<Alert>) {
        let ts = Timestamp((w + 1) * self.window_ns).max(c.last.unwrap_or_default());
        let secs = self.cfg.window;
        let top: Vec<String> = {
            let mut v: Vec<(&u16, &u64)> = c.ports.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.iter().take(10).map(|(p, n)| format!("{p}:{n}")).collect()
        };
        let (uids, cid) = split_first(&c.uids);
        let mut raise = |rule: &str, n: u64, threshold: u64, sources: usize, what: &str| {
            out.push(
                AlertBuilder::new(
                    rule,
                    ts,
                    crate::excess_severity(n as f64, threshold as f64)
                        .max(tunnelwatch_model::Severity::Medium),
                    crate::excess_score(n as f64, threshold as f64),
                    format!(
                        "{what}: {n} to {dst} in {secs} s from {sources}{} sources (threshold {threshold}); top ports {}",
                        if sources >= MAX_SOURCES { "+" } else { "" },
                        top.join(",")
                    ),
                )
                .hosts(None, Some(dst))
                .span(c.first.unwrap_or_default(), c.last.unwrap_or_default())
                .uids(uids.clone(), cid.clone())
                .max_uids(self.max_uids)
                .evidence("count", n)
                .evidence("threshold", threshold)
                .evidence("window", secs)
                .evidence("distinct_sources", sources as u64)
                .evidence("flows", c.flows)
                .build(),
            );
        };
        let top_port = c.attempt_ports.values().max().copied().unwrap_or(0);
        let spread = c.attempt_sources.len() as u64 * 2 >= self.cfg.syn_attempts;
        if self.syn_on
            && c.attempts >= self.cfg.syn_attempts
            && (top_port >= self.cfg.syn_attempts || spread)
        {
            raise(
                "syn_flood",
                c.attempts,
                self.cfg.syn_attempts,
                c.attempt_sources.len(),
                "SYN flood: TCP connection attempts never completed",
            );
        } else if self.flows_on && c.flows >= self.cfg.flows {
            raise(
                "flow_flood",
                c.flows,
                self.cfg.flows,
                c.sources.len(),
                "flow flood: new flows",
            );
        }
    }
}

/// A TCP flow whose originator sent a SYN and never an ACK.
pub fn is_attempt(r: &FlowRecord) -> bool {
    r.ip_proto == 6 && r.history.contains('S') && !r.history.contains('A')
}

impl Detector for Flood {
    fn record(&mut self, r: &FlowRecord, _out: &mut Vec<Alert>) {
        if r.cause == Cause::Status || !(self.syn_on || self.flows_on) {
            return;
        }
        let window = r.ts.as_nanos().div_euclid(self.window_ns);
        let counts = self.windows.entry(window).or_default();
        let c = match counts.get_mut(&r.resp_h) {
            Some(c) => c,
            None if self.keys >= self.cfg.max_destinations => {
                self.untracked += 1;
                return;
            }
            None => {
                self.keys += 1;
                counts.entry(r.resp_h).or_default()
            }
        };
        c.flows += 1;
        if c.sources.len() < MAX_SOURCES {
            c.sources.insert(r.orig_h);
        }
        if is_attempt(r) {
            c.attempts += 1;
            *c.attempt_ports.entry(r.resp_p).or_default() += 1;
            if c.attempt_sources.len() < MAX_SOURCES {
                c.attempt_sources.insert(r.orig_h);
            }
        }
        *c.ports.entry(r.resp_p).or_default() += 1;
        c.first = Some(c.first.map_or(r.ts, |t| t.min(r.ts)));
        c.last = Some(c.last.map_or(r.last_ts, |t| t.max(r.last_ts)));
        keep_first(&mut c.uids, r, self.max_uids);
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let due = split_due(
            &mut self.windows,
            now,
            self.window_ns,
            self.lateness_ns,
            |w| w,
        );
        self.judge_windows(due, out);
    }

    fn finish(&mut self, out: &mut Vec<Alert>) {
        let all = std::mem::take(&mut self.windows);
        self.judge_windows(all, out);
    }

    fn untracked(&self) -> u64 {
        self.untracked
    }
}
