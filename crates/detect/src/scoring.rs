//! Host scoring: the seed's "scenario approach using the Bayes inference" (seed 000,
//! 1.3.3) — every alert on a host is a symptom, and the host's score is the posterior
//! probability P(involved in an incident | symptoms), computed as log-odds. A host
//! starts at the prior log-odds of the base rate (`scoring.base_rate`, 1 in 1000), plus
//! `ln(black_list_factor)` when a black-list entry names it. Each distinct rule that
//! alerted on it adds the log of a likelihood ratio: by the alert's severity (3, 10, 50)
//! unless `scoring.rules` gives the rule its own, times 2 when the alert's destination
//! was contacted by few clients and times 1.5 when the host appeared less than a day
//! before the evidence began. Repeated alerts of one rule are not independent evidence:
//! the strongest counts fully and the k-th is weighted `repeat_decay`^(k−1) (0.5), so a
//! rule can at most double what one alert of it says. The posterior is the logistic
//! function of the sum; hosts are ranked by it, ties by address.
//!
//! What it guarantees: a pure function of the alerts, the configuration and the
//! [`HostFacts`] the caller measured (no clock, no I/O); the result does not depend on
//! the order alerts are given in; no input makes it panic (a non-finite or
//! non-positive ratio built in code, bypassing the configuration's checks, counts as
//! no evidence). What it leaves to others: reading alerts and measuring the facts
//! (the store and the CLI: `tunnelwatch alerts --hosts`), presentation. The model,
//! every default and a worked example are in `docs/specs/scoring.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use tunnelwatch_model::{Alert, Category, Severity, Timestamp};

use crate::config::{Config, ListEntry};
use crate::policy::{self, Decision};

/// The `[scoring]` section: priors, likelihood ratios and modifiers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Prior probability that a host is involved in an incident, 0 < p < 1.
    #[serde(deserialize_with = "base_rate")]
    pub base_rate: f64,
    /// A host is an alarm at or above this posterior probability (the seed's "greater
    /// than a set threshold"), 0 < p < 1.
    #[serde(deserialize_with = "threshold")]
    pub threshold: f64,
    /// Likelihood ratio of one alert, by its severity.
    pub severity: SeverityRatios,
    /// Likelihood ratios of named rules, overriding their severity's.
    #[serde(deserialize_with = "rule_ratios")]
    pub rules: BTreeMap<String, f64>,
    /// The k-th strongest alert of one rule on one host adds its log-ratio times this
    /// to the power k−1: 0 counts only the strongest, 1 counts every alert as
    /// independent evidence.
    #[serde(deserialize_with = "repeat_decay")]
    pub repeat_decay: f64,
    /// A destination contacted by at most this many distinct clients is rare...
    pub rare_clients: u64,
    /// ...as is one contacted by at most this share of all clients seen.
    #[serde(deserialize_with = "rare_share")]
    pub rare_share: f64,
    /// The likelihood ratio of an alert about a rare destination is multiplied by this.
    #[serde(deserialize_with = "rare_factor")]
    pub rare_factor: f64,
    /// A host first seen less than this many seconds before an alert's evidence began
    /// is new (when the store saw traffic at least this long before it)...
    #[serde(deserialize_with = "new_host_age")]
    pub new_host_age: f64,
    /// ...and the alert's likelihood ratio is multiplied by this.
    #[serde(deserialize_with = "new_host_factor")]
    pub new_host_factor: f64,
    /// The prior odds of a host a black-list entry names are multiplied by this.
    #[serde(deserialize_with = "black_list_factor")]
    pub black_list_factor: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            base_rate: 0.001,
            threshold: 0.5,
            severity: SeverityRatios::default(),
            rules: BTreeMap::new(),
            repeat_decay: 0.5,
            rare_clients: 1,
            rare_share: 0.01,
            rare_factor: 2.0,
            new_host_age: 86_400.0,
            new_host_factor: 1.5,
            black_list_factor: 100.0,
        }
    }
}

