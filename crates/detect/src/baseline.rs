//! Learnt behaviour: what each client does with each server, per period of the day,
//! and the seed's three ways of noticing when that changes (seed 000 parts 1.3.3, 2.3,
//! 2.6 and its false-positive section; seed 002's mean + k·σ with several metrics
//! agreeing).
//!
//! Final flow records are tallied per hour (the slot length is configurable) under two
//! keys: the pair (client, server, server port) and the client alone, with the seed's
//! 2.3 metrics — connections, bytes out (sent by the client) and in, packets,
//! connection uptime (the connections' durations added up), channel uptime (first
//! start to last end of the key's flows in the hour) and, for clients, distinct servers.
//! When an hour closes (`lateness` seconds of packet time after its end, so flows that
//! ended late are in), its values are folded into the key's profile for that slot of
//! the cycle (hour of day, or hour of week), hours without activity counting as zeros:
//! a weighted mean and variance per metric, the last 32 hours' values (for the guess
//! method's comparisons and a median), connections and burst events.
//!
//! Methods, each raised at most once per key and hour, while the hour runs (a tunnel
//! can move a lot in four hours):
//! - `baseline_statistical` (pure statistical): running values above the learnt mean
//!   + k·σ in at least `agree` metrics (seed 002), each by at least its floor;
//! - `baseline_guess` (the seed's "guess the next hour"): running values above the
//!   learnt average and above more than `guess_share` (75 %) of the learnt hours, in
//!   at least `agree` metrics;
//! - `baseline_probability` (probabilistic): the share of the pair's connections that
//!   completed a burst event (≥ `burst_connections` connections carrying ≥
//!   `burst_bytes` within `burst_window` — the seed's "more than 5 connections in 5
//!   minutes over 1 MB") is above the learnt share;
//! - `baseline_static` (seed 2.6's static pre-configuration): hourly limits per client,
//!   server, network or port from the configuration, with or without learning.
//!
//! Severities come from the margin over the learnt reference (seed: over 10 % medium,
//! over 30 % high). A profile may alarm only after `min_history` learnt hours of its slot;
//! pairs never seen while learning are judged at the client level only. Hours that
//! alarmed are not folded into the profile (it does not absorb a tunnel), and after
//! learning an hour counts `adapt` times the profile's weight (an exponential moving
//! average: it follows slow change). Learning assumes clean traffic: mean + k·σ is not
//! robust to a tunnel during the learning period (the median and MAD of the last
//! hours are in the evidence for the analyst).
//!
//! Deterministic: time is the records' packet time; state is bounded by `max_keys`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tunnelwatch_model::{Alert, Cause, FlowRecord, Severity, Timestamp};

use crate::net::{addr_order, AddrOrder, Net};
use crate::{round3, AlertBuilder, Detector, FastMap, FastSet};

/// The metrics, in the order of the value arrays.
pub const METRICS: [&str; 7] = [
    "connections",
    "out_bytes",
    "in_bytes",
    "packets",
    "connection_uptime",
    "channel_uptime",
    "distinct_servers",
];
const M: usize = METRICS.len();
const SERVERS: usize = 6;
/// Values kept per profile for the guess method.
pub const RECENT: usize = 32;

/// The cycle period slots repeat over.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Cycle {
    /// The slot of the day (the seed's modulo-day periods).
    #[default]
    Day,
    /// The slot of the week (weekends apart).
    Week,
}

