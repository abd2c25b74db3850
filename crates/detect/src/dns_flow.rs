//! DNS tunnels from flow metrics alone (seed 002: "anomaly = average + k × standard
//! deviation", on packets per flow and on time per flow, against the DNS profile, and
//! an alert only when both exceed). It reads no payload, so it works on NetFlow and on
//! DNS that is encrypted: DNS over TLS (port 853) and DNS over HTTPS to the configured
//! public resolvers (port 443).
//!
//! The profile is learnt from the final records of the DNS flows seen (Welford's
//! running mean and variance of packets and of duration), one for plain DNS and one for
//! encrypted DNS, each blended with a documented prior worth `prior_flows` flows, so a
//! capture holding only a tunnel is still judged against what DNS usually is: a query
//! and its answer, in well under a second. Every final record teaches the profile (a
//! profile that skipped what it flagged could never learn a network whose DNS is busy;
//! a tunnel is one flow among many, so it moves the mean little).
//! Plain DNS alerts medium; encrypted DNS low (a busy DoH or DoT client cannot be told
//! from a tunnel without the payload — what is sure is that DNS monitoring does not see
//! it). Interim records are judged too, so a long tunnel alerts while it runs; each
//! flow alerts once.

use std::net::IpAddr;

use tunnelwatch_model::{Alert, Cause, FlowRecord, Severity};

use crate::config::{Config, DnsFlowConfig};
use crate::once::OncePerFlow;
use crate::{round3, severity_score, AlertBuilder, Detector};

/// Running mean and variance.
#[derive(Clone, Copy, Debug, Default)]
struct Welford {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    /// Mean and standard deviation blended with a prior of weight `w`.
    fn blended(&self, w: f64, mean: f64, sd: f64) -> (f64, f64) {
        let n = self.n + w;
        if n <= 0.0 {
            return (mean, sd);
        }
        let m = (w * mean + self.n * self.mean) / n;
        // Pooled second moment about the blended mean.
        let var =
            (w * (sd * sd + (mean - m).powi(2)) + self.m2 + self.n * (self.mean - m).powi(2)) / n;
        (m, var.max(0.0).sqrt())
    }
}

/// The detector.
pub struct DnsFlow {
    cfg: DnsFlowConfig,
    on: bool,
    /// Profiles of packets and seconds per flow: plain DNS, then encrypted DNS.
    pkts: [Welford; 2],
    secs: [Welford; 2],
    once: OncePerFlow,
}

impl DnsFlow {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        DnsFlow {
            cfg: config.dns_flow.clone(),
            on: config.enabled("dns_tunnel_flow"),
            pkts: [Welford::default(); 2],
            secs: [Welford::default(); 2],
            once: OncePerFlow::default(),
        }
    }

    /// How the flow carries DNS, if it does.
    fn carrier(&self, r: &FlowRecord) -> Option<&'static str> {
        let tcp_or_udp = r.ip_proto == 6 || r.ip_proto == 17;
        if tcp_or_udp && r.resp_p == 53 {
            return Some("DNS");
        }
        if r.ip_proto == 6 && r.resp_p == 853 {
            return Some("DNS over TLS");
        }
        if r.resp_p == 443 && self.cfg.doh_servers.contains(&r.resp_h) {
            return Some("DNS over HTTPS");
        }
        None
    }
}

impl Detector for DnsFlow {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let Some(carrier) = self.carrier(r) else {
            return;
        };
        // Encrypted DNS: its own profile, and low — a busy DoH or DoT client cannot be
        // told from a tunnel without the payload; what is sure is that DNS monitoring
        // does not see it.
        let enc = usize::from(carrier != "DNS");
        let pkts = (r.orig_pkts + r.resp_pkts) as f64;
        let secs = r.duration;
        let k = self.cfg.k;
        let w = self.cfg.prior_flows;
        let (pm, ps) = self.pkts[enc].blended(w, self.cfg.prior_packets, self.cfg.prior_packets_sd);
        let (tm, ts) = self.secs[enc].blended(w, self.cfg.prior_seconds, self.cfg.prior_seconds_sd);
        let (p_lim, t_lim) = (pm + k * ps, tm + k * ts);
        let anomalous = pkts > p_lim && secs > t_lim && pkts >= self.cfg.min_packets as f64;
        let severity = if enc == 1 {
            Severity::Low
        } else {
            Severity::Medium
        };
        if anomalous && self.on && self.once.first(r, "dns_tunnel_flow") {
            out.push(
                AlertBuilder::new(
                    "dns_tunnel_flow",
                    r.last_ts,
                    severity,
                    severity_score(severity),
                    format!(
                        "{carrier} flow {} -> {}:{} of {} packets over {:.1} s: both above the DNS profile (packets {:.1} + {k}·{:.1}, seconds {:.2} + {k}·{:.2})",
                        r.orig_h, r.resp_h, r.resp_p, pkts, secs, pm, ps, tm, ts
                    ),
                )
                .flow(r)
                .evidence("carrier", carrier)
                .evidence("packets", pkts)
                .evidence("seconds", round3(secs))
                .evidence("packets_limit", round3(p_lim))
                .evidence("seconds_limit", round3(t_lim))
                .evidence("profile_flows", self.pkts[enc].n)
                .build(),
            );
        }
        if r.cause != Cause::Status {
            self.pkts[enc].push(pkts);
            self.secs[enc].push(secs);
            self.once.done(r);
        }
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}

/// Public resolvers that answer DNS over HTTPS on port 443 (Cloudflare, Google, Quad9,
/// OpenDNS, AdGuard; IPv4 and IPv6).
pub fn default_doh_servers() -> Vec<IpAddr> {
    [
        "1.1.1.1",
        "1.0.0.1",
        "8.8.8.8",
        "8.8.4.4",
        "9.9.9.9",
        "149.112.112.112",
        "208.67.222.222",
        "208.67.220.220",
        "94.140.14.14",
        "94.140.15.15",
        "2606:4700:4700::1111",
        "2606:4700:4700::1001",
        "2001:4860:4860::8888",
        "2001:4860:4860::8844",
        "2620:fe::fe",
        "2620:fe::9",
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blended_profile_moves_from_the_prior_to_the_data() {
        let w = Welford::default();
        assert_eq!(w.blended(30.0, 2.0, 1.0), (2.0, 1.0));
        let mut w = Welford::default();
        for _ in 0..3000 {
            w.push(4.0);
        }
        let (m, s) = w.blended(30.0, 2.0, 1.0);
        assert!((m - 3.98).abs() < 0.01 && s < 0.3, "{m} {s}");
    }
}
