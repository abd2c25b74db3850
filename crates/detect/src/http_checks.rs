//! HTTP and proxy checks (seed 000, parts 2.1 and 2.5: the traces an unauthorised
//! tunnel or backdoor leaves in an HTTP proxy's traffic), from the application facts
//! the flow table learnt from each flow's first payloads:
//!
//! - `connect_without_tls`: a CONNECT whose tunnel did not start with a TLS ClientHello
//!   (SSH, a shell or anything else through the proxy — the reverse-shell and
//!   SSH-over-CONNECT cases);
//! - `connect_port_policy`: a CONNECT to a port outside policy (default only 443);
//! - `ssh_in_http`: an SSH banner in a flow on an HTTP, TLS or proxy port;
//! - `ssh_non_standard_port`: SSH on any other port than the SSH ports;
//! - `foreign_protocol_on_port`: a flow on an HTTP or TLS port that carried payload
//!   none of HTTP, TLS or SSH recognised (handshake seen, so the start was not missed);
//! - `http_without_host`: an HTTP/1.1 request without `Host`;
//! - `exotic_method`: a method outside RFC 9110 and WebDAV (and the configured extras);
//! - `response_without_request`: an HTTP response in a connection whose start was seen
//!   and where the client sent nothing (or SSH): a server speaking first. (A client
//!   request the parser missed — split request lines, HTTP/0.9 — is not evidence.)
//!
//! Interim records are read too, so a long tunnel alerts while it runs; each rule
//! alerts once per flow.

use tunnelwatch_model::{Alert, FlowRecord, Severity};

use crate::config::{Config, HttpConfig};
use crate::once::OncePerFlow;
use crate::{severity_score, AlertBuilder, Detector};

/// RFC 9110 methods, PATCH (RFC 5789) and WebDAV's (RFC 4918, 3253, 5323).
const STANDARD_METHODS: [&str; 20] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "CHECKOUT",
    "MERGE",
];

/// The detector.
pub struct HttpChecks {
    cfg: HttpConfig,
    enabled: Vec<&'static str>,
    once: OncePerFlow,
}

/// The port of a CONNECT target (`host:port`, `[v6]:port`).
pub fn connect_port(uri: &str) -> Option<u16> {
    uri.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

impl HttpChecks {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        HttpChecks {
            cfg: config.http.clone(),
            enabled: config.enabled_rules(),
            once: OncePerFlow::default(),
        }
    }

    fn raise(
        &mut self,
        r: &FlowRecord,
        rule: &'static str,
        severity: Severity,
        message: String,
        evidence: &[(&str, serde_json::Value)],
        out: &mut Vec<Alert>,
    ) {
        if !self.enabled.contains(&rule) || !self.once.first(r, rule) {
            return;
        }
        let mut b =
            AlertBuilder::new(rule, r.last_ts, severity, severity_score(severity), message).flow(r);
        for (k, v) in evidence {
            b = b.evidence(k, v.clone());
        }
        out.push(b.build());
    }
}

/// The connection's start was seen: the originator's SYN and the responder's SYN/ACK.
fn start_seen(r: &FlowRecord) -> bool {
    r.history.starts_with('S') && r.history.contains('h')
}