/// `[baseline]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Slot length in seconds (3600: hour of day).
    pub slot_seconds: u32,
    /// Over what the slots repeat.
    pub cycle: Cycle,
    /// Learnt hours of a slot before its profiles may alarm.
    pub min_history: f64,
    /// σ multiplier of the statistical method (seed 002: k).
    pub k: f64,
    /// Metrics that must agree (statistical and guess methods).
    pub agree: usize,
    /// Margin over the reference for medium (seed: 10 %).
    pub medium_margin: f64,
    /// Margin over the reference for high (seed: 30 %).
    pub high_margin: f64,
    /// Share of learnt hours the running hour must exceed (guess method; seed: 75 %).
    pub guess_share: f64,
    /// After learning, an hour is folded in with this share of the profile's weight
    /// (an exponential moving average), against 1 for a learning hour.
    pub adapt: f64,
    /// Seconds after an hour's end before it closes (flows end after their last packet).
    pub lateness: f64,
    /// Smallest excess over the learnt mean that counts, per metric (connections,
    /// bytes out, bytes in, packets, connection uptime s, channel uptime s, servers).
    pub floors: [f64; M],
    /// Burst events: connections of a pair within this many seconds…
    pub burst_window: f64,
    /// …at least this many…
    pub burst_connections: usize,
    /// …carrying at least this many bytes from the client.
    pub burst_bytes: u64,
    /// Keys with profiles at most (new ones beyond are not learnt, counted).
    pub max_keys: usize,
    /// Static hourly limits (seed 2.6), checked with or without learning.
    #[serde(rename = "static")]
    pub statics: Vec<StaticLimit>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            slot_seconds: 3600,
            cycle: Cycle::Day,
            min_history: 3.0,
            k: 3.0,
            agree: 2,
            medium_margin: 0.10,
            high_margin: 0.30,
            guess_share: 0.75,
            adapt: 0.2,
            lateness: 600.0,
            floors: [5.0, 65536.0, 65536.0, 100.0, 60.0, 300.0, 5.0],
            burst_window: 300.0,
            burst_connections: 5,
            burst_bytes: 1_000_000,
            max_keys: 100_000,
            statics: Vec::new(),
        }
    }
}

impl BaselineConfig {
    /// What must not change between learning and detection: profiles learnt with
    /// another slot length or cycle are not comparable.
    pub fn scheme(&self) -> Scheme {
        Scheme {
            slot_seconds: self.slot_seconds,
            cycle: self.cycle,
        }
    }

    /// Slots in one cycle.
    pub fn slots(&self) -> i64 {
        let cycle = match self.cycle {
            Cycle::Day => 86_400,
            Cycle::Week => 7 * 86_400,
        };
        (cycle / i64::from(self.slot_seconds.max(1))).max(1)
    }
}

/// How slots are cut: stored with the profiles and checked when they are loaded.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Scheme {
    /// Slot length in seconds.
    pub slot_seconds: u32,
    /// Cycle.
    pub cycle: Cycle,
}

/// A static hourly limit: every field given must match; every limit given is checked.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticLimit {
    /// The client is in this network.
    pub client: Option<Net>,
    /// The server is in this network (the limit then applies per pair).
    pub server: Option<Net>,
    /// The server port (the limit then applies per pair).
    pub port: Option<u16>,
    /// Connections per hour.
    pub connections: Option<f64>,
    /// Bytes sent by the client per hour.
    pub out_bytes: Option<f64>,
    /// Bytes received by the client per hour.
    pub in_bytes: Option<f64>,
    /// Packets per hour.
    pub packets: Option<f64>,
    /// Seconds of connections per hour.
    pub connection_uptime: Option<f64>,
    /// Seconds from the first start to the last end in the hour.
    pub channel_uptime: Option<f64>,
    /// Distinct servers per hour (client limits).
    pub distinct_servers: Option<f64>,
    /// Why the limit exists (shown in alerts).
    pub note: Option<String>,
}

impl StaticLimit {
    fn limits(&self) -> [Option<f64>; M] {
        [
            self.connections,
            self.out_bytes,
            self.in_bytes,
            self.packets,
            self.connection_uptime,
            self.channel_uptime,
            self.distinct_servers,
        ]
    }

    fn per_pair(&self) -> bool {
        self.server.is_some() || self.port.is_some()
    }

    fn matches(&self, k: &ProfileKey) -> bool {
        self.client.as_ref().is_none_or(|n| n.contains(k.client))
            && self
                .server
                .as_ref()
                .is_none_or(|n| k.server.is_some_and(|s| n.contains(s)))
            && self.port.is_none_or(|p| k.port == Some(p))
            && self.per_pair() == k.server.is_some()
    }
}

