//! DNS tunnels from payload facts (issue 6): per client and registered domain, over
//! windows of packet time, the queries the flows carried — how many, how many distinct
//! names, how long, how random the part left of the registered domain, how many asked
//! for TXT/NULL/CNAME/MX/ANY — and an alert only when several of these agree (seed
//! 002's rule: a single metric is too easily explained). Resolvers forward tunnels, so
//! the client is the originator of the flows seen, and the domain is what ties a
//! tunnel's queries together when source ports change.
//!
//! The registered domain is the last two labels of the first query name of each flow
//! (no public-suffix list: `a.b.co.uk` groups under `co.uk`, which only merges more
//! queries). Long-lived flows add what is new since their last interim record, so a
//! tunnel alerts while it runs. State is bounded by `max_keys`.

use std::net::IpAddr;

use tunnelwatch_model::{Alert, Cause, FlowRecord, Severity, Timestamp};

use crate::config::{Config, DnsTunnelConfig};
use crate::net::addr_order;
use crate::summary::{keep_first, split_first, FirstFlows};
use crate::{AlertBuilder, Detector, FastMap};

/// Counters of one key (or what a flow added so far).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    queries: u64,
    distinct: u64,
    name_bytes: u64,
    unusual: u64,
    nxdomain: u64,
    entropy_sum: f64,
}

impl Tally {
    fn of(r: &FlowRecord) -> Option<Tally> {
        let d = r.app.as_ref()?.dns.as_ref()?;
        Some(Tally {
            queries: d.queries,
            distinct: d.distinct_names,
            name_bytes: d.name_bytes,
            unusual: d.unusual_qtypes,
            nxdomain: d.nxdomain,
            entropy_sum: d.subdomain_entropy * d.queries as f64,
        })
    }

    fn add(&mut self, o: &Tally, sign: f64) {
        let f = |a: u64, b: u64| {
            if sign > 0.0 {
                a + b
            } else {
                a.saturating_sub(b)
            }
        };
        self.queries = f(self.queries, o.queries);
        self.distinct = f(self.distinct, o.distinct);
        self.name_bytes = f(self.name_bytes, o.name_bytes);
        self.unusual = f(self.unusual, o.unusual);
        self.nxdomain = f(self.nxdomain, o.nxdomain);
        self.entropy_sum += sign * o.entropy_sum;
    }
}

#[derive(Default)]
struct Window {
    t: Tally,
    flows: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    uids: FirstFlows,
}

/// The detector.
pub struct DnsTunnel {
    cfg: DnsTunnelConfig,
    on: bool,
    window_ns: i64,
    lateness_ns: i64,
    max_uids: usize,
    /// Open windows by their index (a few at a time), each by client and domain
    /// (hashed: a tree keyed by strings was most of this detector's time).
    windows: FastMap<i64, FastMap<(IpAddr, String), Window>>,
    /// Keys in `windows`.
    keys: usize,
    /// What live flows added so far (their interim records).
    live: FastMap<String, Tally>,
    untracked: u64,
    /// The key being looked up (reused: a client's queries mostly fall under domains
    /// its window already holds, and need no string of their own).
    probe: (IpAddr, String),
}

/// The last two labels of `name` (the whole name when it has fewer).
pub fn registered_domain(name: &str) -> String {
    let mut out = String::new();
    registered_domain_into(name, &mut out);
    out
}

/// [`registered_domain`] written into `out` (cleared first).
fn registered_domain_into(name: &str, out: &mut String) {
    // Cut first, then lower-case only what is kept.
    let n = name.trim_end_matches('.');
    // The second dot from the end, by bytes (a `char` pattern searches by code point,
    // through `memrchr`: a sixth of this detector).
    let b = n.as_bytes();
    let dot = |end: usize| b[..end].iter().rposition(|&c| c == b'.');
    let start = dot(b.len()).and_then(dot).map_or(0, |i| i + 1);
    out.clear();
    out.push_str(&n[start..]);
    out.make_ascii_lowercase();
}

