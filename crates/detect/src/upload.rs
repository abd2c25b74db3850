//! Uploads out of proportion (seed 000, trace 1: "high volumes in POST/PUT"): a flow
//! whose client sent far more than it received — producer/consumer ratio
//! `(out − in) / (out + in)` near 1 — and at least `min_bytes`. Low on its own (backups,
//! `git push`, `scp` up, and in Zeek's traces long telnet/rlogin lines, are everyday);
//! medium when it is an HTTP POST or PUT, the seed's tunnel trace. Interim records are read, so a long
//! exfiltration alerts while it runs; each flow alerts once.

use tunnelwatch_model::{Alert, FlowRecord, Severity};

use crate::config::{Config, UploadConfig};
use crate::once::OncePerFlow;
use crate::{AlertBuilder, Detector};

/// The detector.
pub struct Upload {
    cfg: UploadConfig,
    on: bool,
    once: OncePerFlow,
}

impl Upload {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Upload {
            cfg: config.upload.clone(),
            on: config.enabled("upload_volume"),
            once: OncePerFlow::default(),
        }
    }
}

/// The producer/consumer ratio of a flow: 1 all sent by the originator, −1 all received.
pub fn pcr(r: &FlowRecord) -> f64 {
    let (o, i) = (r.orig_bytes as f64, r.resp_bytes as f64);
    if o + i == 0.0 {
        0.0
    } else {
        (o - i) / (o + i)
    }
}

impl Detector for Upload {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let ratio = pcr(r);
        if self.on
            && r.orig_bytes >= self.cfg.min_bytes
            && ratio >= self.cfg.min_pcr
            && self.once.first(r, "upload_volume")
        {
            let method = r
                .app
                .as_ref()
                .and_then(|a| a.http.as_ref()?.method.as_deref())
                .filter(|m| matches!(*m, "POST" | "PUT"));
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
                .evidence("pcr", (ratio * 1000.0).round() / 1000.0)
                .evidence("min_bytes", self.cfg.min_bytes)
                .evidence("min_pcr", self.cfg.min_pcr)
                .build(),
            );
        }
        self.once.done(r);
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}