/// Likelihood ratios by severity: how much more often an alert of this severity is
/// raised on a host involved in an incident than on one that is not.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityRatios {
    /// "Unusual: worth a look when hunting."
    #[serde(deserialize_with = "ratio_low")]
    pub low: f64,
    /// "Suspicious: worth a look today."
    #[serde(deserialize_with = "ratio_medium")]
    pub medium: f64,
    /// "Likely an attack or a tunnel: act now."
    #[serde(deserialize_with = "ratio_high")]
    pub high: f64,
}

impl Default for SeverityRatios {
    fn default() -> Self {
        SeverityRatios {
            low: 3.0,
            medium: 10.0,
            high: 50.0,
        }
    }
}

/// Deserializers that check a number and name its key in the error (the configuration
/// reports it with the file and line, as its other checks).
macro_rules! checked {
    ($($name:ident: $key:literal, $ok:expr, $why:literal;)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            let v = f64::deserialize(d)?;
            let ok: fn(f64) -> bool = $ok;
            if v.is_finite() && ok(v) {
                Ok(v)
            } else {
                Err(D::Error::custom(format!(concat!($key, ": ", $why, ", not {}"), v)))
            }
        }
    )*};
}

checked! {
    base_rate: "scoring.base_rate", |v| v > 0.0 && v < 1.0, "must be strictly between 0 and 1";
    threshold: "scoring.threshold", |v| v > 0.0 && v < 1.0, "must be strictly between 0 and 1";
    repeat_decay: "scoring.repeat_decay", |v| (0.0..=1.0).contains(&v), "must be between 0 and 1";
    rare_share: "scoring.rare_share", |v| (0.0..=1.0).contains(&v), "must be between 0 and 1";
    rare_factor: "scoring.rare_factor", |v| v > 0.0, "must be a positive number";
    new_host_age: "scoring.new_host_age", |v| v >= 0.0, "must be zero or more seconds";
    new_host_factor: "scoring.new_host_factor", |v| v > 0.0, "must be a positive number";
    black_list_factor: "scoring.black_list_factor", |v| v > 0.0, "must be a positive number";
    ratio_low: "scoring.severity.low", |v| v > 0.0, "a likelihood ratio must be positive";
    ratio_medium: "scoring.severity.medium", |v| v > 0.0, "a likelihood ratio must be positive";
    ratio_high: "scoring.severity.high", |v| v > 0.0, "a likelihood ratio must be positive";
}

fn rule_ratios<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, f64>::deserialize(d)?;
    for (rule, v) in &m {
        if !crate::RULES.iter().any(|(n, _)| n == rule) {
            return Err(D::Error::custom(format!(
                "scoring.rules: unknown rule '{rule}' (see docs/specs/detector.md)"
            )));
        }
        if !(v.is_finite() && *v > 0.0) {
            return Err(D::Error::custom(format!(
                "scoring.rules.{rule}: a likelihood ratio must be a positive number, not {v}"
            )));
        }
    }
    Ok(m)
}

impl ScoringConfig {
    /// The likelihood ratio of one alert of `rule` at `severity`, before modifiers.
    pub fn ratio(&self, rule: &str, severity: Severity) -> f64 {
        self.rules.get(rule).copied().unwrap_or(match severity {
            Severity::Low => self.severity.low,
            Severity::Medium => self.severity.medium,
            Severity::High => self.severity.high,
        })
    }
}

/// What the caller measured about hosts in the traffic, for the modifiers. Missing
/// entries mean "not known" and apply no modifier.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostFacts {
    /// Distinct clients (originators) seen in the traffic.
    pub clients: u64,
    /// Distinct clients that contacted each destination.
    pub destination_clients: BTreeMap<IpAddr, u64>,
    /// When each host was first seen, as client or server.
    pub first_seen: BTreeMap<IpAddr, Timestamp>,
    /// When the traffic seen began (the earliest flow).
    pub watch_start: Option<Timestamp>,
}

/// Why an alert counts for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The alert's source or client (`orig_h`): the scanner, the beaconing client,
    /// the client of a tunnel.
    Orig,
    /// The responder that acted: the listener a reverse shell's operator types into.
    Resp,
    /// The host between the two sessions of a stepping stone (`evidence.relay`).
    Relay,
    /// The only host an alert without a source names (a flood's target).
    Target,
}