/// Whose behaviour a profile holds: a client with one server port, or a client.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProfileKey {
    /// The client (originator).
    pub client: IpAddr,
    /// The server, for pair profiles.
    pub server: Option<IpAddr>,
    /// The server port, for pair profiles.
    pub port: Option<u16>,
}

impl ProfileKey {
    /// Numbers in the keys' order (`Ord`: IPv4 before IPv6, `None` first).
    fn order(&self) -> (AddrOrder, Option<AddrOrder>, Option<u16>) {
        (
            addr_order(self.client),
            self.server.map(addr_order),
            self.port,
        )
    }

    fn describe(&self) -> String {
        match (self.server, self.port) {
            (Some(s), Some(p)) => format!("{} -> {s}:{p}", self.client),
            _ => format!("client {}", self.client),
        }
    }
}

/// What was learnt for one key in one slot.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SlotProfile {
    /// Weight of the hours folded in (a learning hour weighs 1).
    pub weight: f64,
    /// Weighted mean per metric.
    pub mean: [f64; M],
    /// Weighted sum of squared deviations per metric.
    pub m2: [f64; M],
    /// The last hours' values, oldest first (at most [`RECENT`]).
    pub recent: Vec<[f64; M]>,
    /// Connections seen (weighted), for the probabilistic method.
    pub connections: f64,
    /// Burst events seen (weighted).
    pub bursts: f64,
}

impl SlotProfile {
    fn fold(&mut self, v: &[f64; M], w: f64, conns: f64, bursts: f64) {
        let total = self.weight + w;
        for ((x, mean), m2) in v.iter().zip(&mut self.mean).zip(&mut self.m2) {
            let d = x - *mean;
            *mean += d * w / total;
            *m2 += w * d * (x - *mean);
        }
        self.weight = total;
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push(*v);
        self.connections += w * conns;
        self.bursts += w * bursts;
    }

    /// Median and median absolute deviation of metric `i` over the last hours (the
    /// robust pair, shown next to mean and σ: a tunnel learnt by mistake moves the
    /// mean, not the median).
    pub fn median_mad(&self, i: usize) -> (f64, f64) {
        fn median(v: &mut [f64]) -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        }
        let mut v: Vec<f64> = self.recent.iter().map(|h| h[i]).collect();
        let m = median(&mut v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
        (m, median(&mut dev))
    }

    /// Standard deviation of metric `i`.
    pub fn sd(&self, i: usize) -> f64 {
        if self.weight > 0.0 {
            (self.m2[i].max(0.0) / self.weight).sqrt()
        } else {
            0.0
        }
    }
}

/// Everything learnt: per slot, how much time was observed; per key and slot, the
/// profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profiles {
    /// Weight of observed hours per slot (the sensor saw traffic in them).
    pub slots: HashMap<u32, f64>,
    /// Profiles (keyed by traffic: foldhash, seeded per map).
    pub keys: HashMap<ProfileKey, HashMap<u32, SlotProfile>, foldhash::fast::RandomState>,
}

/// Learning or detecting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Fold every hour with weight 1, raise nothing (`tunnelwatch learn`).
    Learn,
    /// Learn with weight 1 and raise nothing until this time, then detect.
    LearnUntil(Timestamp),
    /// Learn for this many seconds from the first record, then detect
    /// (`--learning-period`).
    LearnFor(f64),
    /// Raise alerts; fold quiet hours with weight `adapt`.
    Detect,
}

