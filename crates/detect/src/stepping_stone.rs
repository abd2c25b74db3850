//! Stepping stones (seed 001: "stepping stones" among Argus' packet-dynamics uses;
//! Zhang & Paxson, "Detecting Stepping Stones", USENIX Security 2000): someone typing
//! into a host and, from it, into another — an interactive session into a relay and an
//! interactive session out of it whose activity moves together. The flow table gives
//! each typing side's ON-period starts (resumed sending after ≥ 0.5 s of silence,
//! `dynamics.*.onsets`); two sessions form a stepping stone when one ends at the host
//! where the other begins, they overlap in time, and at least `min_matches` ON periods
//! and `min_share` of the fewer session's start within `delta` seconds of each other
//! (Zhang & Paxson: δ = 80 ms).
//!
//! Sessions are kept for `window` seconds after they were last seen, at most
//! `max_sessions`; interim records update theirs, so a chain alerts while it is used.
//! Each pair alerts once. Medium: bastion hosts are stepping stones by design (white
//! list them).

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;

use tunnelwatch_model::{Alert, FlowRecord, Severity};

use crate::config::{Config, SteppingStoneConfig};
use crate::{AlertBuilder, Detector};

struct Session {
    uid: String,
    community_id: String,
    orig_h: IpAddr,
    resp_h: IpAddr,
    resp_p: u16,
    first: f64,
    last: f64,
    onsets: Vec<f64>,
}

/// The detector.
pub struct SteppingStone {
    cfg: SteppingStoneConfig,
    on: bool,
    sessions: VecDeque<Session>,
    alerted: BTreeSet<(String, String)>,
    untracked: u64,
}

impl SteppingStone {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        SteppingStone {
            cfg: config.stepping_stone.clone(),
            on: config.enabled("stepping_stone"),
            sessions: VecDeque::new(),
            alerted: BTreeSet::new(),
            untracked: 0,
        }
    }

    /// ON periods of `a` and `b` starting within `delta` of each other (each of `b`'s
    /// matched at most once).
    fn matches(&self, a: &[f64], b: &[f64]) -> usize {
        let mut used = vec![false; b.len()];
        let mut n = 0;
        for x in a {
            if let Some(j) = (0..b.len()).find(|&j| !used[j] && (b[j] - x).abs() <= self.cfg.delta)
            {
                used[j] = true;
                n += 1;
            }
        }
        n
    }

    fn check(&mut self, inbound: usize, outbound: usize, out: &mut Vec<Alert>) {
        let (i, o) = (&self.sessions[inbound], &self.sessions[outbound]);
        if i.resp_h != o.orig_h || i.orig_h == o.resp_h || i.uid == o.uid {
            return;
        }
        if i.last < o.first || o.last < i.first {
            return;
        }
        let key = (i.uid.clone(), o.uid.clone());
        if self.alerted.contains(&key) {
            return;
        }
        let m = self.matches(&i.onsets, &o.onsets);
        let fewer = i.onsets.len().min(o.onsets.len()).max(1);
        let share = m as f64 / fewer as f64;
        if m < self.cfg.min_matches || share < self.cfg.min_share {
            return;
        }
        let first = i.first.min(o.first);
        let last = i.last.max(o.last);
        let alert = AlertBuilder::new(
            "stepping_stone",
            tunnelwatch_model::Timestamp::from_secs_f64(last),
            Severity::Medium,
            0.6,
            format!(
                "stepping stone through {}: {} typed into it (port {}) and from it into {}:{} — {m} of {fewer} typing bursts started within {:.0} ms of each other",
                i.resp_h,
                i.orig_h,
                i.resp_p,
                o.resp_h,
                o.resp_p,
                self.cfg.delta * 1000.0
            ),
        )
        .hosts(Some(i.orig_h), Some(o.resp_h))
        .span(
            tunnelwatch_model::Timestamp::from_secs_f64(first),
            tunnelwatch_model::Timestamp::from_secs_f64(last),
        )
        .uids(vec![i.uid.clone(), o.uid.clone()], Some(i.community_id.clone()))
        .evidence("relay", i.resp_h.to_string())
        .evidence("matched_onsets", m)
        .evidence("share", crate::round3(share))
        .build();
        self.alerted.insert(key);
        out.push(alert);
    }
}

impl Detector for SteppingStone {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if !self.on || r.ip_proto != 6 {
            return;
        }
        let (o, q) = (&r.dynamics.orig, &r.dynamics.resp);
        let onsets = if o.keystrokes >= q.keystrokes {
            &o.onsets
        } else {
            &q.onsets
        };
        if onsets.len() < self.cfg.min_matches {
            return;
        }
        let now = r.last_ts.as_secs_f64_micros();
        // Forget sessions quiet for longer than the window.
        while self
            .sessions
            .front()
            .is_some_and(|s| s.last < now - self.cfg.window)
        {
            self.sessions.pop_front();
        }
        let s = Session {
            uid: r.uid.clone(),
            community_id: r.community_id.clone(),
            orig_h: r.orig_h,
            resp_h: r.resp_h,
            resp_p: r.resp_p,
            first: r.ts.as_secs_f64_micros(),
            last: now,
            onsets: onsets.clone(),
        };
        let at = if let Some(i) = self.sessions.iter().position(|x| x.uid == r.uid) {
            self.sessions[i] = s;
            i
        } else {
            if self.sessions.len() >= self.cfg.max_sessions {
                self.sessions.pop_front();
                self.untracked += 1;
            }
            self.sessions.push_back(s);
            self.sessions.len() - 1
        };
        for j in 0..self.sessions.len() {
            if j != at {
                self.check(j, at, out);
                self.check(at, j, out);
            }
        }
    }

    fn untracked(&self) -> u64 {
        self.untracked
    }
}
