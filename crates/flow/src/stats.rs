//! Per-direction packet dynamics: counters, streaming moments (Welford), TTL range,
//! TCP flag summaries and idle periods. Constant memory per direction, no allocation.

use tunnelwatch_decode::TcpFlags;
use tunnelwatch_model::{DirectionStats, Letters, Stats, Timestamp};

/// Streaming mean / variance (Welford's algorithm) and range of values counted by the
/// caller, which passes the count with each value: a direction counts its packets
/// once for both its sizes and its gaps. Sizes keep their range as `u32`, gaps as `f64`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments<T> {
    mean: f64,
    m2: f64,
    min: T,
    max: T,
}

impl<T: Copy + PartialOrd + Into<f64>> Moments<T> {
    /// Adds one value, the `n`th.
    pub fn push(&mut self, n: u64, x: T) {
        let v: f64 = x.into();
        if n <= 1 {
            self.min = x;
            self.max = x;
            self.mean = v;
            self.m2 = 0.0;
            return;
        }
        if x < self.min {
            self.min = x;
        }
        if x > self.max {
            self.max = x;
        }
        let d = v - self.mean;
        self.mean += d / n as f64;
        self.m2 += d * (v - self.mean);
    }

    /// The summary of the `n` values pushed, `None` when there are none. Values are
    /// rounded to 6 decimals so that output is stable text.
    pub fn summary(&self, n: u64) -> Option<Stats> {
        if n == 0 {
            return None;
        }
        let var = if n > 1 { self.m2 / n as f64 } else { 0.0 };
        Some(Stats {
            mean: round6(self.mean),
            min: round6(self.min.into()),
            max: round6(self.max.into()),
            stddev: round6(var.max(0.0).sqrt()),
        })
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Counters and dynamics of one direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Direction {
    /// Packets counted (Zeek's ConnSize semantics), each by [`Direction::observe`]: the
    /// sizes pushed, one more than the gaps.
    pub pkts: u64,
    /// IP bytes (sum of IP total lengths).
    pub ip_bytes: u64,
    /// Bytes of the frames on the wire, link headers included (for comparison with
    /// tools that count layer-2 bytes).
    pub link_bytes: u64,
    /// Transport payload bytes on the wire.
    pub payload_bytes: u64,
    /// UDP/ICMP payload bytes as Zeek counts them (from the UDP length / ICMP payload).
    pub datagram_bytes: u64,
    /// Whether any valid datagram was seen (Zeek's UDP endpoint "active").
    pub active: bool,
    flags: u16,
    first_flags: [u16; 4],
    n_first: u8,
    iat: Moments<f64>,
    size: Moments<u32>,
    /// The latest packet's time (when `pkts > 0`).
    last_ts: Timestamp,
    /// Idle periods (inter-arrival above the idle threshold).
    pub idle_periods: u64,
    /// Zero-window advertisements.
    pub zero_windows: u64,
    /// Retransmitted payload packets.
    pub retransmissions: u64,
    /// TTL range (when `pkts > 0`).
    ttl_min: u8,
    ttl_max: u8,
    /// IP fragments merged into this direction's packets by reassembly.
    pub fragments: u64,
    /// Snap-length truncated packets.
    pub truncated: u64,
}

impl Direction {
    /// Counts one packet and records its timing, size and TTL.
    pub fn observe(&mut self, ts: Timestamp, payload_len: u32, ttl: u8, idle_threshold: i64) {
        if self.pkts > 0 {
            let gap = ts.nanos_since(self.last_ts).max(0);
            self.iat.push(self.pkts, gap as f64 / 1e9);
            if gap > idle_threshold {
                self.idle_periods += 1;
            }
        }
        self.last_ts = ts;
        self.pkts += 1;
        self.size.push(self.pkts, payload_len);
        if self.pkts == 1 {
            self.ttl_min = ttl;
            self.ttl_max = ttl;
        } else {
            self.ttl_min = self.ttl_min.min(ttl);
            self.ttl_max = self.ttl_max.max(ttl);
        }
    }

    /// Records a TCP segment's flags.
    pub fn observe_flags(&mut self, flags: TcpFlags) {
        self.flags |= flags.0;
        if usize::from(self.n_first) < self.first_flags.len() {
            self.first_flags[usize::from(self.n_first)] = flags.0;
            self.n_first += 1;
        }
    }

    /// Time of this direction's latest packet.
    pub fn last_seen(&self) -> Option<Timestamp> {
        (self.pkts > 0).then_some(self.last_ts)
    }

    /// The TCP flags union.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.flags)
    }

    /// Flags of the first packets.
    pub fn first_flags(&self) -> &[u16] {
        &self.first_flags[..usize::from(self.n_first)]
    }

    /// The record form.
    pub fn to_stats(&self, tcp: bool) -> DirectionStats {
        DirectionStats {
            payload_bytes: self.payload_bytes,
            link_bytes: self.link_bytes,
            flags: if tcp {
                self.flags().letters()
            } else {
                Letters::default()
            },
            first_flags: if tcp {
                self.first_flags()
                    .iter()
                    .map(|f| TcpFlags(*f).letters())
                    .collect()
            } else {
                Vec::new()
            },
            iat: self.iat.summary(self.pkts.saturating_sub(1)),
            size: self.size.summary(self.pkts),
            idle_periods: self.idle_periods,
            zero_windows: self.zero_windows,
            retransmissions: self.retransmissions,
            ttl_min: (self.pkts > 0).then_some(self.ttl_min),
            ttl_max: (self.pkts > 0).then_some(self.ttl_max),
            fragments: self.fragments,
            truncated: self.truncated,
            keystrokes: 0,
            bursts: None,
            onsets: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_textbook_values() {
        let mut r = Moments::<f64>::default();
        let mut s = Moments::<u32>::default();
        for (i, x) in [2, 4, 4, 4, 5, 5, 7, 9].into_iter().enumerate() {
            r.push(i as u64 + 1, f64::from(x));
            s.push(i as u64 + 1, x);
        }
        for m in [r.summary(8).unwrap(), s.summary(8).unwrap()] {
            assert_eq!((m.mean, m.min, m.max, m.stddev), (5.0, 2.0, 9.0, 2.0));
        }
        assert_eq!(r.summary(0), None);
        let mut one = Moments::<u32>::default();
        one.push(1, 7);
        let m = one.summary(1).unwrap();
        assert_eq!((m.mean, m.min, m.max, m.stddev), (7.0, 7.0, 7.0, 0.0));
    }

    #[test]
    fn direction_counts_idle_periods_above_threshold() {
        let mut d = Direction::default();
        let sec = 1_000_000_000;
        d.observe(Timestamp(0), 0, 64, 5 * sec);
        d.observe(Timestamp(sec), 10, 63, 5 * sec);
        d.observe(Timestamp(10 * sec), 10, 65, 5 * sec);
        assert_eq!(d.idle_periods, 1);
        let s = d.to_stats(false);
        assert_eq!((s.ttl_min, s.ttl_max), (Some(63), Some(65)));
        assert_eq!(s.iat.unwrap().max, 9.0);
    }
}
