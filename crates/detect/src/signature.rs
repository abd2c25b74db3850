//! Content signatures (issue 6, part 2): the flow table matches the configured rules
//! against the first bytes of each direction and records the hits on the flow record
//! (`signatures`); this detector raises one alert per hit, with the category, severity
//! and message of the rule that matched (`crates/detect/signatures.toml` ships rules
//! for SSH and telnet where they do not belong, shells driven over the network, Windows
//! command-shell banners and tunnelling tools' fixed bytes). Interim records are read,
//! so a long session alerts while it runs; each rule alerts once per flow.

use std::collections::HashMap;

use tunnelwatch_model::{Alert, FlowRecord, SignatureRule};

use crate::config::Config;
use crate::{severity_score, AlertBuilder, Detector};

/// The detector.
pub struct Signature {
    rules: HashMap<String, SignatureRule>,
    on: bool,
    /// Rules already raised per live flow (dropped with the flow's final record).
    raised: HashMap<String, Vec<String>>,
}

impl Signature {
    /// The detector with `config`'s rules.
    pub fn new(config: &Config) -> Self {
        Signature {
            rules: config
                .signatures
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            on: config.enabled("signature"),
            raised: HashMap::new(),
        }
    }
}

impl Detector for Signature {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if !self.on || r.signatures.is_empty() {
            return;
        }
        let done = self.raised.entry(r.uid.clone()).or_default();
        for hit in &r.signatures {
            if done.contains(&hit.name) {
                continue;
            }
            let Some(rule) = self.rules.get(&hit.name) else {
                continue;
            };
            done.push(hit.name.clone());
            let side = if hit.dir == "orig" {
                "client"
            } else {
                "server"
            };
            let mut a = AlertBuilder::new(
                "signature",
                r.last_ts,
                rule.severity,
                severity_score(rule.severity),
                format!(
                    "{} ({}: the {side} sent it at byte {} to {}:{})",
                    rule.message, rule.name, hit.offset, r.resp_h, r.resp_p
                ),
            )
            .flow(r)
            .evidence("signature", hit.name.clone())
            .evidence("dir", hit.dir.clone())
            .evidence("offset", hit.offset)
            .build();
            a.category = rule.category;
            out.push(a);
        }
        if r.cause != tunnelwatch_model::Cause::Status {
            self.raised.remove(&r.uid);
        }
    }
}