impl Detector for HttpChecks {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if r.ip_proto != 6 {
            return;
        }
        let app = r.app.as_ref();
        let http = app.and_then(|a| a.http.as_ref());
        let ssh = app.and_then(|a| a.ssh.as_ref());
        let tls = app.and_then(|a| a.tls.as_ref());
        let dst = crate::HostPort(r.resp_h, r.resp_p);
        let method = http.and_then(|h| h.method.as_deref());
        if let Some(h) = http.filter(|_| method == Some("CONNECT")) {
            let target = h.uri.clone().unwrap_or_default();
            match h.after_connect.as_deref() {
                Some(kind) if kind != "tls" => {
                    let (sev, what) = match kind {
                        "ssh" => (Severity::High, "an SSH session"),
                        "http" => (Severity::Medium, "plain HTTP"),
                        _ => (Severity::High, "an unrecognised protocol"),
                    };
                    self.raise(
                        r,
                        "connect_without_tls",
                        sev,
                        format!(
                            "CONNECT {target} through the proxy {dst} carried {what}, not a TLS handshake{}",
                            ssh.and_then(|s| s.client.as_deref()).map(|b| format!(" ({b})")).unwrap_or_default()
                        ),
                        &[("target", target.clone().into()), ("tunnelled", kind.into())],
                        out,
                    );
                }
                _ => {}
            }
            if let Some(p) = connect_port(&target) {
                if !self.cfg.connect_ports.contains(&p) {
                    self.raise(
                        r,
                        "connect_port_policy",
                        Severity::Medium,
                        format!(
                            "CONNECT to port {p} ({target}) through the proxy {dst}; policy allows {:?}",
                            self.cfg.connect_ports
                        ),
                        &[("target", target.clone().into()), ("port", p.into())],
                        out,
                    );
                }
            }
        } else if let Some(s) = ssh {
            let banner = s
                .client
                .clone()
                .or_else(|| s.server.clone())
                .unwrap_or_default();
            let web =
                self.cfg.http_ports.contains(&r.resp_p) || self.cfg.tls_ports.contains(&r.resp_p);
            if web {
                self.raise(
                    r,
                    "ssh_in_http",
                    Severity::High,
                    format!("SSH ({banner}) on the web port {dst}"),
                    &[("banner", banner.into())],
                    out,
                );
            } else if !self.cfg.ssh_ports.contains(&r.resp_p) {
                self.raise(
                    r,
                    "ssh_non_standard_port",
                    Severity::Medium,
                    format!(
                        "SSH ({banner}) on port {} of {}, not an SSH port",
                        r.resp_p, r.resp_h
                    ),
                    &[("banner", banner.into())],
                    out,
                );
            }
        } else if http.is_none()
            && tls.is_none()
            // Flow exports carry no payload: there, no facts is no evidence.
            && r.export.is_none()
            && start_seen(r)
            && r.orig_bytes > 0
            && (self.cfg.http_ports.contains(&r.resp_p) || self.cfg.tls_ports.contains(&r.resp_p))
        {
            // Low: OpenVPN, messengers (MTProto, WhatsApp, Skype) and SSLv2 do this on
            // 443 every day; it is a fact to hunt with, the seed's policy view.
            self.raise(
                r,
                "foreign_protocol_on_port",
                Severity::Low,
                format!(
                    "{dst} is an HTTP/TLS port but the connection carried neither ({} bytes out, {} back)",
                    r.orig_bytes, r.resp_bytes
                ),
                &[("orig_bytes", r.orig_bytes.into()), ("resp_bytes", r.resp_bytes.into())],
                out,
            );
        }
        if let Some(h) = http {
            if let Some(m) = method {
                if !STANDARD_METHODS.contains(&m) && !self.cfg.methods.iter().any(|x| x == m) {
                    self.raise(
                        r,
                        "exotic_method",
                        Severity::Low,
                        format!("HTTP request with the unknown method {m:?} to {dst}"),
                        &[("method", m.into())],
                        out,
                    );
                }
                if h.version.as_deref() == Some("1.1") && h.host.is_none() {
                    self.raise(
                        r,
                        "http_without_host",
                        Severity::Low,
                        format!("HTTP/1.1 {m} request without a Host header to {dst}"),
                        &[("method", m.into())],
                        out,
                    );
                }
            } else if h.status.is_some() && start_seen(r) && (r.orig_bytes == 0 || ssh.is_some()) {
                self.raise(
                    r,
                    "response_without_request",
                    Severity::Medium,
                    format!(
                        "HTTP response {} from {dst} without an HTTP request ({} bytes sent before)",
                        h.status.unwrap_or_default(),
                        r.orig_bytes
                    ),
                    &[("status", h.status.unwrap_or_default().into())],
                    out,
                );
            }
        }
        self.once.done(r);
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}