/// One key's running hour.
#[derive(Default)]
struct Tally {
    v: [f64; M],
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    servers: FastSet<IpAddr>,
    bursts: u32,
    window: VecDeque<(Timestamp, u64)>,
    /// The bytes of `window`.
    window_bytes: u64,
    /// Alerted per method (statistical, guess, probability, static).
    alerted: [bool; 4],
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaselineStats {
    /// Hours closed and folded.
    pub hours: u64,
    /// Records that came after their hour had closed (not counted).
    pub late: u64,
    /// New keys not learnt because `max_keys` profiles exist, and records not tallied
    /// because an hour already tracked twice `max_keys` keys.
    pub refused: u64,
}

/// The detector.
pub struct Baseline {
    cfg: BaselineConfig,
    on: [bool; 4],
    mode: Mode,
    profiles: Profiles,
    /// Running hours (absolute slot index) → tallies, boxed: a growing map moves
    /// pointers, not ~200-byte tallies (`detect/baseline` ~20 % faster).
    hours: HashMap<i64, FastMap<ProfileKey, Box<Tally>>>,
    closed_before: i64,
    stats: BaselineStats,
    /// Whether the profiles are wanted after the run (see [`Baseline::set_keep_profiles`]).
    keep_profiles: bool,
}

const RULE: [&str; 4] = [
    "baseline_statistical",
    "baseline_guess",
    "baseline_probability",
    "baseline_static",
];

impl Baseline {
    /// The detector with `config`'s settings, detecting, with no profiles.
    pub fn new(config: &crate::Config) -> Self {
        Baseline {
            cfg: config.baseline.clone(),
            on: RULE.map(|r| config.enabled(r)),
            mode: Mode::Detect,
            profiles: Profiles::default(),
            hours: HashMap::new(),
            closed_before: i64::MIN,
            stats: BaselineStats::default(),
            keep_profiles: true,
        }
    }

    /// Whether the profiles are wanted after the run (the default). When they are not
    /// (`read --no-store` throws them away), the last hour still running at the end is
    /// counted as closed — hours, keys refused — but not folded into profiles nobody
    /// reads: at the end of a large capture that fold is most of detection's tail.
    pub fn set_keep_profiles(&mut self, keep: bool) {
        self.keep_profiles = keep;
    }

    /// Learn or detect from now on.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// The profiles (to store them).
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Replaces the profiles (loaded from the store).
    pub fn set_profiles(&mut self, p: Profiles) {
        self.profiles = p;
    }

    /// Takes the profiles out (to store them at the end of a run).
    pub fn take_profiles(&mut self) -> Profiles {
        std::mem::take(&mut self.profiles)
    }

    /// The configuration the profiles are learnt with.
    pub fn config(&self) -> &BaselineConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &BaselineStats {
        &self.stats
    }

    fn slot_index(&self, t: Timestamp) -> i64 {
        t.as_nanos()
            .div_euclid(i64::from(self.cfg.slot_seconds.max(1)) * 1_000_000_000)
    }

    /// The slot of the cycle an absolute slot index falls in (weeks start on
    /// Thursday 1970-01-01, which is as good a start as any).
    fn slot_of(&self, index: i64) -> u32 {
        index.rem_euclid(self.cfg.slots()) as u32
    }

    fn learning(&self, t: Timestamp) -> bool {
        match self.mode {
            Mode::Learn => true,
            Mode::LearnUntil(end) => t < end,
            Mode::LearnFor(_) => true,
            Mode::Detect => false,
        }
    }

