//! tcpstatflow's thresholds (seed 000): a connection that lasts longer, carries more
//! bytes or more packets than configured (`long_duration`, `many_bytes`,
//! `many_packets`). Interim records are read too, so a three-hour tunnel alerts at its
//! first interim record past the limit, during the tunnel; each rule alerts once per
//! flow (`uid`), and the memory of which flows alerted is dropped with their final
//! record.

use tunnelwatch_model::{Alert, Cause, FlowRecord};

use crate::config::{Config, ThresholdsConfig};
use crate::once::OncePerFlow;
use crate::{AlertBuilder, Detector};

/// The detector.
pub struct Thresholds {
    cfg: ThresholdsConfig,
    on: [bool; 3],
    once: OncePerFlow,
}

impl Thresholds {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Thresholds {
            cfg: config.thresholds.clone(),
            on: [
                config.enabled("long_duration"),
                config.enabled("many_bytes"),
                config.enabled("many_packets"),
            ],
            once: OncePerFlow::default(),
        }
    }
}

impl Detector for Thresholds {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if !self.cfg.protocols.is_empty() && !self.cfg.protocols.contains(&r.proto) {
            return;
        }
        let interim = r.cause == Cause::Status;
        let bytes = r.orig_bytes + r.resp_bytes;
        let pkts = r.orig_pkts + r.resp_pkts;
        let checks = [
            (
                "long_duration",
                r.duration,
                self.cfg.duration,
                "lasted",
                "s",
            ),
            (
                "many_bytes",
                bytes as f64,
                self.cfg.bytes as f64,
                "carried",
                "bytes",
            ),
            (
                "many_packets",
                pkts as f64,
                self.cfg.packets as f64,
                "carried",
                "packets",
            ),
        ];
        for (i, (rule, value, limit, verb, unit)) in checks.into_iter().enumerate() {
            if !self.on[i] || limit <= 0.0 || value <= limit {
                continue;
            }
            if !self.once.first(r, rule) {
                continue;
            }
            out.push(
                AlertBuilder::new(
                    rule,
                    r.last_ts,
                    crate::excess_severity(value, limit),
                    crate::excess_score(value, limit),
                    format!(
                        "potential tunnel: {}:{} -> {}:{} {verb} {} {unit} (threshold {}){}; packets rx={} tx={}, bytes rx={} tx={}, seconds={:.0}",
                        r.orig_h,
                        r.orig_p,
                        r.resp_h,
                        r.resp_p,
                        trim(value),
                        trim(limit),
                        if interim { ", still open" } else { "" },
                        r.resp_pkts,
                        r.orig_pkts,
                        r.resp_bytes,
                        r.orig_bytes,
                        r.duration
                    ),
                )
                .flow(r)
                .evidence("value", value)
                .evidence("threshold", limit)
                .evidence("interim", interim)
                .build(),
            );
        }
        self.once.done(r);
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}
