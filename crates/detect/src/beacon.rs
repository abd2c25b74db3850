//! Beacons and long connections (seed 000, traces 3 and 4: "requests on a curious
//! static interval", "one user fetching a few resources too often"; RITA v5's beacon
//! and long-connection analyses, `docs/specs/detector.md` "Beacons").
//!
//! Every flow record (a connection, counted once by `uid` whether it arrives interim or
//! final) adds a point — its start time and the bytes its client sent — to series keyed
//! by client and:
//!
//! - `ip`: server address, port and protocol;
//! - `name`: the HTTP Host, TLS SNI or DNS query name, so C2 that hops addresses stays
//!   one series;
//! - `ja4`: the TLS client fingerprint, so one implant talking to many fronts stays one;
//! - `url`: HTTP Host and URI, for `repeated_fetch`.
//!
//! `beacon` scores a series like RITA v5 — Bowley skew and MAD of the intervals (`ts`)
//! and of the sizes (`ds`), a 24-bin histogram of connection times over the observed
//! window (`hist`: coefficient of variation, or a bimodal fit), and duration coverage
//! (`dur`) — plus `period`, a term that survives jitter and sleep schedules: the share
//! of intervals within ±`jitter` of the median interval, after intervals longer than
//! `sleep_factor` medians (sleeps) are set aside. The score is the weighted sum. A
//! series is scored when it reaches `min_connections` and at every 8th connection after
//! (so a running beacon alerts while it runs), and at the end of input; a series alerts
//! once per severity it reaches (low while it spans under `medium_span`, then medium,
//! high for a high score over many connections). `repeated_fetch`: one client fetched one URL `min_fetches` times within
//! `fetch_window` seconds. `long_connection`: the summed duration of a client's
//! connections to one server port, open ones included, crossed 1 h / 4 h / 8 h / 12 h.
//!
//! State is bounded: at most `max_series` series of at most `max_points` points each
//! (the latest kept); what does not fit is counted as untracked. Series quiet for a day
//! of packet time are forgotten. Most series are one connection: a series' first is
//! kept in place, without the allocations of a full series, until a second comes.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;

use tunnelwatch_model::{Alert, Cause, FlowRecord, IpText, Severity, Timestamp};

use crate::config::{BeaconConfig, Config};
use crate::{round3, severity_score, AlertBuilder, Detector, FastMap};

/// Seconds in the RITA-style dataset window: at most a day back.
const WINDOW_MAX: f64 = 86_400.0;
/// Long-connection buckets (seconds) and their severities.
const LONG: [(f64, Severity, &str); 4] = [
    (3_600.0, Severity::Low, "1 h"),
    (14_400.0, Severity::Low, "4 h"),
    (28_800.0, Severity::Medium, "8 h"),
    (43_200.0, Severity::High, "12 h"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Ip,
    Name,
    Ja4,
    Url,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Name => "name",
            Kind::Ja4 => "ja4",
            Kind::Url => "url",
        }
    }
}

/// Kind, client, and the seeded hash of the key (of its text, kept once in the series;
/// for `Ip`, of server, port and protocol): a record looks its series up without
/// cloning a string, and its address key without writing one.
type Key = (Kind, IpAddr, u64);

#[derive(Default)]
struct Series {
    /// The key's text: `server:port/proto`, the name, the fingerprint or the URL.
    text: String,
    /// Start times (s) and client bytes of the latest connections.
    points: VecDeque<(f64, f64)>,
    /// Connections seen (also those no longer kept).
    n: u64,
    servers: Servers,
    /// The first connections' `uid`s, one per line (one allocation for all).
    uids: String,
    uid_count: usize,
    community_id: Option<String>,
    /// The severity last raised (a beacon that goes on is raised again, higher).
    alerted: Option<Severity>,
}

/// Up to 16 distinct servers of a series, the least in place: an address series has
/// only one, and most series are one connection (a set would allocate for each).
#[derive(Default)]
struct Servers {
    least: Option<IpAddr>,
    /// The others, in order.
    rest: Vec<IpAddr>,
}

impl Servers {
    fn len(&self) -> usize {
        usize::from(self.least.is_some()) + self.rest.len()
    }

