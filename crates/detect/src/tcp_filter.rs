//! The TCP attack & anomaly filter of seed 004 (an NFR filter by Erwan Lemonnier, 2001),
//! on flow records.
//!
//! What it finds, each a named rule: header oddities (`reserved_bits`,
//! `urg_without_pointer`, `pointer_without_urg`, `bad_tcp_option`), known DoS packets
//! (`land`, `winnuke`), scans recognised from a connection's first packets
//! (`xmas_scan`, `fin_scan`, `null_scan`, `ack_scan`, `half_open_closed`,
//! `half_open_open`, `synack_unanswered`, `syn_no_answer`, `connect_scan`), idle
//! connections (`unused_connection`), `ack_storm` and `zero_window` exhaustion.
//!
//! The seed's two stages are kept: header oddities and connection patterns are queued
//! per (source, destination, rule) and summarised once per period (see
//! [`crate::summary`]): more than `unused_dos` unused connections is a DoS, more than
//! `too_many_ports` findings are "too many to list", and a port hit more than
//! `retry_hits` times is a client retrying a closed server, not a scan. Land, winnuke,
//! ACK storms and zero-window runs alert at once, as the seed's `alert_gmf` did.
//!
//! Where the seed is looser than today's traffic allows, the rule is tighter and says
//! why in `docs/specs/detector.md`: ECE/CWR are ECN, not reserved bits; a scan pattern
//! needs `min_ports` distinct ports; an unused connection must carry no payload either
//! way (the seed flagged any connection that idled after its handshake); repeated ACKs
//! must come under a second apart (keep-alives repeat the same ACK too).
//!
//! Only final records are read (every fact here is cumulative); interim records are
//! for the thresholds.

use tunnelwatch_model::{Alert, Cause, FlowRecord, Severity, TcpHeaderFacts, Timestamp};

use crate::config::{Config, TcpFilterConfig};
use crate::summary::{port_list, split_first, Entry, Key, Queue};
use crate::{AlertBuilder, Detector};

const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const RST: u16 = 0x04;
const PSH: u16 = 0x08;
const ACK: u16 = 0x10;
const URG: u16 = 0x20;
/// The six classic flags the seed compares (ECN and reserved bits masked off).
const CLASSIC: u16 = 0x3f;

/// The filter.
pub struct TcpFilter {
    cfg: TcpFilterConfig,
    enabled: Vec<&'static str>,
    max_uids: usize,
    queue: Queue,
}