/// The hosts an alert counts for, without repeats. Documented in
/// `docs/specs/scoring.md`, "Which host an alert counts for".
pub fn subjects(a: &Alert) -> Vec<(IpAddr, Role)> {
    let mut out: Vec<(IpAddr, Role)> = Vec::with_capacity(2);
    let mut add = |h: IpAddr, r: Role| {
        if !out.iter().any(|(x, _)| *x == h) {
            out.push((h, r));
        }
    };
    match (a.orig_h, a.resp_h) {
        (Some(o), resp) => {
            add(o, Role::Orig);
            if a.detector == "reverse_shell" {
                if let Some(r) = resp {
                    add(r, Role::Resp);
                }
            }
        }
        (None, Some(r)) => add(r, Role::Target),
        (None, None) => {}
    }
    if a.detector == "stepping_stone" {
        if let Some(relay) = a
            .evidence
            .get("relay")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            add(relay, Role::Relay);
        }
    }
    out
}

/// What one rule added to a host's log-odds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contribution {
    /// The rule (the alerts' `detector`).
    pub rule: String,
    /// Its category (the least, by the model's order, if its alerts disagree).
    pub category: Category,
    /// The highest severity among its alerts.
    pub severity: Severity,
    /// Alerts of the rule counted for the host.
    pub count: u64,
    /// What the rule added to the host's log-odds (natural log), all alerts together.
    pub log_lr: f64,
    /// What its strongest alert alone would have added.
    pub max_log_lr: f64,
    /// Alerts whose destination was rare (likelihood ratio × `rare_factor`).
    pub rare_destination: u64,
    /// Alerts that came while the host was new (likelihood ratio × `new_host_factor`).
    pub new_host: u64,
    /// How the rule's alerts counted for the host.
    pub roles: Vec<Role>,
    /// The earliest evidence of its alerts.
    pub first_ts: Timestamp,
    /// The latest alert.
    pub last_ts: Timestamp,
}

/// A scored host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostScore {
    /// The host.
    pub host: IpAddr,
    /// Posterior probability that it is involved in an incident.
    pub probability: f64,
    /// Posterior log-odds (natural log): the prior plus every contribution.
    pub log_odds: f64,
    /// Prior log-odds (the base rate, with the black-list factor if listed).
    pub prior_log_odds: f64,
    /// At or above `scoring.threshold`.
    pub alarm: bool,
    /// A black-list entry names the host.
    pub black_listed: bool,
    /// Alerts counted.
    pub alerts: u64,
    /// What each rule added, largest first.
    pub contributions: Vec<Contribution>,
}

/// The result of scoring.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scores {
    /// Scored hosts, highest log-odds first; ties by address.
    pub hosts: Vec<HostScore>,
    /// Alerts a white-list entry matches (they would not have been raised): not counted.
    pub white_alerts: u64,
    /// Hosts not scored because a white-list entry names them.
    pub white_hosts: u64,
    /// Alerts that name no host.
    pub unattributed: u64,
}

/// One alert as counted for one host: what the modifiers need.
#[derive(Clone, Debug)]
struct Item {
    severity: Severity,
    category: Category,
    ratio: f64,
    dest: Option<IpAddr>,
    first_ts: Timestamp,
    ts: Timestamp,
    role: Role,
}

/// Scores hosts from alerts given one at a time (so a caller streaming alerts from a
/// store keeps only a few numbers per alert).
pub struct Scorer<'c> {
    config: &'c Config,
    groups: BTreeMap<IpAddr, BTreeMap<String, Vec<Item>>>,
    white_alerts: u64,
    unattributed: u64,
}

/// True when `e` names hosts alone: exactly one of client, server or net, and no port
/// or rule.
fn host_entry(e: &ListEntry) -> bool {
    let nets = [e.client, e.server, e.net].iter().flatten().count();
    nets == 1 && e.port.is_none() && e.detector.is_none()
}

fn names(entries: &[ListEntry], h: IpAddr) -> bool {
    entries.iter().filter(|e| host_entry(e)).any(|e| {
        [e.client, e.server, e.net]
            .iter()
            .flatten()
            .any(|n| n.contains(h))
    })
}