    fn insert(&mut self, a: IpAddr) {
        let add = match self.least {
            None => {
                self.least = Some(a);
                return;
            }
            Some(l) if a == l => return,
            Some(l) if a < l => {
                self.least = Some(a);
                l
            }
            Some(_) => a,
        };
        if let Err(i) = self.rest.binary_search(&add) {
            self.rest.insert(i, add);
        }
    }
}

impl Series {
    fn uid_list(&self) -> Vec<String> {
        if self.uid_count == 0 {
            return Vec::new();
        }
        self.uids.split('\n').map(String::from).collect()
    }
}

/// A series as the map keeps it. Most series never see a second connection: their
/// first is kept in place (one allocation, for its ids) and becomes a [`Series`] at the
/// second — when the first connection alone cannot raise anything
/// ([`Beacon::lazy`]).
enum Entry {
    /// The first connection: its start, its client bytes, its server, and its `uid`
    /// then its Community ID in one string (`uid_len` bytes of `uid`).
    One {
        t: f64,
        size: f64,
        server: IpAddr,
        ids: String,
        uid_len: usize,
    },
    Many(Box<Series>),
}

impl Entry {
    /// Connections seen.
    fn n(&self) -> u64 {
        match self {
            Entry::One { .. } => 1,
            Entry::Many(s) => s.n,
        }
    }

    /// Start of the latest connection kept.
    fn last_start(&self) -> Option<f64> {
        match self {
            Entry::One { t, .. } => Some(*t),
            Entry::Many(s) => s.points.back().map(|p| p.0),
        }
    }

    fn series(&mut self) -> Option<&mut Series> {
        match self {
            Entry::One { .. } => None,
            Entry::Many(s) => Some(s),
        }
    }

    /// Becomes the full series of `text`, with the first connection added as
    /// [`Beacon::add`] adds one.
    fn grow(&mut self, text: &str, max_uids: usize) {
        if let Entry::One {
            t,
            size,
            server,
            ids,
            uid_len,
        } = self
        {
            let mut s = Series {
                text: text.to_owned(),
                n: 1,
                ..Series::default()
            };
            s.points.push_back((*t, *size));
            s.servers.insert(*server);
            if max_uids > 0 {
                s.uids.push_str(&ids[..*uid_len]);
                s.uid_count = 1;
            }
            s.community_id = Some(ids[*uid_len..].to_owned());
            *self = Entry::Many(Box::new(s));
        }
    }
}

/// Summed durations of one (client, server, port).
#[derive(Default)]
struct Pair {
    ended: f64,
    live: BTreeMap<String, f64>,
    bucket: usize,
}

/// The detector.
pub struct Beacon {
    cfg: BeaconConfig,
    max_uids: usize,
    on: [bool; 3],
    series: FastMap<Key, Entry>,
    /// The text of the key being looked up (reused).
    text: String,
    pairs: FastMap<(IpAddr, IpAddr, u16), Pair>,
    /// Flows already counted from an interim record.
    live: BTreeSet<String>,
    start: Option<f64>,
    now: f64,
    /// Packet time of the last pruning of idle series, and of the last compaction.
    pruned: f64,
    compacted: f64,
    untracked: u64,
}