impl DnsTunnel {
    /// Judges and forgets the windows up to `last` (all of them when `None`), in order
    /// of window, client and domain.
    fn judge_windows(&mut self, last: Option<i64>, out: &mut Vec<Alert>) {
        let mut due: Vec<i64> = self
            .windows
            .keys()
            .copied()
            .filter(|w| last.is_none_or(|l| *w <= l))
            .collect();
        due.sort_unstable();
        for index in due {
            let Some(window) = self.windows.remove(&index) else {
                continue;
            };
            self.keys -= window.len();
            // By client then domain, the client compared as numbers; windows with too
            // few queries to judge are dropped before the sort (most of them).
            let min = self.cfg.min_queries;
            let mut keys: Vec<_> = window
                .into_iter()
                .filter(|(_, w)| w.t.queries >= min)
                .map(|(k, w)| (addr_order(k.0), k, w))
                .collect();
            keys.sort_unstable_by(|a, b| (a.0, &a.1 .1).cmp(&(b.0, &b.1 .1)));
            for (_, (client, domain), w) in keys {
                self.judge((index, client, domain), w, out);
            }
        }
    }

    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        DnsTunnel {
            cfg: config.dns_tunnel.clone(),
            on: config.enabled("dns_tunnel"),
            window_ns: ((config.dns_tunnel.window * 1e9) as i64).max(1),
            lateness_ns: (config.tcp_filter.lateness * 1e9) as i64,
            max_uids: config.alerts.max_uids,
            windows: FastMap::default(),
            keys: 0,
            live: FastMap::default(),
            untracked: 0,
            probe: (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), String::new()),
        }
    }

    fn judge(&self, (w, client, domain): (i64, IpAddr, String), win: Window, out: &mut Vec<Alert>) {
        let t = &win.t;
        if t.queries < self.cfg.min_queries {
            return;
        }
        let q = t.queries as f64;
        let mean_len = t.name_bytes as f64 / q;
        let entropy = t.entropy_sum / q;
        let unusual = t.unusual as f64 / q;
        let distinct = t.distinct as f64 / q;
        let c = &self.cfg;
        let signs = [
            ("long names", mean_len >= c.mean_name_len),
            ("random subdomains", entropy >= c.entropy),
            ("data-carrying query types", unusual >= c.unusual_share),
            ("mostly unique names", distinct >= c.distinct_share),
        ];
        let agree: Vec<&str> = signs.iter().filter(|s| s.1).map(|s| s.0).collect();
        if agree.len() < c.min_agreeing {
            return;
        }
        let severity = if agree.len() >= 3 {
            Severity::High
        } else {
            Severity::Medium
        };
        let ts = Timestamp((w + 1) * self.window_ns).max(win.last.unwrap_or_default());
        let (uids, cid) = split_first(&win.uids);
        let r3 = crate::round3;
        out.push(
            AlertBuilder::new(
                "dns_tunnel",
                ts,
                severity,
                r3(agree.len() as f64 / signs.len() as f64),
                format!(
                    "DNS tunnel? {client} sent {} queries under {domain} in {} s: {} ({} distinct names, mean length {:.0}, subdomain entropy {:.2} bits/char, {:.0}% TXT/NULL/CNAME/MX/ANY)",
                    t.queries,
                    c.window,
                    agree.join(", "),
                    t.distinct,
                    mean_len,
                    entropy,
                    unusual * 100.0
                ),
            )
            .hosts(Some(client), None)
            .span(win.first.unwrap_or_default(), win.last.unwrap_or_default())
            .uids(uids, cid)
            .max_uids(self.max_uids)
            .evidence("domain", domain)
            .evidence("queries", t.queries)
            .evidence("distinct_names", t.distinct)
            .evidence("mean_name_len", r3(mean_len))
            .evidence("subdomain_entropy", r3(entropy))
            .evidence("unusual_qtype_share", r3(unusual))
            .evidence("nxdomain", t.nxdomain)
            .evidence("flows", win.flows)
            .evidence("agreeing", agree.len() as u64)
            .evidence(
                "thresholds",
                serde_json::json!({
                    "min_queries": c.min_queries,
                    "mean_name_len": c.mean_name_len,
                    "entropy": c.entropy,
                    "unusual_share": c.unusual_share,
                    "distinct_share": c.distinct_share,
                    "min_agreeing": c.min_agreeing,
                }),
            )
            .build(),
        );
    }
}

impl Detector for DnsTunnel {
    fn record(&mut self, r: &FlowRecord, _out: &mut Vec<Alert>) {
        if !self.on {
            return;
        }
        let Some(mut t) = Tally::of(r) else { return };
        let Some(query) = r
            .app
            .as_ref()
            .and_then(|a| a.dns.as_ref()?.query.as_deref())
        else {
            return;
        };
        // Only what is new since this flow's last interim record (there are nearly
        // never any: then the uid is not hashed).
        if !self.live.is_empty() {
            if let Some(prev) = self.live.remove(&r.uid) {
                t.add(&prev, -1.0);
            }
        }
        if r.cause == Cause::Status && self.live.len() < 1 << 20 {
            let total = Tally::of(r).unwrap_or_default();
            self.live.insert(r.uid.clone(), total);
        }
        let index = r.ts.as_nanos().div_euclid(self.window_ns);
        self.probe.0 = r.orig_h;
        registered_domain_into(query, &mut self.probe.1);
        let full = self.keys >= self.cfg.max_keys;
        let window = self.windows.entry(index).or_default();
        let w = match window.get_mut(&self.probe) {
            Some(w) => w,
            None if full => {
                self.untracked += 1;
                return;
            }
            None => {
                self.keys += 1;
                window.entry(self.probe.clone()).or_default()
            }
        };
        w.t.add(&t, 1.0);
        w.flows += 1;
        w.first = Some(w.first.map_or(r.ts, |x| x.min(r.ts)));
        w.last = Some(w.last.map_or(r.last_ts, |x| x.max(r.last_ts)));
        keep_first(&mut w.uids, r, self.max_uids);
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        // As `summary::split_due`: a window is judged once `lateness` has passed its
        // end.
        let last_due = (now.as_nanos() - self.lateness_ns).div_euclid(self.window_ns) - 1;
        if self.windows.keys().all(|w| *w > last_due) {
            return;
        }
        self.judge_windows(Some(last_due), out);
    }

    fn finish(&mut self, out: &mut Vec<Alert>) {
        self.judge_windows(None, out);
    }

    fn untracked(&self) -> u64 {
        self.untracked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_domain_is_the_last_two_labels_lower_cased() {
        for (name, want) in [
            ("a.B.Example.COM", "example.com"),
            ("x.example.com.", "example.com"),
            ("example.com..", "example.com"),
            ("Localhost", "localhost"),
            ("", ""),
            (".", ""),
            ("a.b", "a.b"),
            ("aB4x.T.Example", "t.example"),
            // Non-ASCII labels are cut at the same dots and kept as they are.
            ("é.ÿ.Ä.cOm", "Ä.com"),
        ] {
            assert_eq!(registered_domain(name), want, "{name}");
        }
    }
}
