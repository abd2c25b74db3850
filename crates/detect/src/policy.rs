//! The seed's colour lists and the severity floor, applied to every alert after the
//! detectors (seed 000, "Reducing false positive ideas"): black entries are always
//! reported (kept whatever else says, raised to at least medium), white entries never,
//! red entries only at or above their `min_severity` (default high). Then alerts below
//! `alerts.min_severity` are dropped.
//!
//! Black entries without a `detector` also watch flows: [`BlackList`] raises a
//! `black_list` alert per (client, server) and summary period for the flows that match.

use tunnelwatch_model::{Alert, Cause, FlowRecord, Severity, Timestamp};

use crate::config::{Config, ListEntry};
use crate::summary::{port_list, split_first, Queue};
use crate::{AlertBuilder, Detector};

/// What the policy does with an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Reported.
    Keep,
    /// Dropped by a white-list entry.
    White,
    /// Dropped by a red-list entry's severity.
    Red,
    /// Dropped below the minimum severity.
    BelowMin,
}

/// The port an alert is about: its flow's server port, or the only port of a summary.
fn alert_port(a: &Alert) -> Option<u16> {
    if let Some(p) = a.evidence.get("resp_p").and_then(|v| v.as_u64()) {
        return u16::try_from(p).ok();
    }
    let ports = a.evidence.get("ports")?.as_object()?;
    if ports.len() == 1 {
        ports.keys().next()?.parse().ok()
    } else {
        None
    }
}

fn matches_alert(e: &ListEntry, a: &Alert) -> bool {
    let host = |net: &Option<crate::net::Net>, h: Option<std::net::IpAddr>| {
        net.is_none_or(|n| h.is_some_and(|h| n.contains(h)))
    };
    host(&e.client, a.orig_h)
        && host(&e.server, a.resp_h)
        && e.net.is_none_or(|n| {
            a.orig_h.is_some_and(|h| n.contains(h)) || a.resp_h.is_some_and(|h| n.contains(h))
        })
        && e.port.is_none_or(|p| alert_port(a) == Some(p))
        && e.detector.as_ref().is_none_or(|d| *d == a.detector)
}

fn matches_flow(e: &ListEntry, r: &FlowRecord) -> bool {
    e.detector.is_none()
        && e.client.is_none_or(|n| n.contains(r.orig_h))
        && e.server.is_none_or(|n| n.contains(r.resp_h))
        && e.net
            .is_none_or(|n| n.contains(r.orig_h) || n.contains(r.resp_h))
        && e.port.is_none_or(|p| p == r.resp_p)
        && (e.client.is_some() || e.server.is_some() || e.net.is_some() || e.port.is_some())
}

/// Applies the lists and the floor to `a` (a black-listed alert is marked in its
/// evidence and its severity raised).
pub fn decide(c: &Config, a: &mut Alert) -> Decision {
    if let Some(e) = c.lists.black.iter().find(|e| matches_alert(e, a)) {
        a.severity = a.severity.max(Severity::Medium);
        a.evidence.insert("list".into(), "black".into());
        if let Some(n) = &e.note {
            a.evidence.insert("list_note".into(), n.clone().into());
        }
        return Decision::Keep;
    }
    if c.lists.white.iter().any(|e| matches_alert(e, a)) {
        return Decision::White;
    }
    if let Some(e) = c.lists.red.iter().find(|e| matches_alert(e, a)) {
        if a.severity < e.min_severity.unwrap_or(Severity::High) {
            return Decision::Red;
        }
    }
    if a.severity < c.alerts.min_severity {
        return Decision::BelowMin;
    }
    Decision::Keep
}

/// Flows matching a black-list entry.
pub struct BlackList {
    entries: Vec<ListEntry>,
    on: bool,
    queue: Queue,
    max_uids: usize,
}

impl BlackList {
    /// The detector for `config`'s black list.
    pub fn new(config: &Config) -> Self {
        BlackList {
            entries: config.lists.black.clone(),
            on: config.enabled("black_list"),
            queue: Queue::new(
                config.tcp_filter.summary_period,
                config.tcp_filter.lateness,
                config.alerts.max_uids,
            ),
            max_uids: config.alerts.max_uids,
        }
    }

    fn raise(&self, k: crate::summary::Key, e: crate::summary::Entry, out: &mut Vec<Alert>) {
        let (uids, cid) = split_first(&e.uids);
        out.push(
            AlertBuilder::new(
                "black_list",
                self.queue.period_end(&k).max(e.last_ts.unwrap_or_default()),
                Severity::Medium,
                1.0,
                format!(
                    "{} flows from {} to {} match the black list, ports: {}",
                    e.flows,
                    k.src,
                    k.dst,
                    port_list(&e.ports)
                ),
            )
            .hosts(Some(k.src), Some(k.dst))
            .span(
                e.first_ts.unwrap_or_default(),
                e.last_ts.unwrap_or_default(),
            )
            .uids(uids, cid)
            .max_uids(self.max_uids)
            .evidence("flows", e.flows)
            .build(),
        );
    }
}

impl Detector for BlackList {
    fn record(&mut self, r: &FlowRecord, _out: &mut Vec<Alert>) {
        if !self.on || r.cause == Cause::Status {
            return;
        }
        if self.entries.iter().any(|e| matches_flow(e, r)) {
            self.queue
                .add("black_list", r, (r.orig_h, r.resp_h, r.resp_p), 1);
        }
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        for (k, e) in self.queue.due(now) {
            self.raise(k, e, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Alert>) {
        for (k, e) in self.queue.drain() {
            self.raise(k, e, out);
        }
    }

    fn untracked(&self) -> u64 {
        self.queue.untracked()
    }
}