impl Beacon {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Beacon {
            cfg: config.beacon.clone(),
            max_uids: config.alerts.max_uids,
            on: [
                config.enabled("beacon"),
                config.enabled("repeated_fetch"),
                config.enabled("long_connection"),
            ],
            series: FastMap::default(),
            text: String::new(),
            pairs: FastMap::default(),
            live: BTreeSet::new(),
            start: None,
            now: 0.0,
            pruned: 0.0,
            compacted: f64::NEG_INFINITY,
            untracked: 0,
        }
    }

    /// Writes the text of `r`'s series of `kind` into `out` (cleared first); false when
    /// `r` has none of that kind.
    fn key_text(r: &FlowRecord, kind: Kind, out: &mut String) -> bool {
        out.clear();
        let app = r.app.as_ref();
        let http = app.and_then(|a| a.http.as_ref());
        let tls = app.and_then(|a| a.tls.as_ref());
        let host = http.and_then(|h| h.host.as_deref()).map(strip_port);
        match kind {
            Kind::Ip => {
                // `server:port/proto`, without `core::fmt` (most series are new).
                out.push_str(IpText::new(r.resp_h).as_str());
                out.push(':');
                out.push_str(itoa::Buffer::new().format(r.resp_p));
                out.push('/');
                out.push_str(&r.proto);
            }
            Kind::Name => {
                let Some(n) = host
                    .or_else(|| tls.and_then(|t| t.sni.as_deref()))
                    .or_else(|| app.and_then(|a| a.dns.as_ref()?.query.as_deref()))
                else {
                    return false;
                };
                out.push_str(n);
                out.make_ascii_lowercase();
                // Service discovery (`.local`) and reverse lookups (`.arpa`) repeat by
                // design.
                let n = out.trim_end_matches('.');
                if n.is_empty() || n.ends_with(".local") || n.ends_with(".arpa") {
                    return false;
                }
            }
            Kind::Ja4 => match tls.and_then(|t| t.ja4.as_deref()) {
                Some(j) => out.push_str(j),
                None => return false,
            },
            Kind::Url => {
                let (Some(h), Some(u)) = (host, http.and_then(|h| h.uri.as_deref())) else {
                    return false;
                };
                if http.and_then(|h| h.method.as_deref()) == Some("CONNECT") {
                    return false;
                }
                // Proxies see absolute URIs; the path is what was fetched.
                let path = u
                    .split_once("://")
                    .map_or(u, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
                out.push_str(h);
                out.make_ascii_lowercase();
                out.push_str(path);
            }
        }
        true
    }

    /// Whether a new series of `kind` may wait for its second connection to be one:
    /// its first alone can raise nothing (`beacon` scores from `min_connections`,
    /// `repeated_fetch` from `min_fetches`).
    fn lazy(&self, kind: Kind) -> bool {
        self.cfg.min_connections > 1
            && (kind != Kind::Url || !self.on[1] || self.cfg.min_fetches > 1)
    }

    fn add(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if !unicast(r.resp_h) {
            // mDNS, SSDP, NetBIOS and DHCP announce themselves on timers by design.
            return;
        }
        let t = r.ts.as_secs_f64_micros();
        let size = r.orig_bytes as f64;
        let mut text = std::mem::take(&mut self.text);
        for kind in [Kind::Ip, Kind::Name, Kind::Ja4, Kind::Url] {
            // The map's own seeded hasher hashes the key too: the address key's parts
            // (every record has one: its text is written only for a new series), the
            // other kinds' text.
            let hash = if kind == Kind::Ip {
                let h = self.series.hasher();
                h.hash_one((r.resp_h, r.resp_p, r.proto.as_str()))
            } else if Self::key_text(r, kind, &mut text) {
                self.series.hasher().hash_one(text.as_str())
            } else {
                continue;
            };
            let key = (kind, r.orig_h, hash);
            // One lookup finds or adds the series, unless the map is full.
            if self.series.len() >= self.cfg.max_series && !self.series.contains_key(&key) {
                self.compact();
                if self.series.len() >= self.cfg.max_series {
                    self.untracked += 1;
                    continue;
                }
            }
            let (lazy, max_uids) = (self.lazy(kind), self.max_uids);
            let e = match self.series.entry(key) {
                MapEntry::Vacant(v) if lazy => {
                    let mut ids = String::with_capacity(r.uid.len() + r.community_id.len());
                    ids.push_str(&r.uid);
                    ids.push_str(&r.community_id);
                    v.insert(Entry::One {
                        t,
                        size,
                        server: r.resp_h,
                        ids,
                        uid_len: r.uid.len(),
                    });
                    continue;
                }
                MapEntry::Vacant(v) => {
                    // The key's text (an address key's is written only for a series).
                    if kind == Kind::Ip {
                        Self::key_text(r, kind, &mut text);
                    }
                    v.insert(Entry::Many(Box::new(Series {
                        text: text.clone(),
                        ..Series::default()
                    })))
                }
                MapEntry::Occupied(o) => o.into_mut(),
            };
            if let Entry::One { .. } = e {
                if kind == Kind::Ip {
                    Self::key_text(r, kind, &mut text);
                }
                e.grow(&text, max_uids);
            }
            let Some(s) = e.series() else {
                continue;
            };
            s.points.push_back((t, size));
            if s.points.len() > self.cfg.max_points.max(4) {
                s.points.pop_front();
            }
            s.n += 1;
            if s.servers.len() < 16 {
                s.servers.insert(r.resp_h);
            }
            if s.uid_count < self.max_uids {
                if s.uid_count > 0 {
                    s.uids.push('\n');
                }
                s.uids.push_str(&r.uid);
                s.uid_count += 1;
            }
            if s.community_id.is_none() {
                s.community_id = Some(r.community_id.clone());
            }
            let due = s.n >= self.cfg.min_connections
                && (s.n == self.cfg.min_connections || s.n % 8 == 0);
            if kind == Kind::Url && self.on[1] {
                self.fetches(&key, out);
            }
            if due && kind != Kind::Url && self.on[0] {
                self.score(&key, out);
            }
        }
        self.text = text;
    }

    /// Full: forgets series of one connection (most series are one-off connections)
    /// older than 30 s, or all of them if that frees less than a tenth; at most every
    /// 10 s of packet time.
    fn compact(&mut self) {
        if self.now - self.compacted < 10.0 {
            return;
        }
        self.compacted = self.now;
        let old = self.now - 30.0;
        self.series
            .retain(|_, s| s.n() > 1 || s.last_start().is_some_and(|t| t >= old));
        if self.series.len() * 10 > self.cfg.max_series * 9 {
            self.series.retain(|_, s| s.n() > 1);
        }
    }

    /// `repeated_fetch`: one URL fetched too often.
    fn fetches(&mut self, key: &Key, out: &mut Vec<Alert>) {
        let Some(s) = self.series.get_mut(key).and_then(Entry::series) else {
            return;
        };
        if s.alerted.is_some() {
            return;
        }
        let last = s.points.back().map_or(0.0, |p| p.0);
        let recent: Vec<f64> = s
            .points
            .iter()
            .map(|p| p.0)
            .filter(|t| *t >= last - self.cfg.fetch_window && *t <= last)
            .collect();
        if (recent.len() as u64) < self.cfg.min_fetches {
            return;
        }
        s.alerted = Some(Severity::Low);
        let first = recent.iter().copied().fold(f64::INFINITY, f64::min);
        let span = (last - first).max(1e-6);
        let rate = (recent.len() - 1) as f64 / span;
        out.push(
            AlertBuilder::new(
                "repeated_fetch",
                Timestamp::from_secs_f64(last),
                Severity::Low,
                0.4,
                format!(
                    "{} fetched {} {} times in {:.0} s ({:.2}/s): a few resources too often",
                    key.1,
                    s.text,
                    recent.len(),
                    span,
                    rate
                ),
            )
            .hosts(Some(key.1), s.servers.least)
            .span(
                Timestamp::from_secs_f64(first),
                Timestamp::from_secs_f64(last),
            )
            .uids(s.uid_list(), s.community_id.clone())
            .max_uids(self.max_uids)
            .evidence("url", s.text.clone())
            .evidence("fetches", recent.len())
            .evidence("per_second", round3(rate))
            .build(),
        );
    }

    /// `beacon`: scores a series and alerts once when it is a beacon.
    fn score(&mut self, key: &Key, out: &mut Vec<Alert>) {
        let window_start = self.start.unwrap_or(self.now).max(self.now - WINDOW_MAX);
        let Some(s) = self.series.get_mut(key).and_then(Entry::series) else {
            return;
        };
        if s.alerted == Some(Severity::High) {
            return;
        }
        let mut times: Vec<f64> = s.points.iter().map(|p| p.0).collect();
        times.sort_by(f64::total_cmp);
        times.dedup();
        let sizes: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        let Some(sc) = Scores::of(&times, &sizes, window_start, self.now, &self.cfg) else {
            return;
        };
        let score = sc.total(&self.cfg);
        if score < self.cfg.min_score {
            return;
        }
        let (first, last) = (times[0], times[times.len() - 1]);
        // A few minutes of regular connections is also every scripted client, test
        // harness and retry loop: low until the series has lasted.
        let severity = if last - first < self.cfg.medium_span {
            Severity::Low
        } else if score >= self.cfg.high_score && times.len() as u64 >= self.cfg.high_connections {
            Severity::High
        } else {
            Severity::Medium
        };
        if s.alerted.is_some_and(|a| a >= severity) {
            return;
        }
        s.alerted = Some(severity);
        let what = match key.0 {
            Kind::Ip | Kind::Url => s.text.clone(),
            Kind::Name => format!("the name {}", s.text),
            Kind::Ja4 => format!("servers with the TLS fingerprint {}", s.text),
        };
        out.push(
            AlertBuilder::new(
                "beacon",
                Timestamp::from_secs_f64(self.now),
                severity,
                round3(score),
                format!(
                    "{} calls {} every {:.1} s ({} connections, score {:.2}: intervals {:.2}, sizes {:.2}, period {:.2}, spread {:.2}, duration {:.2})",
                    key.1,
                    what,
                    sc.median_interval,
                    times.len(),
                    score,
                    sc.ts,
                    sc.ds,
                    sc.period,
                    sc.hist,
                    sc.dur
                ),
            )
            .hosts(Some(key.1), s.servers.least.filter(|_| s.servers.len() == 1))
            .span(Timestamp::from_secs_f64(first), Timestamp::from_secs_f64(last))
            .uids(s.uid_list(), s.community_id.clone())
            .max_uids(self.max_uids)
            .evidence("series", key.0.label())
            .evidence("key", s.text.clone())
            .evidence("connections", times.len())
            .evidence("servers", s.servers.len())
            .evidence("median_interval", round3(sc.median_interval))
            .evidence("ts_score", round3(sc.ts))
            .evidence("ds_score", round3(sc.ds))
            .evidence("period_score", round3(sc.period))
            .evidence("hist_score", round3(sc.hist))
            .evidence("dur_score", round3(sc.dur))
            .evidence("sleeps", sc.sleeps)
            .build(),
        );
    }

    /// `long_connection`: summed duration per (client, server, port), open flows too.
    fn long(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let key = (r.orig_h, r.resp_h, r.resp_p);
        let known = self.pairs.contains_key(&key);
        if !known && r.cause != Cause::Status && r.duration < 1.0 {
            // Short and done, and nothing open on the pair: nothing to remember (the
            // first bucket is an hour).
            return;
        }
        if !known && self.pairs.len() >= self.cfg.max_series {
            self.untracked += 1;
            return;
        }
        let p = self.pairs.entry(key).or_default();
        if r.cause == Cause::Status {
            p.live.insert(r.uid.clone(), r.duration);
        } else {
            if !p.live.is_empty() {
                p.live.remove(&r.uid);
            }
            p.ended += r.duration;
        }
        let total = p.ended + p.live.values().sum::<f64>();
        let mut crossed = None;
        while p.bucket < LONG.len() && total >= LONG[p.bucket].0 {
            crossed = Some(LONG[p.bucket]);
            p.bucket += 1;
        }
        if let Some((_, severity, label)) = crossed {
            out.push(
                AlertBuilder::new(
                    "long_connection",
                    r.last_ts,
                    severity,
                    severity_score(severity),
                    format!(
                        "{} has been connected to {}:{} for {:.1} h in all (over {label})",
                        r.orig_h,
                        r.resp_h,
                        r.resp_p,
                        total / 3600.0
                    ),
                )
                .flow(r)
                .evidence("total_duration", round3(total))
                .evidence("open_connections", p.live.len())
                .build(),
            );
        }
        if p.live.is_empty() && p.bucket == 0 && r.cause != Cause::Status && total < 1.0 {
            // Short and done: nothing to remember.
            self.pairs.remove(&key);
        }
    }
}

