//! Seed 004's second stage: findings are queued per (source, destination, rule) with
//! the destination port of each, and summarised once per period of packet time into
//! one alert with the ports and their counts.
//!
//! Periods are aligned to multiples of their length, and a finding belongs to the
//! period of its flow's first packet, so the same records give the same summaries in
//! any order (as `--threads` delivers them). A period is summarised once packet time
//! has passed its end by the configured lateness (flows that started in it may end
//! later), or at the end of the input. The queue holds at most [`MAX_KEYS`] keys;
//! findings beyond are counted, not kept.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tunnelwatch_model::{FlowRecord, Timestamp};

/// Most (period, source, destination, rule) keys queued at once. An entry holds about
/// 600 bytes (its ports, its first uids): a spoofed flood of distinct sources filled
/// 2^20 of them, ~650 MB, for findings the flood detector sums up anyway.
pub const MAX_KEYS: usize = 1 << 18;

/// The key of one queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Period number (start time / period length).
    pub period: i64,
    /// Source (originator) address.
    pub src: IpAddr,
    /// Destination (responder) address.
    pub dst: IpAddr,
    /// Rule name.
    pub rule: &'static str,
}

/// What one key gathered.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Findings (one per flow, or the flow's packet count for header oddities).
    pub count: u64,
    /// Flows.
    pub flows: u64,
    /// Destination port → findings.
    pub ports: BTreeMap<u16, u64>,
    /// Earliest flow start.
    pub first_ts: Option<Timestamp>,
    /// Latest flow end.
    pub last_ts: Option<Timestamp>,
    /// The first flows' uids, in flow start order (kept sorted so any arrival order
    /// gives the same list).
    pub uids: FirstFlows,
}

/// The queue.
pub struct Queue {
    period_ns: i64,
    lateness_ns: i64,
    max_uids: usize,
    entries: BTreeMap<Key, Entry>,
    untracked: u64,
}

impl Queue {
    /// A queue summarising every `period` seconds, waiting `lateness` seconds past each
    /// period, keeping up to `max_uids` uids per entry.
    pub fn new(period: f64, lateness: f64, max_uids: usize) -> Self {
        Queue {
            period_ns: ((period * 1e9) as i64).max(1),
            lateness_ns: (lateness * 1e9) as i64,
            max_uids,
            entries: BTreeMap::new(),
            untracked: 0,
        }
    }

    /// Queues `n` findings of `rule` about flow `r`, sent from `src` to `dst` port
    /// `port` (the flow's originator and responder, or the reverse for what the
    /// responder sent).
    pub fn add(
        &mut self,
        rule: &'static str,
        r: &FlowRecord,
        (src, dst, port): (IpAddr, IpAddr, u16),
        n: u64,
    ) {
        let key = Key {
            period: r.ts.as_nanos().div_euclid(self.period_ns),
            src,
            dst,
            rule,
        };
        if self.entries.len() >= MAX_KEYS && !self.entries.contains_key(&key) {
            self.untracked += 1;
            return;
        }
        let e = self.entries.entry(key).or_default();
        e.count += n;
        e.flows += 1;
        *e.ports.entry(port).or_default() += n;
        e.first_ts = Some(e.first_ts.map_or(r.ts, |t| t.min(r.ts)));
        e.last_ts = Some(e.last_ts.map_or(r.last_ts, |t| t.max(r.last_ts)));
        keep_first(&mut e.uids, r, self.max_uids);
    }

    /// Entries whose period ended more than the lateness before `now`, in key order.
    pub fn due(&mut self, now: Timestamp) -> Vec<(Key, Entry)> {
        let first = |period| Key {
            period,
            src: LOWEST,
            dst: LOWEST,
            rule: "",
        };
        split_due(
            &mut self.entries,
            now,
            self.period_ns,
            self.lateness_ns,
            first,
        )
        .into_iter()
        .collect()
    }

    /// Every entry, in key order.
    pub fn drain(&mut self) -> Vec<(Key, Entry)> {
        std::mem::take(&mut self.entries).into_iter().collect()
    }

    /// The end of a key's period.
    pub fn period_end(&self, k: &Key) -> Timestamp {
        Timestamp((k.period + 1) * self.period_ns)
    }

    /// Findings not queued because the queue was full.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}

/// `port:count` pairs, `21,22:3,80` style (a count only when above one).
pub fn port_list(ports: &BTreeMap<u16, u64>) -> String {
    let mut s = String::new();
    for (p, n) in ports {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&p.to_string());
        if *n > 1 {
            s.push(':');
            s.push_str(&n.to_string());
        }
    }
    s
}

/// Flows to show in an alert: `(start, uid, community_id)`, the `max` earliest by start
/// time then uid, so any arrival order keeps the same ones.
pub type FirstFlows = Vec<(Timestamp, String, String)>;

/// The most first flows [`keep_first`] makes room for at once (`alerts.max_uids` may
/// be large; beyond this the list grows as vectors do).
const MAX_FIRST_ROOM: usize = 32;

/// Adds `r` to `uids` if it is among the `max` earliest.
pub fn keep_first(uids: &mut FirstFlows, r: &FlowRecord, max: usize) {
    // Records come mostly in time order: once the list is full, most are later than
    // its last entry.
    if uids.len() >= max
        && uids
            .last()
            .is_none_or(|u| (u.0, u.1.as_str()) < (r.ts, r.uid.as_str()))
    {
        return;
    }
    let at = uids.partition_point(|u| (u.0, u.1.as_str()) < (r.ts, r.uid.as_str()));
    if at < max {
        if uids.capacity() == 0 {
            // The room it will use (one more before the truncation), at once: growing
            // 4 → 8 → 16 was a tenth of the detection thread's allocations.
            uids.reserve_exact(max.min(MAX_FIRST_ROOM) + 1);
        }
        uids.insert(at, (r.ts, r.uid.clone(), r.community_id.clone()));
        uids.truncate(max);
    }
}

/// The uids and the first flow's Community ID.
pub fn split_first(uids: &FirstFlows) -> (Vec<String>, Option<String>) {
    (
        uids.iter().map(|u| u.1.clone()).collect(),
        uids.first().map(|u| u.2.clone()),
    )
}

/// Removes and returns the entries of windows `window_ns` long that ended more than
/// `lateness_ns` before `now`; keys start with the window number, and `first_key(w)`
/// is the smallest key of window `w`.
pub fn split_due<K: Ord, V>(
    map: &mut BTreeMap<K, V>,
    now: Timestamp,
    window_ns: i64,
    lateness_ns: i64,
    first_key: impl Fn(i64) -> K,
) -> BTreeMap<K, V> {
    let last_due = (now.as_nanos() - lateness_ns).div_euclid(window_ns) - 1;
    let bound = first_key(last_due + 1);
    // Called for nearly every record: most of the time nothing is due, and splitting
    // the tree would rebuild it for nothing.
    if map.first_key_value().is_none_or(|(k, _)| *k >= bound) {
        return BTreeMap::new();
    }
    let keep = map.split_off(&bound);
    std::mem::replace(map, keep)
}

/// The smallest address, for the smallest key of a window.
pub const LOWEST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
