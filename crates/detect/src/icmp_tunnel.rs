//! ICMP tunnels (issue 6): echo flows whose payloads are not ping's. An echo reply
//! mirrors its request, and ping sends one size over and over; a tunnel (ptunnel,
//! icmpsh, hans) sends the client's data in requests and the server's in replies, so
//! request and reply sizes differ, sizes vary, and they are often large; and what it
//! carries is data, often encrypted or compressed — high in entropy, where ping's
//! payloads are patterns. The rule reads the flow's per-direction payload sizes and the
//! mean entropy of its first large echo payloads (`icmp.payload_entropy`), and alerts
//! on the asymmetry plus varying or large sizes (a path-MTU probe varies and is large,
//! but its replies mirror it), or on random payloads alone (no ping tool sends them).
//! Interim records are read; each flow alerts once.

use tunnelwatch_model::{Alert, FlowRecord, Severity, Stats};

use crate::config::{Config, IcmpTunnelConfig};
use crate::once::OncePerFlow;
use crate::{AlertBuilder, Detector};

/// The detector.
pub struct IcmpTunnel {
    cfg: IcmpTunnelConfig,
    on: bool,
    once: OncePerFlow,
}

impl IcmpTunnel {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        IcmpTunnel {
            cfg: config.icmp_tunnel.clone(),
            on: config.enabled("icmp_tunnel"),
            once: OncePerFlow::default(),
        }
    }
}

impl Detector for IcmpTunnel {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let echo = r.icmp.as_ref().is_some_and(|i| !i.echo_ids.is_empty());
        if !self.on || !echo || r.orig_pkts + r.resp_pkts < self.cfg.min_packets {
            return;
        }
        let (o, p) = (&r.dynamics.orig, &r.dynamics.resp);
        let (Some(os), Some(ps)) = (o.size, p.size) else {
            self.once.done(r);
            return;
        };
        let mean_gap = (os.mean - ps.mean).abs() / os.mean.max(ps.mean).max(1.0);
        let asymmetric = mean_gap >= self.cfg.asymmetry;
        let varying = os.stddev.max(ps.stddev) >= self.cfg.size_stddev;
        let large = os.max.max(ps.max) >= self.cfg.large;
        let entropy = r.icmp.as_ref().and_then(|i| i.payload_entropy);
        let random = entropy.is_some_and(|e| e >= self.cfg.entropy);
        let signs = [asymmetric, varying, large, random]
            .iter()
            .filter(|s| **s)
            .count();
        if ((asymmetric && (varying || large)) || random) && self.once.first(r, "icmp_tunnel") {
            let severity = if signs >= 3 {
                Severity::High
            } else {
                Severity::Medium
            };
            let sz = |s: &Stats| format!("mean {:.0}, {:.0}–{:.0} bytes", s.mean, s.min, s.max);
            let r3 = crate::round3;
            out.push(
                AlertBuilder::new(
                    "icmp_tunnel",
                    r.last_ts,
                    severity,
                    r3(mean_gap.min(1.0)),
                    format!(
                        "ICMP tunnel? echo requests from {} ({}, {} packets) and replies ({}, {} packets){}{}{}{}",
                        r.orig_h,
                        sz(&os),
                        r.orig_pkts,
                        sz(&ps),
                        r.resp_pkts,
                        if asymmetric { " do not mirror each other" } else { "" },
                        if varying { "; sizes vary" } else { "" },
                        if large { "; large payloads" } else { "" },
                        entropy
                            .filter(|_| random)
                            .map(|e| format!("; payloads look random ({e:.2} bits per byte)"))
                            .unwrap_or_default()
                    ),
                )
                .flow(r)
                .evidence("request_mean", r3(os.mean))
                .evidence("reply_mean", r3(ps.mean))
                .evidence("mean_gap", r3(mean_gap))
                .evidence("size_stddev", r3(os.stddev.max(ps.stddev)))
                .evidence("max_payload", os.max.max(ps.max))
                .evidence("request_bytes", o.payload_bytes)
                .evidence("reply_bytes", p.payload_bytes)
                .evidence("payload_entropy", entropy)
                .evidence(
                    "thresholds",
                    serde_json::json!({
                        "asymmetry": self.cfg.asymmetry,
                        "size_stddev": self.cfg.size_stddev,
                        "large": self.cfg.large,
                        "entropy": self.cfg.entropy,
                        "min_packets": self.cfg.min_packets,
                    }),
                )
                .build(),
            );
        }
        self.once.done(r);
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}
