//! Uploads out of proportion (seed 000, trace 1: "high volumes in POST/PUT"): a flow
//! whose client sent far more than it received — producer/consumer ratio
//! `(out − in) / (out + in)` near 1 — and at least `min_bytes`. Low on its own (backups,
//! `git push`, `scp` up, and in Zeek's traces long telnet/rlogin lines, are everyday);
//! medium when it is an HTTP POST or PUT, the seed's tunnel trace. Interim records are read, so a long
//! exfiltration alerts while it runs; each flow alerts once.
//!
//! The same per client → server:port pair over windows of `pair_window` seconds
//! (aligned to multiples of it, keyed by each flow's start): many flows that each stay
//! under `min_bytes` — an exfiltration cut into small POSTs — alert once per pair and
//! window (`upload_volume` with `scope: pair`) when together they reach
//! `pair_min_bytes` at the same ratio. Final records only (each flow counted once);
//! at most `max_pairs` pairs (untracked beyond).

use std::net::IpAddr;

use tunnelwatch_model::{Alert, Cause, FlowRecord, Severity};

use crate::config::{Config, UploadConfig};
use crate::once::OncePerFlow;
use crate::{AlertBuilder, Detector, FastMap};

/// The detector.
pub struct Upload {
    cfg: UploadConfig,
    on: bool,
    once: OncePerFlow,
    /// Per (client, server, port, window start).
    pairs: FastMap<(IpAddr, IpAddr, u16, i64), PairTally>,
    /// The window packet time is in (pairs of older windows are dropped when it moves).
    slot: i64,
    untracked: u64,
}

impl Upload {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Upload {
            cfg: config.upload.clone(),
            on: config.enabled("upload_volume"),
            once: OncePerFlow::default(),
            pairs: FastMap::default(),
            slot: i64::MIN,
            untracked: 0,
        }
    }
}

/// What one client sent one server:port in one window.
#[derive(Clone, Copy, Default)]
struct PairTally {
    out: u64,
    back: u64,
    flows: u64,
    posts: u64,
    alerted: bool,
}

impl Upload {
    fn pair(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let w = self.cfg.pair_window.max(1.0);
        let slot = (r.ts.as_secs_f64_micros() / w).floor() as i64;
        let key = (r.orig_h, r.resp_h, r.resp_p, slot);
        if self.pairs.len() >= self.cfg.max_pairs && !self.pairs.contains_key(&key) {
            self.untracked += 1;
            return;
        }
        let post = upload_method(r).is_some();
        let e = self.pairs.entry(key).or_default();
        e.out += r.orig_bytes;
        e.back += r.resp_bytes;
        e.flows += 1;
        e.posts += u64::from(post);
        let PairTally {
            out: o,
            back: i,
            flows: n,
            posts,
            alerted: done,
        } = *e;
        let ratio = ratio(o, i);
        if done || n < 2 || o < self.cfg.pair_min_bytes || ratio < self.cfg.min_pcr {
            return;
        }
        e.alerted = true;
        let severity = if posts * 2 > n {
            Severity::Medium
        } else {
            Severity::Low
        };
        out.push(
            AlertBuilder::new(
                "upload_volume",
                r.last_ts,
                severity,
                crate::excess_score(o as f64, self.cfg.pair_min_bytes as f64),
                format!(
                    "uploads out of proportion over {n} connections in {:.0} s: {} sent {o} bytes to {}:{} and got {i} back (producer/consumer ratio {ratio:.2}; {posts} HTTP POST/PUT)",
                    w, r.orig_h, r.resp_h, r.resp_p
                ),
            )
            .hosts(Some(r.orig_h), Some(r.resp_h))
            .span(
                tunnelwatch_model::Timestamp::from_secs_f64(slot as f64 * w),
                r.last_ts,
            )
            .uids(vec![r.uid.clone()], Some(r.community_id.clone()))
            .evidence("scope", "pair")
            .evidence("flows", n)
            .evidence("orig_bytes", o)
            .evidence("resp_bytes", i)
            .evidence("pcr", crate::round3(ratio))
            .evidence("posts", posts)
            .build(),
        );
    }
}

/// The producer/consumer ratio of a flow: 1 all sent by the originator, −1 all received.
pub fn pcr(r: &FlowRecord) -> f64 {
    ratio(r.orig_bytes, r.resp_bytes)
}

/// `(out − in) / (out + in)`, 0 when nothing moved.
fn ratio(out: u64, back: u64) -> f64 {
    let (o, i) = (out as f64, back as f64);
    if o + i == 0.0 {
        0.0
    } else {
        (o - i) / (o + i)
    }
}

/// The flow's HTTP method when it is an upload one (POST or PUT).
fn upload_method(r: &FlowRecord) -> Option<&str> {
    r.app
        .as_ref()
        .and_then(|a| a.http.as_ref()?.method.as_deref())
        .filter(|m| matches!(*m, "POST" | "PUT"))
}

impl Detector for Upload {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let ratio = pcr(r);
        if self.on
            && r.orig_bytes >= self.cfg.min_bytes
            && ratio >= self.cfg.min_pcr
            && self.once.first(r, "upload_volume")
        {
            let method = upload_method(r);
            let severity = if method.is_some() {
                Severity::Medium
            } else {
                Severity::Low
            };
            out.push(
                AlertBuilder::new(
                    "upload_volume",
                    r.last_ts,
                    severity,
                    crate::excess_score(r.orig_bytes as f64, self.cfg.min_bytes as f64),
                    format!(
                        "upload out of proportion: {} sent {} bytes to {}:{} and got {} back (producer/consumer ratio {:.2}){}",
                        r.orig_h,
                        r.orig_bytes,
                        r.resp_h,
                        r.resp_p,
                        r.resp_bytes,
                        ratio,
                        method.map(|m| format!(", HTTP {m}")).unwrap_or_default()
                    ),
                )
                .flow(r)
                .evidence("orig_bytes", r.orig_bytes)
                .evidence("resp_bytes", r.resp_bytes)
                .evidence("pcr", crate::round3(ratio))
                .evidence("min_bytes", self.cfg.min_bytes)
                .evidence("min_pcr", self.cfg.min_pcr)
                .build(),
            );
        }
        if self.on && r.cause != Cause::Status {
            self.pair(r, out);
        }
        self.once.done(r);
    }

    fn advance(&mut self, now: tunnelwatch_model::Timestamp, _out: &mut Vec<Alert>) {
        // Windows that ended more than a window ago are done.
        let w = self.cfg.pair_window.max(1.0);
        let current = (now.as_secs_f64_micros() / w).floor() as i64;
        if current != self.slot {
            self.slot = current;
            self.pairs.retain(|k, _| k.3 >= current - 1);
        }
    }

    fn untracked(&self) -> u64 {
        self.once.untracked() + self.untracked
    }
}