/// A destination that is one host: not multicast, not a broadcast (all-ones host part
/// of a /24 or wider, which is all a flow record can tell), not unspecified.
fn unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            !(v.is_multicast() || v.is_broadcast() || v.is_unspecified() || v.octets()[3] == 255)
        }
        IpAddr::V6(v) => !(v.is_multicast() || v.is_unspecified()),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The sub-scores of one series, each in [0, 1].
#[derive(Debug)]
struct Scores {
    ts: f64,
    ds: f64,
    hist: f64,
    dur: f64,
    period: f64,
    median_interval: f64,
    sleeps: usize,
}

impl Scores {
    fn of(
        times: &[f64],
        sizes: &[f64],
        window_start: f64,
        now: f64,
        cfg: &BeaconConfig,
    ) -> Option<Scores> {
        let intervals: Vec<f64> = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0.0)
            .collect();
        if intervals.len() < 3 || (times.len() as u64) < cfg.min_connections {
            return None;
        }
        let mut sorted = intervals.clone();
        sorted.sort_by(f64::total_cmp);
        let median = quantile(&sorted, 0.5);
        // Sleeps: intervals far beyond the beacon's own.
        let awake: Vec<f64> = sorted
            .iter()
            .copied()
            .filter(|d| *d <= cfg.sleep_factor * median)
            .collect();
        if median < cfg.min_interval {
            // A burst (a page's requests, a resolver's lookups), not a check-in.
            return None;
        }
        let sleeps = sorted.len() - awake.len();
        let ts = skew_mad(&awake);
        let mut s = sizes.to_vec();
        s.sort_by(f64::total_cmp);
        let ds = skew_mad(&s);
        let period = awake
            .iter()
            .filter(|d| (*d - median).abs() <= cfg.jitter * median)
            .count() as f64
            / awake.len().max(1) as f64;
        let window = (now - window_start).max(times[times.len() - 1] - times[0]);
        let (hist, dur) = histogram(times, window_start.min(times[0]), window);
        Some(Scores {
            ts,
            ds,
            hist,
            dur,
            period,
            median_interval: median,
            sleeps,
        })
    }

    fn total(&self, cfg: &BeaconConfig) -> f64 {
        let w = &cfg.weights;
        let sum = w.ts + w.ds + w.hist + w.dur + w.period;
        if sum <= 0.0 {
            return 0.0;
        }
        (w.ts * self.ts
            + w.ds * self.ds
            + w.hist * self.hist
            + w.dur * self.dur
            + w.period * self.period)
            / sum
    }
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// RITA's (skew score + MAD score) / 2 over sorted values: Bowley skew forced to 0 when
/// the interquartile range is under 10 or the median sits on a quartile; MAD score
/// `(median − MAD) / median` (RITA, in whole seconds, gives 1 below a 1 s median; with
/// microseconds the MAD means something there too, and 0 bytes scores 1).
fn skew_mad(sorted: &[f64]) -> f64 {
    if sorted.len() < 3 {
        return 0.0;
    }
    let (q1, q2, q3) = (
        quantile(sorted, 0.25),
        quantile(sorted, 0.5),
        quantile(sorted, 0.75),
    );
    let skew = if q3 - q1 < 10.0 || q2 == q1 || q2 == q3 {
        0.0
    } else {
        (q1 + q3 - 2.0 * q2) / (q3 - q1)
    };
    let mut dev: Vec<f64> = sorted.iter().map(|x| (x - q2).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = quantile(&dev, 0.5);
    let mad_score = if q2 <= 0.0 {
        f64::from(u8::from(mad <= 0.0))
    } else {
        ((q2 - mad) / q2).max(0.0)
    };
    ((1.0 - skew.abs()).clamp(0.0, 1.0) + mad_score) / 2.0
}

/// RITA's histogram and duration scores over equal bins spanning the window: 24 (RITA's
/// hours of a day) once the series has 96 connections, fewer (a quarter of the
/// connections, at least 4) before, so a short series is not judged by empty bins.
/// Histogram = max(1 − CV of the bin counts, bimodal fit when ≥ 11/24 of the bins are
/// used); duration (when ≥ a quarter of the bins are used, else 0) = max(coverage of the
/// window by the series, longest run of used bins (wrapping) over half the bins).
fn histogram(times: &[f64], start: f64, window: f64) -> (f64, f64) {
    let nb = (times.len() / 4).clamp(4, 24);
    let mut bins = [0u32; 24];
    let bins = &mut bins[..nb];
    let width = (window / nb as f64).max(1e-9);
    for t in times {
        let i = (((t - start) / width) as usize).min(nb - 1);
        bins[i] += 1;
    }
    let n = nb as f64;
    let mean = bins.iter().map(|b| f64::from(*b)).sum::<f64>() / n;
    let var = bins
        .iter()
        .map(|b| (f64::from(*b) - mean).powi(2))
        .sum::<f64>()
        / n;
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 1.0 };
    let cv_score = if cv > 1.0 { 0.0 } else { 1.0 - cv };
    let used = bins.iter().filter(|b| **b > 0).count();
    let mut hist = cv_score;
    if used * 24 >= 11 * nb {
        // Bimodal fit: bar heights bucketed by 5 % of the tallest; the two commonest
        // heights over the used bars (one outlier allowed).
        let max = bins.iter().copied().max().unwrap_or(0);
        let step = (f64::from(max) * 0.05).ceil().max(1.0);
        let mut freq: BTreeMap<u64, usize> = BTreeMap::new();
        for b in bins.iter().filter(|b| **b > 0) {
            *freq
                .entry((f64::from(*b) / step).floor() as u64)
                .or_default() += 1;
        }
        let mut f: Vec<usize> = freq.into_values().collect();
        f.sort_unstable_by(|a, b| b.cmp(a));
        let top2 = f.iter().take(2).sum::<usize>() as f64;
        let fit = (top2 / (used as f64 - 1.0).max(1.0)).min(1.0);
        hist = hist.max(fit);
    }
    let dur = if used * 4 >= nb {
        let coverage = if window > 0.0 {
            ((times[times.len() - 1] - times[0]) / window).min(1.0)
        } else {
            0.0
        };
        let mut best = 0;
        let mut run = 0;
        for i in 0..2 * nb {
            if bins[i % nb] > 0 {
                run += 1;
                best = best.max(run.min(nb));
            } else {
                run = 0;
            }
        }
        coverage.max((best as f64 / (nb as f64 / 2.0)).min(1.0))
    } else {
        0.0
    };
    (hist, dur)
}