impl TcpFilter {
    /// The filter with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        let c = &config.tcp_filter;
        TcpFilter {
            cfg: c.clone(),
            enabled: config.enabled_rules(),
            max_uids: config.alerts.max_uids,
            queue: Queue::new(c.summary_period, c.lateness, config.alerts.max_uids),
        }
    }

    fn on(&self, rule: &str) -> bool {
        self.enabled.contains(&rule)
    }

    fn header(&mut self, r: &FlowRecord, h: &TcpHeaderFacts, from_orig: bool) {
        let (src, dst, port) = if from_orig {
            (r.orig_h, r.resp_h, r.resp_p)
        } else {
            (r.resp_h, r.orig_h, r.orig_p)
        };
        for (rule, n) in [
            ("reserved_bits", h.reserved_bits),
            ("urg_without_pointer", h.urg_without_pointer),
            ("pointer_without_urg", h.pointer_without_urg),
            ("bad_tcp_option", h.bad_options),
        ] {
            if n > 0 && self.on(rule) {
                self.queue.add(rule, r, (src, dst, port), n);
            }
        }
    }

    fn immediate(&self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let Some(t) = &r.tcp else { return };
        if r.orig_h == r.resp_h && r.orig_p == r.resp_p && self.on("land") {
            out.push(
                AlertBuilder::new(
                    "land",
                    r.last_ts,
                    Severity::High,
                    1.0,
                    format!(
                        "TCP DoS: land (latierra): {}:{} sent packets to itself ({} packets)",
                        r.orig_h,
                        r.orig_p,
                        r.orig_pkts + r.resp_pkts
                    ),
                )
                .flow(r)
                .build(),
            );
        }
        for (from_orig, port, flags) in [
            (true, r.resp_p, &r.dynamics.orig.flags),
            (false, r.orig_p, &r.dynamics.resp.flags),
        ] {
            if port == 139 && flags.contains('U') && self.on("winnuke") {
                let (src, dst) = if from_orig {
                    (r.orig_h, r.resp_h)
                } else {
                    (r.resp_h, r.orig_h)
                };
                out.push(
                    AlertBuilder::new(
                        "winnuke",
                        r.last_ts,
                        Severity::Medium,
                        0.8,
                        format!("TCP DoS: possible winnuke: URG data from {src} to {dst}:139"),
                    )
                    .flow(r)
                    .hosts(Some(src), Some(dst))
                    .build(),
                );
            }
        }
        if t.ack_storm_run > self.cfg.max_ack && self.on("ack_storm") {
            out.push(
                AlertBuilder::new(
                    "ack_storm",
                    r.last_ts,
                    Severity::Medium,
                    crate::excess_score(t.ack_storm_run as f64, self.cfg.max_ack as f64),
                    format!(
                        "ACK storm between {} and {} (TCP hijacking?): both sides repeated the same ACK {} times in a row (threshold {})",
                        r.orig_h, r.resp_h, t.ack_storm_run, self.cfg.max_ack
                    ),
                )
                .flow(r)
                .evidence("ack_storm_run", t.ack_storm_run)
                .evidence("max_ack", self.cfg.max_ack)
                .build(),
            );
        }
        for (h, side, host) in [
            (&t.orig_header, "originator", r.orig_h),
            (&t.resp_header, "responder", r.resp_h),
        ] {
            if h.zero_window_run > self.cfg.max_zero_windows && self.on("zero_window") {
                out.push(
                    AlertBuilder::new(
                        "zero_window",
                        r.last_ts,
                        Severity::Low,
                        crate::excess_score(
                            h.zero_window_run as f64,
                            self.cfg.max_zero_windows as f64,
                        ),
                        format!(
                            "TCP buffer exhaustion at the {side} {host}: {} zero-window advertisements in a row (threshold {})",
                            h.zero_window_run, self.cfg.max_zero_windows
                        ),
                    )
                    .flow(r)
                    .evidence("side", side)
                    .evidence("zero_window_run", h.zero_window_run)
                    .evidence("max_zero_windows", self.cfg.max_zero_windows)
                    .build(),
                );
            }
        }
    }

    fn summarise(&self, key: Key, e: Entry, out: &mut Vec<Alert>) {
        let rule = key.rule;
        let distinct = e.ports.len() as u64;
        let ts = self
            .queue
            .period_end(&key)
            .max(e.last_ts.unwrap_or_default());
        let mut msg = message(rule).to_string();
        let (severity, kind) = match rule {
            "reserved_bits" | "urg_without_pointer" | "pointer_without_urg" | "bad_tcp_option" => {
                let sev = if rule == "reserved_bits" {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                (sev, "packets")
            }
            "unused_connection" if e.count > self.cfg.unused_dos => {
                msg = format!("{msg} (DoS?), more than {}", self.cfg.unused_dos);
                (
                    crate::excess_severity(e.count as f64, self.cfg.unused_dos as f64)
                        .max(Severity::Medium),
                    "connections",
                )
            }
            _ => {
                if e.count <= self.cfg.too_many_ports {
                    if e.ports.values().any(|n| *n > self.cfg.retry_hits) {
                        return; // a client retrying a closed server, not a scan
                    }
                    if distinct < self.cfg.min_ports.of(rule) {
                        return;
                    }
                }
                let mut sev = if distinct >= 100 {
                    Severity::High
                } else if distinct >= 10 {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                if matches!(rule, "xmas_scan" | "null_scan") {
                    sev = sev.max(Severity::Medium);
                }
                (sev, "connections")
            }
        };
        let ports = if e.count > self.cfg.too_many_ports {
            "too many to list".to_string()
        } else {
            port_list(&e.ports)
        };
        let n = e.count as f64;
        let (uids, cid) = split_first(&e.uids);
        out.push(
            AlertBuilder::new(
                rule,
                ts,
                severity,
                crate::round3(n / (n + 10.0)),
                format!(
                    "{} {kind}: {msg}, from {} to {}, ports: {ports}",
                    e.count, key.src, key.dst
                ),
            )
            .hosts(Some(key.src), Some(key.dst))
            .span(
                e.first_ts.unwrap_or_default(),
                e.last_ts.unwrap_or_default(),
            )
            .uids(uids, cid)
            .max_uids(self.max_uids)
            .evidence("count", e.count)
            .evidence("flows", e.flows)
            .evidence("distinct_ports", distinct)
            .evidence(
                "ports",
                if e.count > self.cfg.too_many_ports {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::Object(
                        e.ports
                            .iter()
                            .map(|(p, c)| (p.to_string(), (*c).into()))
                            .collect(),
                    )
                },
            )
            .evidence("min_ports", self.cfg.min_ports.of(rule))
            .evidence("retry_hits", self.cfg.retry_hits)
            .evidence("summary_period", self.cfg.summary_period)
            .build(),
        );
    }
}

/// The seed's message for each queued rule.
fn message(rule: &str) -> &'static str {
    match rule {
        "reserved_bits" => "TCP reserved bits set (hping, QUESO, nmap OS detection?)",
        "urg_without_pointer" => "TCP URG flag set but urgent pointer zero",
        "pointer_without_urg" => "TCP urgent pointer set while URG flag not set",
        "bad_tcp_option" => "unknown, truncated or malformed TCP options",
        "xmas_scan" => "XMAS tree scan (FIN-URG-PSH, RST)",
        "fin_scan" => "stealth FIN scan (FIN, RST)",
        "null_scan" => "NULL scan (no flags, RST)",
        "ack_scan" => "ACK scan (ACK, RST)",
        "half_open_closed" => "TCP half-open scan: closed port (SYN, RST)",
        "half_open_open" => "TCP half-open scan: open port (SYN, SYN-ACK, RST or FIN)",
        "synack_unanswered" => "SYN, SYN-ACK and no answer (SYN flood or scan?)",
        "syn_no_answer" => "SYN without answer",
        "connect_scan" => "TCP connect scan: open port (SYN, SYN-ACK, ACK, RST, no data)",
        "unused_connection" => "unused TCP connections (connect and idle)",
        _ => "TCP finding",
    }
}