    fn close(&mut self, index: i64) {
        let Some(tallies) = self.hours.remove(&index) else {
            return;
        };
        self.stats.hours += 1;
        let end = Timestamp((index + 1) * i64::from(self.cfg.slot_seconds) * 1_000_000_000);
        let learning = self.learning(end.add_nanos(-1));
        // A learning hour weighs 1; after learning an hour weighs `adapt` times what the
        // profile has learnt (an exponential moving average: slow change is followed).
        let adapt = self.cfg.adapt;
        let weight = move |learnt: f64| {
            if learning {
                1.0
            } else {
                adapt * learnt.max(1.0)
            }
        };
        let slot = self.slot_of(index);
        let before = self.profiles.slots.get(&slot).copied().unwrap_or(0.0);
        *self.profiles.slots.entry(slot).or_default() += weight(before);
        // Keys with a profile in this slot but quiet this hour: a zero hour.
        for (key, slots) in self.profiles.keys.iter_mut() {
            if let Some(p) = slots.get_mut(&slot) {
                if !tallies.contains_key(key) {
                    p.fold(&[0.0; M], weight(p.weight), 0.0, 0.0);
                }
            }
        }
        // In key order; sorting references, not the tallies (~200 bytes each), by
        // numbers that order as the keys do (comparing addresses is slow).
        let mut order: Vec<_> = tallies.iter().map(|(k, t)| (k.order(), *k, &**t)).collect();
        order.sort_unstable_by_key(|a| a.0);
        for (_, key, t) in order {
            if t.alerted[..3].iter().any(|a| *a) && !learning {
                // An hour that alarmed is not learnt: no absorbing a tunnel. Its
                // slot weight still grew, so it counts as an unknown hour.
                continue;
            }
            let known = self.profiles.keys.len();
            let max = self.cfg.max_keys;
            let slots = match self.profiles.keys.get_mut(&key) {
                Some(s) => s,
                None if known < max => self.profiles.keys.entry(key).or_default(),
                None => {
                    self.stats.refused += 1;
                    continue;
                }
            };
            let p = slots.entry(slot).or_insert_with(|| {
                // First activity in this slot: the hours observed before were zeros.
                let mut p = SlotProfile::default();
                for _ in 0..(before.round() as usize).min(RECENT) {
                    p.recent.push([0.0; M]);
                }
                p.weight = before;
                p
            });
            let v = values(t);
            p.fold(&v, weight(p.weight), t.v[0], f64::from(t.bursts));
        }
    }

    /// What [`Baseline::close`] would count for hour `index`, without folding it: the
    /// hour, and its new keys beyond `max_keys` (refused; which of them would be learnt
    /// does not matter when no hour closes after it). A tally that alarmed is skipped
    /// by `close`, but only keys with a profile can alarm, and those are not new.
    fn count_close(&mut self, index: i64) {
        let Some(tallies) = self.hours.remove(&index) else {
            return;
        };
        self.stats.hours += 1;
        let new = tallies
            .keys()
            .filter(|k| !self.profiles.keys.contains_key(k))
            .count();
        let room = self.cfg.max_keys.saturating_sub(self.profiles.keys.len());
        self.stats.refused += new.saturating_sub(room) as u64;
    }

    fn reference(&self, key: &ProfileKey, slot: u32) -> Option<&SlotProfile> {
        if self.profiles.slots.get(&slot).copied().unwrap_or(0.0) < self.cfg.min_history {
            return None;
        }
        let p = self.profiles.keys.get(key)?.get(&slot)?;
        // A profile needs activity in its history to say what is normal.
        p.recent
            .iter()
            .any(|v| v[0] > 0.0)
            .then_some(p)
            .filter(|p| p.weight >= self.cfg.min_history)
    }