impl Detector for Beacon {
    fn advance(&mut self, now: Timestamp, _out: &mut Vec<Alert>) {
        // Once an hour of packet time, forget series quiet for longer than the window
        // and pairs with nothing open that never reached a bucket.
        let now = now.as_secs_f64_micros();
        if now - self.pruned < 3600.0 {
            return;
        }
        self.pruned = now;
        let horizon = now - WINDOW_MAX;
        self.series
            .retain(|_, s| s.last_start().is_some_and(|t| t >= horizon));
        self.pairs.retain(|_, p| !p.live.is_empty() || p.bucket > 0);
    }

    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let t = r.ts.as_secs_f64_micros();
        self.start = Some(self.start.map_or(t, |s| s.min(t)));
        self.now = self.now.max(r.last_ts.as_secs_f64_micros());
        if self.on[2] {
            self.long(r, out);
        }
        // A connection counts once: at its first record.
        let new = if r.cause == Cause::Status {
            self.live.insert(r.uid.clone())
        } else {
            // Nearly always empty (no interim records): no need to hash the uid.
            self.live.is_empty() || !self.live.remove(&r.uid)
        };
        if new && (self.on[0] || self.on[1]) {
            self.add(r, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Alert>) {
        if !self.on[0] {
            return;
        }
        // In key order (kind, client, text): the same alerts in the same order on
        // every run, whatever the hash seed.
        let mut keys: Vec<(Key, &str)> = self
            .series
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Many(s) if k.0 != Kind::Url && s.n >= self.cfg.min_connections => {
                    Some((*k, s.text.as_str()))
                }
                _ => None,
            })
            .collect();
        keys.sort_by(|a, b| (a.0 .0, a.0 .1, a.1).cmp(&(b.0 .0, b.0 .1, b.1)));
        let keys: Vec<Key> = keys.into_iter().map(|(k, _)| k).collect();
        for k in keys {
            self.score(&k, out);
        }
    }

    fn untracked(&self) -> u64 {
        self.untracked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_mad_is_one_for_a_clock_and_low_for_exponential_gaps() {
        let clock: Vec<f64> = (0..20).map(|_| 60.0).collect();
        assert_eq!(skew_mad(&clock), 1.0);
        // Exponential-like gaps (a person browsing): MAD near half the median.
        let mut exp: Vec<f64> = (1..40)
            .map(|i| -60.0 * (1.0 - f64::from(i) / 40.0).ln())
            .collect();
        exp.sort_by(f64::total_cmp);
        assert!(skew_mad(&exp) < 0.7, "{}", skew_mad(&exp));
    }

    #[test]
    fn servers_are_a_set_with_the_least_first() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..500 {
            let (mut ours, mut set) = (Servers::default(), BTreeSet::new());
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let a: IpAddr = if x % 3 == 0 {
                    IpAddr::V6(std::net::Ipv6Addr::from(u128::from(x % 5)))
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::from((x % 7) as u32))
                };
                ours.insert(a);
                set.insert(a);
                assert_eq!(ours.len(), set.len());
                assert_eq!(ours.least, set.first().copied());
                let all: Vec<IpAddr> = ours.least.into_iter().chain(ours.rest.clone()).collect();
                assert_eq!(all, set.iter().copied().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn strip_port_keeps_names_and_v6() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[fd00::1]:80"), "fd00::1");
        assert_eq!(strip_port("fd00::1"), "fd00::1");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