/// Flags from the letters of a flow record (`CEUAPRSF`, `N`, `r`).
pub fn flag_bits(letters: &[u8]) -> u16 {
    letters.iter().fold(0, |acc, c| {
        acc | match c {
            b'F' => FIN,
            b'S' => SYN,
            b'R' => RST,
            b'P' => PSH,
            b'A' => ACK,
            b'U' => URG,
            b'E' => 0x40,
            b'C' => 0x80,
            b'N' => 0x100,
            b'r' => 0xE00,
            _ => 0,
        }
    })
}

/// Seed 004's `check_session` on a finished connection: the scan or idle pattern its
/// first packets show, if any.
pub fn pattern(r: &FlowRecord, cfg: &TcpFilterConfig) -> Option<&'static str> {
    let t = r.tcp.as_ref()?;
    let pk: Vec<(bool, u16)> = t
        .first_packets
        .iter()
        .map(|p| match p.as_bytes().split_first() {
            Some((dir, flags)) => (*dir == b'>', flag_bits(flags)),
            None => (false, 0),
        })
        .collect();
    let &(true, p1) = pk.first()? else {
        return None;
    };
    let p1 = p1 & CLASSIC;
    let first_resp = pk.iter().position(|(o, _)| !o);
    let Some(ri) = first_resp else {
        // No answer at all.
        let only_syns = pk.iter().all(|(_, f)| f & CLASSIC == SYN);
        return (only_syns && r.resp_pkts == 0).then_some("syn_no_answer");
    };
    let r1 = pk[ri].1 & CLASSIC;
    let resp_only_rst = r.resp_bytes == 0 && r1 & RST != 0;
    if resp_only_rst && r.orig_pkts <= 2 {
        return if p1 == FIN | URG | PSH {
            Some("xmas_scan")
        } else if p1 & SYN != 0 && p1 & ACK == 0 {
            Some("half_open_closed")
        } else if p1 & FIN != 0 && r.orig_bytes == 0 {
            Some("fin_scan")
        } else if p1 == 0 {
            Some("null_scan")
        } else if p1 == ACK && r.orig_bytes == 0 {
            Some("ack_scan")
        } else {
            None
        };
    }
    if p1 & (SYN | ACK) != SYN || r1 & (SYN | ACK) != SYN | ACK {
        return None;
    }
    // SYN answered by SYN/ACK: what did the originator do next?
    let next = pk[ri + 1..]
        .iter()
        .find(|(o, _)| *o)
        .map(|(_, f)| f & CLASSIC);
    let no_data = r.orig_bytes == 0 && r.resp_bytes == 0;
    match next {
        Some(f) if f & RST != 0 => Some("half_open_open"),
        Some(f) if f & FIN != 0 && f & ACK == 0 => Some("half_open_open"),
        // Every packet the originator sent came before the SYN/ACK.
        None if ri as u64 >= r.orig_pkts => Some("synack_unanswered"),
        Some(f) if f & ACK != 0 && no_data => {
            let reset = t
                .first_packets
                .get(3)
                .is_some_and(|p| p.starts_with('>') && p.contains('R'));
            if reset && r.duration < cfg.unused_idle {
                Some("connect_scan")
            } else if r.duration >= cfg.unused_idle || r.cause == Cause::Timeout {
                Some("unused_connection")
            } else {
                None
            }
        }
        _ => None,
    }
}

impl Detector for TcpFilter {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if r.ip_proto != 6 || r.cause == Cause::Status {
            return;
        }
        if self.cfg.unchecked_ports.contains(&r.orig_p)
            || self.cfg.unchecked_ports.contains(&r.resp_p)
        {
            return;
        }
        let Some(t) = &r.tcp else { return };
        let (oh, rh) = (t.orig_header, t.resp_header);
        self.header(r, &oh, true);
        self.header(r, &rh, false);
        self.immediate(r, out);
        if let Some(rule) = pattern(r, &self.cfg).filter(|p| self.on(p)) {
            self.queue.add(rule, r, (r.orig_h, r.resp_h, r.resp_p), 1);
        }
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        for (k, e) in self.queue.due(now) {
            self.summarise(k, e, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Alert>) {
        for (k, e) in self.queue.drain() {
            self.summarise(k, e, out);
        }
    }

    fn untracked(&self) -> u64 {
        self.queue.untracked()
    }
}
