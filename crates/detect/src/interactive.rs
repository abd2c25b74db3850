//! Interactive sessions (seed 001: Argus' keystroke detection and "anytime the
//! destination originates keystrokes, you probably have a really serious problem";
//! seed 000, trace 2: "small but frequent" exchanges, a telnet-like channel), from the
//! keystroke and burst counts the flow table puts on each record:
//!
//! - `keystrokes` (low): a flow where one side typed at least `min_keystrokes` echoed
//!   keys, at least `key_share` of that side's bursts. A fact for hunting — most
//!   interactive SSH is somebody at work.
//! - `reverse_shell` (high): on TCP, the typing comes from the responder (in a reverse
//!   shell the operator sits at the listener), or the responder spoke first on a client-first
//!   port (HTTP, TLS, a proxy tunnel) and then sent mostly small bursts — command lines
//!   — to a client that answered with more bytes than it got: a line-mode shell.
//! - `interactive_in_other_protocol` (high): keystrokes, or a one-way typed TCP stream
//!   (`min_typed` small bursts at a typing pace, at least `typed_share` of that side's
//!   bursts, the other side nearly silent: an HTTP tunnel's upload or download request),
//!   inside a flow that is HTTP, TLS, DNS or ICMP, or on one of their ports (TCP's:
//!   UDP 443 is QUIC).
//!
//! Interim records are read, so a long session alerts while it runs; each rule alerts
//! once per flow.

use tunnelwatch_model::{Alert, DirectionStats, FlowRecord, Severity};

use crate::config::{Config, HttpConfig, InteractiveConfig};
use crate::once::OncePerFlow;
use crate::{AlertBuilder, Detector};

/// The detector.
pub struct Interactive {
    cfg: InteractiveConfig,
    ports: HttpConfig,
    enabled: Vec<&'static str>,
    once: OncePerFlow,
}

impl Interactive {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Interactive {
            cfg: config.interactive.clone(),
            ports: config.http.clone(),
            enabled: config.enabled_rules(),
            once: OncePerFlow::default(),
        }
    }

    fn wants(&mut self, r: &FlowRecord, rule: &'static str) -> bool {
        self.enabled.contains(&rule) && self.once.first(r, rule)
    }

    /// The protocol the flow claims, when typing has no business in it.
    fn claimed(&self, r: &FlowRecord) -> Option<String> {
        if r.proto == "icmp" {
            return Some("ICMP".into());
        }
        let service = r.service.as_deref().unwrap_or("");
        let names: Vec<&str> = service
            .split(',')
            .filter(|s| matches!(*s, "http" | "ssl" | "dns"))
            .collect();
        if !names.is_empty() {
            return Some(names.join(","));
        }
        let p = r.resp_p;
        let web = self.ports.http_ports.contains(&p) || self.ports.tls_ports.contains(&p);
        // UDP 443 is QUIC, whose small packets are no claim to be TLS.
        if (r.ip_proto == 6 && web) || p == 53 {
            return Some(format!("port {p}"));
        }
        None
    }
}

/// Whether the responder spoke first: on the connection itself, or through a proxy
/// tunnel after the proxy's answer.
fn responder_first(r: &FlowRecord) -> Option<&'static str> {
    let after = r
        .app
        .as_ref()
        .and_then(|a| a.http.as_ref())
        .and_then(|h| h.after_connect.as_deref());
    if after == Some("server_first") {
        return Some("the far end of the CONNECT tunnel spoke first");
    }
    let first = r.tcp.as_ref().and_then(|t| t.first_data.as_deref());
    (first == Some("resp")).then_some("the responder spoke first")
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