/// The natural log of a likelihood ratio; a ratio that is not a positive number (only
/// possible for a configuration built in code) is no evidence.
fn ln_ratio(r: f64) -> f64 {
    if r.is_finite() && r > 0.0 {
        r.ln()
    } else {
        0.0
    }
}

/// The logistic function, without overflow at either end.
pub fn sigmoid(x: f64) -> f64 {
    if x.is_nan() {
        return 0.0;
    }
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(p / (1 − p)), with p kept inside (0, 1).
pub fn logit(p: f64) -> f64 {
    let p = if p.is_finite() { p } else { 0.5 };
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    (p / (1.0 - p)).ln()
}

impl<'c> Scorer<'c> {
    /// A scorer with `config`'s `[scoring]` section and lists.
    pub fn new(config: &'c Config) -> Self {
        Scorer {
            config,
            groups: BTreeMap::new(),
            white_alerts: 0,
            unattributed: 0,
        }
    }

    /// Counts one alert for the hosts it names.
    pub fn add(&mut self, a: &Alert) {
        let lists = &self.config.lists;
        if !lists.white.is_empty() && policy::decide(self.config, &mut a.clone()) == Decision::White
        {
            self.white_alerts += 1;
            return;
        }
        let subjects = subjects(a);
        if subjects.is_empty() {
            self.unattributed += 1;
            return;
        }
        let ratio = self.config.scoring.ratio(&a.detector, a.severity);
        for (host, role) in subjects {
            let item = Item {
                severity: a.severity,
                category: a.category,
                ratio,
                // Rarity is about what a client contacted.
                dest: a.orig_h.and(a.resp_h),
                first_ts: a.first_ts,
                ts: a.ts,
                role,
            };
            self.groups
                .entry(host)
                .or_default()
                .entry(a.detector.clone())
                .or_default()
                .push(item);
        }
    }

    /// The hosts alerts were counted for (whose first-seen time the modifiers want).
    pub fn hosts(&self) -> Vec<IpAddr> {
        self.groups.keys().copied().collect()
    }

    /// The destinations of counted alerts (whose client counts the modifiers want).
    pub fn destinations(&self) -> Vec<IpAddr> {
        let mut d: Vec<IpAddr> = self
            .groups
            .values()
            .flat_map(|g| g.values().flatten().filter_map(|i| i.dest))
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    }

    /// The prior log-odds of `host`, or `None` when a white-list entry names it (it is
    /// not scored).
    pub fn prior_log_odds(&self, host: IpAddr) -> Option<f64> {
        let c = &self.config;
        if names(&c.lists.white, host) {
            return None;
        }
        let mut p = logit(c.scoring.base_rate);
        if names(&c.lists.black, host) {
            p += ln_ratio(c.scoring.black_list_factor);
        }
        Some(p)
    }

    fn rare(&self, dest: Option<IpAddr>, facts: &HostFacts) -> bool {
        let s = &self.config.scoring;
        let Some(n) = dest.and_then(|d| facts.destination_clients.get(&d).copied()) else {
            return false;
        };
        n >= 1 && (n <= s.rare_clients || n as f64 <= s.rare_share * facts.clients as f64)
    }

    fn new_host(&self, host: IpAddr, at: Timestamp, facts: &HostFacts) -> bool {
        let age = (self.config.scoring.new_host_age * 1e9).min(i64::MAX as f64) as i64;
        match (facts.first_seen.get(&host), facts.watch_start) {
            // Seen for less than the age, and the store was watching long enough before
            // the evidence to have seen the host earlier had it been there.
            (Some(first), Some(start)) => {
                at.nanos_since(*first) < age && at.nanos_since(start) >= age
            }
            _ => false,
        }
    }

    /// The scores, given what the caller measured.
    pub fn finish(self, facts: &HostFacts) -> Scores {
        let s = &self.config.scoring;
        let decay = if s.repeat_decay.is_finite() {
            s.repeat_decay.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let mut hosts = Vec::new();
        let mut white_hosts = 0;
        for (host, rules) in &self.groups {
            let Some(prior) = self.prior_log_odds(*host) else {
                white_hosts += 1;
                continue;
            };
            let mut contributions = Vec::with_capacity(rules.len());
            let mut alerts = 0u64;
            for (rule, items) in rules {
                let mut weights = Vec::with_capacity(items.len());
                let (mut rare_n, mut new_n) = (0u64, 0u64);
                let mut roles: Vec<Role> = Vec::new();
                for i in items {
                    let mut r = i.ratio;
                    if self.rare(i.dest, facts) {
                        r *= s.rare_factor;
                        rare_n += 1;
                    }
                    if self.new_host(*host, i.first_ts, facts) {
                        r *= s.new_host_factor;
                        new_n += 1;
                    }
                    weights.push(ln_ratio(r));
                    if !roles.contains(&i.role) {
                        roles.push(i.role);
                    }
                }
                roles.sort_unstable();
                // Strongest first, so the order alerts came in changes nothing.
                weights.sort_unstable_by(|a, b| b.abs().total_cmp(&a.abs()).then(b.total_cmp(a)));
                let mut total = 0.0;
                let mut w = 1.0;
                for x in &weights {
                    total += w * x;
                    w *= decay;
                    if w == 0.0 {
                        break;
                    }
                }
                alerts += items.len() as u64;
                contributions.push(Contribution {
                    rule: rule.clone(),
                    category: items
                        .iter()
                        .map(|i| i.category)
                        .min()
                        .unwrap_or(Category::List),
                    severity: items
                        .iter()
                        .map(|i| i.severity)
                        .max()
                        .unwrap_or(Severity::Low),
                    count: items.len() as u64,
                    log_lr: total,
                    max_log_lr: weights.first().copied().unwrap_or(0.0),
                    rare_destination: rare_n,
                    new_host: new_n,
                    roles,
                    first_ts: items.iter().map(|i| i.first_ts).min().unwrap_or_default(),
                    last_ts: items.iter().map(|i| i.ts).max().unwrap_or_default(),
                });
            }
            contributions.sort_by(|a, b| b.log_lr.total_cmp(&a.log_lr).then(a.rule.cmp(&b.rule)));
            let log_odds = prior + contributions.iter().map(|c| c.log_lr).sum::<f64>();
            let probability = sigmoid(log_odds);
            hosts.push(HostScore {
                host: *host,
                probability,
                log_odds,
                prior_log_odds: prior,
                alarm: probability >= s.threshold,
                black_listed: names(&self.config.lists.black, *host),
                alerts,
                contributions,
            });
        }
        hosts.sort_by(|a, b| b.log_odds.total_cmp(&a.log_odds).then(a.host.cmp(&b.host)));
        Scores {
            hosts,
            white_alerts: self.white_alerts,
            white_hosts,
            unattributed: self.unattributed,
        }
    }
}

/// Scores `alerts` in one call.
pub fn score(config: &Config, alerts: &[Alert], facts: &HostFacts) -> Scores {
    let mut s = Scorer::new(config);
    for a in alerts {
        s.add(a);
    }
    s.finish(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Severity::{High, Low, Medium};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn t(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(secs)
    }

    /// An alert of `rule` from `orig` to `resp` ("-": none).
    fn alert(rule: &str, sev: Severity, orig: &str, resp: &str) -> Alert {
        let h = |s: &str| s.parse().ok();
        crate::AlertBuilder::new(rule, t(1_000_000.0), sev, 0.5, String::new())
            .hosts(h(orig), h(resp))
            .span(t(999_000.0), t(1_000_000.0))
            .build()
    }

    fn at(mut a: Alert, first: f64) -> Alert {
        a.first_ts = t(first);
        a.last_ts = t(first);
        a.ts = t(first);
        a
    }

    fn host<'a>(s: &'a Scores, h: &str) -> &'a HostScore {
        s.hosts.iter().find(|x| x.host == ip(h)).unwrap()
    }

    fn order(s: &Scores) -> Vec<String> {
        s.hosts.iter().map(|h| h.host.to_string()).collect()
    }

    #[test]
    fn scoring_one_high_alert_outranks_many_lows_of_one_rule() {
        let c = Config::default();
        let mut alerts = vec![alert("ssh_in_http", High, "10.0.0.2", "192.0.2.1")];
        for _ in 0..500 {
            alerts.push(alert("keystrokes", Low, "10.0.0.1", "192.0.2.2"));
        }
        let s = score(&c, &alerts, &HostFacts::default());
        assert_eq!(order(&s), ["10.0.0.2", "10.0.0.1"]);
        assert_eq!(host(&s, "10.0.0.1").alerts, 500);
        assert_eq!(host(&s, "10.0.0.1").contributions[0].count, 500);
    }

    #[test]
    fn scoring_repeated_alerts_of_one_rule_saturate_at_twice_one() {
        let c = Config::default();
        let one = 3f64.ln();
        let lr = |n: usize| {
            let alerts = vec![alert("beacon", Low, "10.0.0.1", "192.0.2.1"); n];
            score(&c, &alerts, &HostFacts::default()).hosts[0].contributions[0].log_lr
        };
        assert!((lr(1) - one).abs() < 1e-12);
        assert!((lr(2) - 1.5 * one).abs() < 1e-12);
        assert!((lr(3) - 1.75 * one).abs() < 1e-12);
        let many = lr(10_000);
        assert!(many < 2.0 * one && many > 1.999 * one, "{many}");
        // Monotone: more alerts never lower the score.
        assert!(lr(4) > lr(3) && lr(50) > lr(4));
    }

    #[test]
    fn scoring_two_different_rules_add() {
        let c = Config::default();
        let alerts = [
            alert("dns_tunnel", Medium, "10.0.0.1", "192.0.2.53"),
            alert("beacon", Medium, "10.0.0.1", "192.0.2.7"),
        ];
        let s = score(&c, &alerts, &HostFacts::default());
        let h = host(&s, "10.0.0.1");
        let want = logit(0.001) + 2.0 * 10f64.ln();
        assert!((h.log_odds - want).abs() < 1e-12, "{}", h.log_odds);
        assert!((h.probability - sigmoid(want)).abs() < 1e-15);
        assert_eq!(h.contributions.len(), 2);
        // Sorted by contribution, ties by rule name.
        assert_eq!(h.contributions[0].rule, "beacon");
        // A rule's own ratio overrides its severity's.
        let mut c = Config::default();
        c.scoring.rules.insert("dns_tunnel".into(), 40.0);
        let s = score(&c, &alerts, &HostFacts::default());
        assert_eq!(host(&s, "10.0.0.1").contributions[0].rule, "dns_tunnel");
        assert!((host(&s, "10.0.0.1").contributions[0].log_lr - 40f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn scoring_rare_destination_doubles_the_ratio_and_changes_the_order() {
        let c = Config::default();
        let alerts = [
            alert("beacon", Medium, "10.0.0.1", "198.51.100.9"),
            alert("beacon", Medium, "10.0.0.2", "192.0.2.80"),
        ];
        // Without facts: a tie, broken by address.
        let s = score(&c, &alerts, &HostFacts::default());
        assert_eq!(order(&s), ["10.0.0.1", "10.0.0.2"]);
        // 10.0.0.2's destination was contacted by one client of 200: rare.
        let mut f = HostFacts {
            clients: 200,
            ..HostFacts::default()
        };
        f.destination_clients.insert(ip("198.51.100.9"), 150);
        f.destination_clients.insert(ip("192.0.2.80"), 1);
        let s = score(&c, &alerts, &f);
        assert_eq!(order(&s), ["10.0.0.2", "10.0.0.1"]);
        let h = host(&s, "10.0.0.2");
        assert_eq!(h.contributions[0].rare_destination, 1);
        assert!((h.contributions[0].log_lr - 20f64.ln()).abs() < 1e-12);
        // At most 1 % of the clients counts as rare too (2 of 200); 3 does not.
        f.destination_clients.insert(ip("198.51.100.9"), 2);
        let s = score(&c, &alerts, &f);
        assert_eq!(host(&s, "10.0.0.1").contributions[0].rare_destination, 1);
        f.destination_clients.insert(ip("198.51.100.9"), 3);
        let s = score(&c, &alerts, &f);
        assert_eq!(host(&s, "10.0.0.1").contributions[0].rare_destination, 0);
    }

    #[test]
    fn scoring_new_host_multiplies_the_ratio_only_when_the_store_watched_long_enough() {
        let c = Config::default();
        let day = 86_400.0;
        let alerts = [
            at(alert("beacon", Medium, "10.0.0.1", "192.0.2.1"), 10.0 * day),
            at(alert("beacon", Medium, "10.0.0.2", "192.0.2.1"), 10.0 * day),
        ];
        let mut f = HostFacts {
            watch_start: Some(t(day)),
            ..HostFacts::default()
        };
        f.first_seen.insert(ip("10.0.0.1"), t(2.0 * day));
        // 10.0.0.2 appeared an hour before its alert: new.
        f.first_seen.insert(ip("10.0.0.2"), t(10.0 * day - 3600.0));
        let s = score(&c, &alerts, &f);
        assert_eq!(order(&s), ["10.0.0.2", "10.0.0.1"]);
        let h = host(&s, "10.0.0.2");
        assert_eq!(h.contributions[0].new_host, 1);
        assert!((h.contributions[0].log_lr - 15f64.ln()).abs() < 1e-12);
        // A store that began watching an hour before everything: nobody is new.
        f.watch_start = Some(t(10.0 * day - 7200.0));
        let s = score(&c, &alerts, &f);
        assert_eq!(order(&s), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(host(&s, "10.0.0.2").contributions[0].new_host, 0);
    }

    #[test]
    fn scoring_white_listed_hosts_are_absent_and_white_listed_alerts_not_counted() {
        let mut c = Config::parse(
            "[[lists.white]]\nclient = \"10.0.0.9\"\n\
             [[lists.white]]\ndetector = \"beacon\"\nserver = \"192.0.2.1\"\n",
            "t",
        )
        .unwrap();
        let alerts = [
            alert("port_scan", High, "10.0.0.9", "-"),
            alert("beacon", Medium, "10.0.0.1", "192.0.2.1"),
            alert("beacon", Medium, "10.0.0.1", "192.0.2.2"),
        ];
        let s = score(&c, &alerts, &HostFacts::default());
        assert_eq!(order(&s), ["10.0.0.1"]);
        assert_eq!(s.white_alerts, 2, "the client entry drops its alerts too");
        assert_eq!(host(&s, "10.0.0.1").alerts, 1);
        // A host the white list names is not scored even where its alerts are kept
        // (as a client it is white; here it is a reverse shell's listener).
        c.lists.white.remove(1);
        c.lists.white[0].client = Some("192.0.2.5".parse().unwrap());
        let s = score(
            &c,
            &[alert("reverse_shell", High, "10.0.0.1", "192.0.2.5")],
            &HostFacts::default(),
        );
        assert_eq!(order(&s), ["10.0.0.1"]);
        assert_eq!((s.white_alerts, s.white_hosts), (0, 1));
    }

    #[test]
    fn scoring_black_listed_host_starts_higher() {
        let c = Config::parse("[[lists.black]]\nnet = \"10.0.0.0/24\"\n", "t").unwrap();
        let alerts = [
            alert("keystrokes", Low, "10.0.0.1", "192.0.2.1"),
            alert("keystrokes", Low, "10.0.1.1", "192.0.2.1"),
        ];
        let s = score(&c, &alerts, &HostFacts::default());
        assert_eq!(order(&s), ["10.0.0.1", "10.0.1.1"]);
        let h = host(&s, "10.0.0.1");
        assert!(h.black_listed);
        assert!((h.prior_log_odds - (logit(0.001) + 100f64.ln())).abs() < 1e-12);
        assert!(!host(&s, "10.0.1.1").black_listed);
    }

    #[test]
    fn scoring_reverse_shell_counts_for_both_sides_stepping_stone_for_the_relay() {
        let c = Config::default();
        let mut ss = alert("stepping_stone", Medium, "10.0.0.4", "10.0.0.3");
        ss.evidence.insert("relay".into(), "10.0.0.2".into());
        let alerts = [
            alert("reverse_shell", High, "10.0.0.1", "203.0.113.9"),
            ss,
            alert("syn_flood", High, "-", "10.0.0.80"),
            alert("flow_flood", High, "-", "-"),
        ];
        let s = score(&c, &alerts, &HostFacts::default());
        let roles = |h: &str| host(&s, h).contributions[0].roles.clone();
        assert_eq!(roles("10.0.0.1"), [Role::Orig]);
        assert_eq!(roles("203.0.113.9"), [Role::Resp]);
        assert_eq!(roles("10.0.0.4"), [Role::Orig]);
        assert_eq!(roles("10.0.0.2"), [Role::Relay]);
        assert!(s.hosts.iter().all(|h| h.host != ip("10.0.0.3")));
        assert_eq!(roles("10.0.0.80"), [Role::Target]);
        assert_eq!(s.unattributed, 1);
    }

    #[test]
    fn scoring_order_is_deterministic_on_ties_and_independent_of_input_order() {
        let c = Config::default();
        let mut alerts = Vec::new();
        for h in ["10.0.0.3", "10.0.0.1", "2001:db8::1", "10.0.0.2"] {
            alerts.push(alert("beacon", Medium, h, "192.0.2.1"));
            alerts.push(alert("upload_volume", Low, h, "192.0.2.1"));
            alerts.push(alert("beacon", High, h, "192.0.2.2"));
        }
        let a = score(&c, &alerts, &HostFacts::default());
        assert_eq!(
            order(&a),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1"]
        );
        alerts.reverse();
        let b = score(&c, &alerts, &HostFacts::default());
        assert_eq!(a, b);
    }

    #[test]
    fn scoring_extreme_log_odds_give_probabilities_in_range() {
        assert_eq!(sigmoid(1e6), 1.0);
        assert_eq!(sigmoid(-1e6), 0.0);
        assert_eq!(sigmoid(f64::NAN), 0.0);
        assert!((sigmoid(logit(0.001)) - 0.001).abs() < 1e-15);
        // A ratio built in code that is not a positive number is no evidence.
        let mut c = Config::default();
        c.scoring.severity.low = -3.0;
        c.scoring.repeat_decay = f64::NAN;
        let s = score(
            &c,
            &[alert("keystrokes", Low, "10.0.0.1", "-")],
            &HostFacts::default(),
        );
        assert_eq!(s.hosts[0].log_odds, logit(0.001));
    }

    #[test]
    fn scoring_config_defaults_and_bad_values_name_key_and_line() {
        let text = "[scoring]\nbase_rate = 0.01\n[scoring.severity]\nhigh = 100\n\
                    [scoring.rules]\nbeacon = 20\n";
        let c = Config::parse(text, "c.toml").unwrap();
        assert_eq!(c.scoring.base_rate, 0.01);
        assert_eq!(c.scoring.severity.high, 100.0);
        assert_eq!(c.scoring.severity.low, 3.0);
        assert_eq!(c.scoring.ratio("beacon", Low), 20.0);
        assert_eq!(c.scoring.ratio("keystrokes", High), 100.0);
        for (text, line, needle) in [
            ("[scoring]\nbase_rate = 1.0\n", 2, "scoring.base_rate"),
            ("[scoring]\n\nbase_rate = 0\n", 3, "scoring.base_rate"),
            ("[scoring]\nthreshold = -0.5\n", 2, "scoring.threshold"),
            (
                "[scoring.severity]\nmedium = -10\n",
                2,
                "scoring.severity.medium",
            ),
            ("[scoring]\nrare_factor = 0\n", 2, "scoring.rare_factor"),
            ("[scoring]\nrepeat_decay = 1.5\n", 2, "scoring.repeat_decay"),
            ("[scoring.rules]\nbeacon = -1\n", 1, "scoring.rules.beacon"),
            ("[scoring.rules]\nnope = 3\n", 1, "unknown rule 'nope'"),
            ("[scoring]\nbase_rat = 0.1\n", 2, "base_rat"),
        ] {
            let e = Config::parse(text, "c.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!("c.toml, line {line}")) && e.contains(needle),
                "{text}: {e}"
            );
        }
    }
}