    fn severity(&self, margin: f64) -> Severity {
        if margin > self.cfg.high_margin {
            Severity::High
        } else if margin > self.cfg.medium_margin {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    fn judge(&mut self, index: i64, key: ProfileKey, r: &FlowRecord, out: &mut Vec<Alert>) {
        let slot = self.slot_of(index);
        let pair = key.server.is_some();
        let metrics = if pair { SERVERS } else { M };
        let Some(t) = self.hours.get(&index).and_then(|h| h.get(&key)) else {
            return;
        };
        let alerted = t.alerted;
        let reference = self.reference(&key, slot);
        let statics = self.on[3] && !alerted[3] && self.cfg.statics.iter().any(|s| s.matches(&key));
        if reference.is_none() && !statics {
            return; // nothing to judge against: no work per record
        }
        let v = values(t);
        let mut raised = [false; 4];
        let cfg = &self.cfg;
        let what = key.describe();
        let slot_name = self.slot_name(slot);
        if let Some(p) = reference {
            // Pure statistical: mean + k·σ.
            if self.on[0] && !alerted[0] {
                let mut agreeing = Vec::new();
                for (i, x) in v.iter().enumerate().take(metrics) {
                    let reference = p.mean[i] + cfg.k * p.sd(i);
                    if *x > reference && x - p.mean[i] >= cfg.floors[i] {
                        let margin = (x - reference) / reference.max(cfg.floors[i]);
                        agreeing.push((i, reference, margin));
                    }
                }
                if agreeing.len() >= cfg.agree {
                    let margin = agreeing.iter().map(|a| a.2).fold(0.0, f64::max);
                    let mut b = self.alert(0, r, margin, format!(
                        "{what}: {} in this hour above the learnt mean + {}σ for slot {slot_name} ({})",
                        agreeing.len(),
                        cfg.k,
                        agreeing
                            .iter()
                            .map(|(i, reference, _)| format!("{} {} > {}", METRICS[*i], round3(v[*i]), round3(*reference)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    for (i, reference, m) in &agreeing {
                        b = b
                            .evidence(&format!("{}_running", METRICS[*i]), round3(v[*i]))
                            .evidence(&format!("{}_learnt_mean", METRICS[*i]), round3(p.mean[*i]))
                            .evidence(&format!("{}_learnt_sd", METRICS[*i]), round3(p.sd(*i)))
                            .evidence(
                                &format!("{}_learnt_median", METRICS[*i]),
                                round3(p.median_mad(*i).0),
                            )
                            .evidence(
                                &format!("{}_learnt_mad", METRICS[*i]),
                                round3(p.median_mad(*i).1),
                            )
                            .evidence(&format!("{}_reference", METRICS[*i]), round3(*reference))
                            .evidence(&format!("{}_margin", METRICS[*i]), round3(*m));
                    }
                    out.push(self.finish_alert(b, &key, &slot_name, p, "statistical"));
                    raised[0] = true;
                }
            }
            // Guess the next hour: above the average and above most learnt hours.
            if self.on[1] && !alerted[1] && !p.recent.is_empty() {
                let mut agreeing = Vec::new();
                for i in 0..metrics {
                    let below = p.recent.iter().filter(|h| h[i] < v[i]).count();
                    let share = below as f64 / p.recent.len() as f64;
                    let max = p.recent.iter().map(|h| h[i]).fold(0.0, f64::max);
                    if v[i] > p.mean[i]
                        && share > cfg.guess_share
                        && v[i] - p.mean[i] >= cfg.floors[i]
                    {
                        agreeing.push((i, share, max));
                    }
                }
                if agreeing.len() >= cfg.agree {
                    // The margin over the highest learnt hour balances the guess.
                    let margin = agreeing
                        .iter()
                        .map(|(i, _, max)| (v[*i] - max) / max.max(cfg.floors[*i]))
                        .fold(f64::MIN, f64::max)
                        .max(0.0);
                    let mut b = self.alert(1, r, margin, format!(
                        "{what}: guess for slot {slot_name} was wrong — {} above the learnt average and above more than {:.0}% of the learnt hours ({})",
                        agreeing.len(),
                        cfg.guess_share * 100.0,
                        agreeing
                            .iter()
                            .map(|(i, share, _)| format!("{} {} > {:.0}% of hours", METRICS[*i], round3(v[*i]), share * 100.0))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    for (i, share, max) in &agreeing {
                        b = b
                            .evidence(&format!("{}_running", METRICS[*i]), round3(v[*i]))
                            .evidence(
                                &format!("{}_learnt_average", METRICS[*i]),
                                round3(p.mean[*i]),
                            )
                            .evidence(&format!("{}_learnt_max", METRICS[*i]), round3(*max))
                            .evidence(&format!("{}_share_exceeded", METRICS[*i]), round3(*share));
                    }
                    out.push(self.finish_alert(b, &key, &slot_name, p, "guess"));
                    raised[1] = true;
                }
            }
            // Probabilistic: the share of connections that completed a burst.
            if pair && self.on[2] && !alerted[2] && t.bursts > 0 && v[0] > 0.0 {
                let learnt = (p.bursts + 1.0) / (p.connections + 2.0);
                let running = f64::from(t.bursts) / v[0];
                let margin = running / learnt - 1.0;
                if margin > cfg.medium_margin {
                    let b = self
                        .alert(2, r, margin, format!(
                            "{what}: {} of {} connections in this hour were bursts of ≥ {} connections carrying ≥ {} bytes within {} s; learnt share for slot {slot_name} {:.3}",
                            t.bursts, v[0], cfg.burst_connections, cfg.burst_bytes, cfg.burst_window, learnt
                        ))
                        .evidence("bursts_running", t.bursts)
                        .evidence("connections_running", v[0])
                        .evidence("share_running", round3(running))
                        .evidence("share_learnt", round3(learnt))
                        .evidence("bursts_learnt", round3(p.bursts))
                        .evidence("connections_learnt", round3(p.connections))
                        .evidence("margin", round3(margin));
                    out.push(self.finish_alert(b, &key, &slot_name, p, "probabilistic"));
                    raised[2] = true;
                }
            }
        }
        // Static limits, learnt or not.
        if statics {
            if let Some((limit, i, lim)) = self
                .cfg
                .statics
                .iter()
                .filter(|s| s.matches(&key))
                .flat_map(|s| {
                    s.limits()
                        .into_iter()
                        .enumerate()
                        .filter_map(move |(i, l)| Some((s, i, l?)))
                })
                .find(|(_, i, lim)| *i < metrics && v[*i] > *lim)
            {
                let margin = (v[i] - lim) / lim.max(f64::MIN_POSITIVE);
                let b = self
                    .alert(
                        3,
                        r,
                        margin,
                        format!(
                            "{what}: {} {} in this hour above the configured {}{}",
                            METRICS[i],
                            round3(v[i]),
                            round3(lim),
                            limit
                                .note
                                .as_deref()
                                .map(|n| format!(" ({n})"))
                                .unwrap_or_default()
                        ),
                    )
                    .evidence("metric", METRICS[i])
                    .evidence("running", round3(v[i]))
                    .evidence("limit", round3(lim))
                    .evidence("margin", round3(margin))
                    .evidence("method", "static");
                out.push(b.build());
                raised[3] = true;
            }
        }
        if let Some(t) = self.hours.get_mut(&index).and_then(|h| h.get_mut(&key)) {
            for (a, r) in t.alerted.iter_mut().zip(raised) {
                *a |= r;
            }
        }
    }

    fn slot_name(&self, slot: u32) -> String {
        let secs = i64::from(slot) * i64::from(self.cfg.slot_seconds);
        let day = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(secs / 86_400) as usize % 7];
        let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
        match self.cfg.cycle {
            Cycle::Day => format!("{h:02}:{m:02} UTC"),
            Cycle::Week => format!("{day} {h:02}:{m:02} UTC"),
        }
    }

    fn alert(&self, method: usize, r: &FlowRecord, margin: f64, message: String) -> AlertBuilder {
        let sev = self.severity(margin);
        AlertBuilder::new(
            RULE[method],
            r.last_ts,
            sev,
            crate::severity_score(sev),
            message,
        )
        .flow(r)
    }

    fn finish_alert(
        &self,
        b: AlertBuilder,
        key: &ProfileKey,
        slot: &str,
        p: &SlotProfile,
        method: &str,
    ) -> Alert {
        let mut b = b
            .evidence("method", method)
            .evidence("slot", slot)
            .evidence("learnt_hours", round3(p.weight))
            .evidence("key", key.describe());
        if key.server.is_none() {
            b = b.evidence("scope", "client");
        } else {
            b = b.evidence("scope", "pair");
        }
        b.build()
    }
}

fn values(t: &Tally) -> [f64; M] {
    let mut v = t.v;
    v[5] = match (t.first, t.last) {
        (Some(a), Some(b)) => b.nanos_since(a).max(0) as f64 / 1e9,
        _ => 0.0,
    };
    v[6] = t.servers.len() as f64;
    v
}

impl Detector for Baseline {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if r.cause == Cause::Status {
            return; // hours are made of connections that ended
        }
        if let Mode::LearnFor(secs) = self.mode {
            self.mode = Mode::LearnUntil(r.ts.add_nanos((secs * 1e9) as i64));
        }
        let index = self.slot_index(r.last_ts);
        self.advance(r.last_ts, out);
        if index < self.closed_before {
            self.stats.late += 1;
            return;
        }
        let learning = self.learning(r.last_ts);
        let (window, need, bytes) = (
            (self.cfg.burst_window * 1e9) as i64,
            self.cfg.burst_connections,
            self.cfg.burst_bytes,
        );
        let pair = ProfileKey {
            client: r.orig_h,
            server: Some(r.resp_h),
            port: Some(r.resp_p),
        };
        let client = ProfileKey {
            client: r.orig_h,
            server: None,
            port: None,
        };
        let hour = self.hours.entry(index).or_default();
        // Bounded under floods: an hour tracks at most twice `max_keys` keys.
        let room = hour.len() + 2 <= 2 * self.cfg.max_keys;
        let known =
            |h: &FastMap<ProfileKey, Box<Tally>>| h.contains_key(&pair) && h.contains_key(&client);
        if !(room || known(hour)) {
            self.stats.refused += 1;
            return;
        }
        // Whether the pair is new to this hour: only then can its server be new to the
        // client's (the pair's tally is made first, by the record that adds its server
        // unless the set is full, and sets only grow within an hour).
        let mut new_pair = false;
        for key in [pair, client] {
            let t = match hour.entry(key) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    new_pair |= key.server.is_some();
                    v.insert(Box::default())
                }
            };
            t.v[0] += 1.0;
            t.v[1] += r.orig_bytes as f64;
            t.v[2] += r.resp_bytes as f64;
            t.v[3] += (r.orig_pkts + r.resp_pkts) as f64;
            t.v[4] += r.duration;
            t.first = Some(t.first.map_or(r.ts, |f| f.min(r.ts)));
            t.last = Some(t.last.map_or(r.last_ts, |l| l.max(r.last_ts)));
            if key.server.is_none() {
                if new_pair && t.servers.len() < 4096 {
                    t.servers.insert(r.resp_h);
                }
            } else {
                // Burst events (the seed's probabilistic example), then reset.
                t.window.push_back((r.ts, r.orig_bytes));
                t.window_bytes = t.window_bytes.saturating_add(r.orig_bytes);
                while let Some(&(ts, b)) = t.window.front() {
                    if r.ts.nanos_since(ts) <= window {
                        break;
                    }
                    t.window.pop_front();
                    t.window_bytes -= b;
                }
                if t.window.len() >= need && t.window_bytes >= bytes {
                    t.bursts += 1;
                    t.window.clear();
                    t.window_bytes = 0;
                }
            }
        }
        // Nothing to judge against (no key has a profile, no static limit is set): no
        // lookups per record.
        let statics = self.on[3] && !self.cfg.statics.is_empty();
        if !learning && (statics || !self.profiles.keys.is_empty()) {
            self.judge(index, pair, r, out);
            self.judge(index, client, r, out);
        }
    }

    fn advance(&mut self, now: Timestamp, _out: &mut Vec<Alert>) {
        let late = (self.cfg.lateness * 1e9) as i64;
        let open_from = self.slot_index(now.add_nanos(-late));
        // Oldest first; a few running hours at most, and usually none due.
        while let Some(h) = self.hours.keys().copied().filter(|h| *h < open_from).min() {
            self.close(h);
        }
        self.closed_before = self.closed_before.max(open_from);
    }

    fn finish(&mut self, _out: &mut Vec<Alert>) {
        let mut due: Vec<i64> = self.hours.keys().copied().collect();
        due.sort_unstable();
        let last = due.pop();
        for h in due {
            self.close(h);
        }
        match last {
            Some(h) if !self.keep_profiles => self.count_close(h),
            Some(h) => self.close(h),
            None => {}
        }
    }

    fn untracked(&self) -> u64 {
        self.stats.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_numbers_order_as_the_keys() {
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "10.0.0.1",
            "10.0.0.2",
            "255.255.255.255",
            "::",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "ffff::",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut keys = Vec::new();
        for &client in &addrs {
            for server in std::iter::once(None).chain(addrs.iter().copied().map(Some)) {
                for port in [None, Some(0), Some(80), Some(65535)] {
                    keys.push(ProfileKey {
                        client,
                        server,
                        port,
                    });
                }
            }
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(a.order().cmp(&b.order()), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }
}