impl Detector for Interactive {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let (o, q) = (&r.dynamics.orig, &r.dynamics.resp);
        let dst = crate::HostPort(r.resp_h, r.resp_p);
        let tcp = r.ip_proto == 6;
        // A typist: enough keys, and most of what that side sent.
        let types = |d: &DirectionStats| {
            let bursts = d.bursts.as_ref().map_or(0, |b| b.count);
            d.keystrokes >= self.cfg.min_keystrokes.max(1)
                && d.keystrokes as f64 >= self.cfg.key_share * bursts as f64
        };
        let (typist, keys) = match (types(o), types(q)) {
            (_, true) if q.keystrokes > o.keystrokes => ("responder", q.keystrokes),
            (true, _) => ("originator", o.keystrokes),
            _ => ("", 0),
        };
        let evidence = |b: AlertBuilder| {
            let mut b = b
                .evidence("orig_keystrokes", o.keystrokes)
                .evidence("resp_keystrokes", q.keystrokes);
            for (k, d) in [("orig_bursts", o), ("resp_bursts", q)] {
                if let Some(x) = &d.bursts {
                    b = b.evidence(k, serde_json::to_value(x).unwrap_or_default());
                }
            }
            b
        };
        if keys > 0 && self.wants(r, "keystrokes") {
            out.push(
                evidence(AlertBuilder::new(
                    "keystrokes",
                    r.last_ts,
                    Severity::Low,
                    0.3,
                    format!(
                        "interactive session to {dst}: {keys} keys typed by the {typist}, each echoed"
                    ),
                ))
                .flow(r)
                .build(),
            );
        }
        // Reverse shells.
        let line_mode = responder_first(r).filter(|_| {
            let Some(b) = &q.bursts else { return false };
            let client_first_port = self.ports.http_ports.contains(&r.resp_p)
                || self.ports.tls_ports.contains(&r.resp_p);
            let proxied = r
                .app
                .as_ref()
                .and_then(|a| a.http.as_ref())
                .is_some_and(|h| h.after_connect.as_deref() == Some("server_first"));
            (client_first_port || proxied)
                && r.app
                    .as_ref()
                    .is_none_or(|a| a.ssh.is_none() && a.tls.is_none())
                && b.count >= self.cfg.min_commands
                && b.small as f64 >= self.cfg.command_share * b.count as f64
                && r.orig_bytes >= r.resp_bytes
        });
        // UDP has no client and server to speak of (its originator is the first
        // sender), so typing "from the responder" means something on TCP only.
        let typed_back = tcp && typist == "responder";
        if (typed_back || line_mode.is_some()) && self.wants(r, "reverse_shell") {
            let message = if typed_back {
                format!(
                    "keys typed from the responder {dst}: {} against {} from the client — an operator at the listener (reverse shell)",
                    q.keystrokes, o.keystrokes
                )
            } else {
                let b = q.bursts.clone().unwrap_or_default();
                format!(
                    "line-mode shell: {} to {}, then sent {} bursts ({} small, command lines) and got {} bytes back for its {}",
                    line_mode.unwrap_or_default(),
                    r.orig_h,
                    b.count,
                    b.small,
                    r.orig_bytes,
                    r.resp_bytes
                )
            };
            out.push(
                evidence(AlertBuilder::new(
                    "reverse_shell",
                    r.last_ts,
                    Severity::High,
                    0.9,
                    message,
                ))
                .flow(r)
                .evidence("responder_first", line_mode.is_some())
                .build(),
            );
        }
        // Typing where no typing belongs.
        let typed_one_way = [("originator", o, q), ("responder", q, o)]
            .into_iter()
            .filter_map(|(who, d, other)| {
                let b = d.bursts.as_ref()?;
                let back = other.bursts.as_ref().map_or(0, |b| b.count);
                (tcp && b.typed >= self.cfg.min_typed
                    && b.typed as f64 >= self.cfg.typed_share * b.count as f64
                    && back as f64 <= self.cfg.one_way_share * b.count as f64)
                    .then_some((who, b.typed, b.typed as f64 / b.count as f64))
            })
            .max_by_key(|(_, t, _)| *t);
        if keys > 0 || typed_one_way.is_some() {
            if let Some(claim) = self.claimed(r) {
                if self.wants(r, "interactive_in_other_protocol") {
                    let what = if keys > 0 {
                        format!("{keys} echoed keys typed by the {typist}")
                    } else {
                        let (who, n, share) = typed_one_way.unwrap_or_default();
                        format!(
                            "{n} small bursts at a typing pace from the {who} ({} of its bursts)",
                            pct(share)
                        )
                    };
                    out.push(
                        evidence(AlertBuilder::new(
                            "interactive_in_other_protocol",
                            r.last_ts,
                            Severity::High,
                            0.85,
                            format!("interactive typing inside {claim} to {dst}: {what}"),
                        ))
                        .flow(r)
                        .evidence("claimed", claim)
                        .build(),
                    );
                }
            }
        }
        self.once.done(r);
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}
