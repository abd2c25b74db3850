//! Keystroke detection: Argus' SSH keystroke algorithm (seed 001; Guha et al., ICS
//! 2011), generalised to any payload-carrying flow and to either side typing.
//!
//! Payload packets of one side that follow each other within the coalescing gap form a
//! *burst* (a key that a tunnel's framing split into 1-, 2- and 36-byte segments is one
//! burst). A small burst from one side is a candidate key; it becomes a keystroke when
//!
//! 1. one of the other side's next `echo_within` bursts is an echo: of echo size, and
//!    within `echo_slack` bytes of the key (a pty echoes the byte typed; SSH and TLS
//!    wrap key and echo alike; FTP or S7comm answer with other sizes),
//! 2. that echo came before the typist's next burst, in the first half of the gap (so
//!    the echo side, whose bursts trail the keys by a round trip, is never taken for
//!    the typist: its "echo" would come a typing gap later), and that next burst came
//!    at least `min_gap_ms` after the key (a small burst sooner than that ends the
//!    run: nobody types that fast, a program does),
//! 3. the previous keystroke of the run was at most `max_run_gap` of the typist's bursts
//!    before, at least `min_gap_ms` earlier, and the ratio of the typist's gap to the
//!    echoes' gap lies in `[ratio_min, ratio_max]` (Argus' inter-arrival ratio);
//!
//! the first key of a run counts when the second one passes. A key whose gap is within
//! `regular_pct` of the moving average of the gaps before it is a machine's clock (ping,
//! heartbeats, polling), not counted; and a flow whose counted gaps vary less than
//! `min_cv` (standard deviation over mean) reports none: people do not type that evenly. Keys are not counted in
//! the flow's first `skip_packets` packets (the SSH handshake), and on SSH flows keys and
//! echoes must be a multiple of 4 bytes. Besides keystrokes it counts bursts, small
//! bursts and small bursts at a typing pace (`typed`, no echo needed), so a one-way
//! typed stream is visible too.
//!
//! Times are kept as 100 µs ticks since the flow's start in `u32` (4.9 days; later
//! times saturate, so keystrokes are not counted in flows older than that). The state
//! is one box per flow, allocated at the first payload of a flow's third or later
//! packet, so two-packet DNS and ICMP exchanges never pay for it.

use tunnelwatch_model::{Bursts, KeystrokeParams, Timestamp};

/// One tick: 100 µs.
const TICK_NS: i64 = 100_000;
/// Silence that ends an ON period (Zhang & Paxson's T_idle: 0.5 s), in ticks.
const IDLE: u32 = 5_000;
/// ON-period starts kept per side.
pub const MAX_ONSETS: usize = 32;

/// A run of one side's payload packets: start and last tick, bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Burst {
    start: u32,
    last: u32,
    bytes: u32,
}

/// A key with its echo: key tick, echo tick, the key's burst number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    key: u32,
    echo: u32,
    index: u32,
}

/// ON-period starts, at most [`MAX_ONSETS`]: the first few in place (most flows have
/// no more; a vector for each would be an allocation per flow on the packet path).
#[derive(Clone, Debug, Default, PartialEq)]
struct Onsets {
    head: [u32; 4],
    len: u8,
    rest: Vec<u32>,
}

impl Onsets {
    fn push(&mut self, t: u32) {
        let len = usize::from(self.len);
        if len >= MAX_ONSETS {
            return;
        }
        match self.head.get_mut(len) {
            Some(slot) => *slot = t,
            None => self.rest.push(t),
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &u32> {
        let head = usize::from(self.len).min(self.head.len());
        self.head[..head].iter().chain(&self.rest)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Side {
    open: Option<Burst>,
    /// When this side's last burst ended, and the starts of its bursts after a silence
    /// of at least [`IDLE`] (ON periods, for stepping-stone correlation).
    last_end: Option<u32>,
    onsets: Onsets,
    bursts: u32,
    small: u32,
    typed: u32,
    keystrokes: u32,
    last_small: Option<u32>,
    /// Moving averages of the gaps between small bursts and between keys (ticks).
    small_gap: u32,
    key_gap: u32,
    /// Dispersion of the gaps counted as typed and as keystrokes.
    typed_gaps: Spread,
    key_gaps: Spread,
    /// A key waiting for its echo: tick, burst number, the other side's bursts since,
    /// its size.
    pending: Option<(u32, u32, u8, u32)>,
    /// A key with an echo, waiting for the typist's next burst to confirm the order.
    provisional: Option<Pair>,
    /// The run's last confirmed key, and whether it was counted.
    last: Option<(Pair, bool)>,
}

/// A flow's keystroke and burst counts as its record shows them (index 0: originator).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeysSummary {
    /// Keystrokes per side.
    pub keystrokes: [u64; 2],
    /// Bursts per side.
    pub bursts: [Bursts; 2],
    /// Starts of ON periods (epoch seconds) of the sides that typed.
    pub onsets: [Vec<f64>; 2],
}

/// Limits in ticks, from [`KeystrokeParams`].
#[derive(Clone, Copy, Debug)]
struct Limits {
    coalesce: u32,
    min_gap: u32,
    typed_max_gap: u32,
}

/// The per-flow state. Index 0 is the originator's side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keys {
    sides: [Side; 2],
}

fn ticks_ms(ms: f64) -> u32 {
    (ms * 10.0).clamp(0.0, f64::from(u32::MAX)) as u32
}

impl Keys {
    /// Takes one payload packet of `len` bytes from the originator (`is_orig`) or the
    /// responder. `flow_pkts` counts the flow's packets so far (this one included);
    /// `ssh`: the flow is known to carry SSH.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        p: &KeystrokeParams,
        start: Timestamp,
        ts: Timestamp,
        is_orig: bool,
        len: u32,
        flow_pkts: u64,
        ssh: bool,
    ) {
        let t = (ts.nanos_since(start).max(0) / TICK_NS).min(i64::from(u32::MAX)) as u32;
        let s = usize::from(!is_orig);
        let lim = Limits {
            coalesce: ticks_ms(p.coalesce_ms),
            min_gap: ticks_ms(p.min_gap_ms),
            typed_max_gap: ticks_ms(p.typed_max_gap_ms),
        };
        let counting = flow_pkts > u64::from(p.skip_packets);
        if let Some(b) = self.sides[1 - s].open.take() {
            self.close(p, &lim, 1 - s, b, counting, ssh);
        }
        match self.sides[s].open.as_mut() {
            Some(b) if t.saturating_sub(b.last) <= lim.coalesce => {
                b.last = t;
                b.bytes = b.bytes.saturating_add(len);
            }
            _ => {
                if let Some(b) = self.sides[s].open.take() {
                    self.close(p, &lim, s, b, counting, ssh);
                }
                let side = &mut self.sides[s];
                let quiet = side.last_end.is_none_or(|e| t.saturating_sub(e) >= IDLE);
                if quiet {
                    side.onsets.push(t);
                }
                side.open = Some(Burst {
                    start: t,
                    last: t,
                    bytes: len,
                });
            }
        }
    }

    /// A burst of side `s` ended: it may echo the other side's key, confirm this side's
    /// last key, and be a key itself.
    fn close(
        &mut self,
        p: &KeystrokeParams,
        lim: &Limits,
        s: usize,
        b: Burst,
        counting: bool,
        ssh: bool,
    ) {
        let sized = |lo: u32, hi: u32| {
            (lo..=hi).contains(&b.bytes) && (!ssh || !p.ssh_mod4 || b.bytes % 4 == 0)
        };
        let [a, c] = &mut self.sides;
        let (side, other) = if s == 0 { (a, c) } else { (c, a) };
        side.bursts = side.bursts.saturating_add(1);
        side.last_end = Some(b.last);
        // 1. The echo of the other side's key?
        if let Some((key, index, seen, key_bytes)) = other.pending {
            let seen = seen.saturating_add(1);
            if sized(p.echo_min, p.echo_max) && b.bytes.abs_diff(key_bytes) <= p.echo_slack {
                other.pending = None;
                other.provisional = Some(Pair {
                    key,
                    echo: b.start,
                    index,
                });
            } else if u32::from(seen) >= p.echo_within {
                other.pending = None;
            } else {
                other.pending = Some((key, index, seen, key_bytes));
            }
        }
        // 2. This side's next burst: the echo must have come in the first half of the
        // gap since this side's key.
        if let Some(pair) = side.provisional.take() {
            let next = b.start.saturating_sub(pair.key);
            if pair.echo - pair.key < b.start.saturating_sub(pair.echo) && next >= lim.min_gap {
                side.confirm(p, lim, pair);
            } else {
                side.last = None;
            }
        }
        // 3. A key itself?
        if sized(p.key_min, p.key_max) {
            side.small = side.small.saturating_add(1);
            if let Some(prev) = side.last_small {
                let gap = b.start.saturating_sub(prev);
                if (lim.min_gap..=lim.typed_max_gap).contains(&gap)
                    && !regular(p, gap, &mut side.small_gap)
                {
                    side.typed = side.typed.saturating_add(1);
                    side.typed_gaps.push(gap);
                }
                // Faster than anyone types: a machine's burst ends the run.
                if gap < lim.min_gap {
                    side.last = None;
                }
            }
            side.last_small = Some(b.start);
            side.pending = counting.then_some((b.start, side.bursts, 0, b.bytes));
        } else {
            side.pending = None;
        }
    }

    fn side(&self, orig: bool) -> &Side {
        &self.sides[usize::from(!orig)]
    }

    /// Keystrokes typed by the originator (`orig`) or the responder: none when their
    /// gaps varied less than a person's do (coefficient of variation under `min_cv`).
    pub fn keystrokes(&self, p: &KeystrokeParams, orig: bool) -> u64 {
        let s = self.side(orig);
        if s.key_gaps.even(p.min_cv) {
            0
        } else {
            u64::from(s.keystrokes)
        }
    }

    /// Burst counts of one side (the open burst not included); `typed` is 0 when the
    /// typed gaps were as even as a clock's, as for keystrokes.
    pub fn bursts(&self, p: &KeystrokeParams, orig: bool) -> Bursts {
        let s = self.side(orig);
        Bursts {
            count: u64::from(s.bursts),
            small: u64::from(s.small),
            typed: if s.typed_gaps.even(p.min_cv) {
                0
            } else {
                u64::from(s.typed)
            },
        }
    }

    /// What the record shows, per side (originator first); `start`: the flow's first
    /// packet. ON-period starts are given for sides that typed.
    pub fn summary(&self, p: &KeystrokeParams, start: Timestamp) -> KeysSummary {
        let keys = [self.keystrokes(p, true), self.keystrokes(p, false)];
        let onsets = |i: usize| -> Vec<f64> {
            if keys[i] == 0 {
                return Vec::new();
            }
            self.sides[i]
                .onsets
                .iter()
                .map(|t| {
                    start
                        .add_nanos(i64::from(*t) * TICK_NS)
                        .as_secs_f64_micros()
                })
                .collect()
        };
        KeysSummary {
            keystrokes: keys,
            bursts: [self.bursts(p, true), self.bursts(p, false)],
            onsets: [onsets(0), onsets(1)],
        }
    }

    /// Swaps the roles of the two sides (the flow table flipped the connection).
    pub fn flip(&mut self) {
        self.sides.swap(0, 1);
    }
}

/// Count, sum and sum of squares of gaps (ticks), for their coefficient of variation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Spread {
    n: u32,
    sum: f64,
    sq: f64,
}

impl Spread {
    fn push(&mut self, gap: u32) {
        let g = f64::from(gap);
        self.n = self.n.saturating_add(1);
        self.sum += g;
        self.sq += g * g;
    }

    /// At least two gaps, and less spread than `min_cv` (standard deviation / mean).
    fn even(&self, min_cv: f64) -> bool {
        if self.n < 2 || self.sum <= 0.0 {
            return false;
        }
        let n = f64::from(self.n);
        let mean = self.sum / n;
        let var = (self.sq / n - mean * mean).max(0.0);
        var.sqrt() < min_cv * mean
    }
}

/// A gap within `regular_pct` of the moving average of the gaps before it: a clock, not
/// a person (a first gap, with nothing before it, is not yet known to be human either).
/// Updates the average (weight 1/4 for the new gap).
fn regular(p: &KeystrokeParams, gap: u32, avg: &mut u32) -> bool {
    let before = *avg;
    *avg = if before == 0 {
        gap
    } else {
        ((u64::from(before) * 3 + u64::from(gap)) / 4) as u32
    };
    before == 0 || f64::from(gap.abs_diff(before)) * 100.0 <= f64::from(before) * p.regular_pct
}

impl Side {
    /// Counts a key whose echo came in order, if it continues the run.
    fn confirm(&mut self, p: &KeystrokeParams, lim: &Limits, pair: Pair) {
        if let Some((prev, counted)) = self.last {
            let key_gap = pair.key.saturating_sub(prev.key);
            let echo_gap = pair.echo.saturating_sub(prev.echo);
            let in_run = pair.index.saturating_sub(prev.index) <= p.max_run_gap;
            let ratio = f64::from(key_gap) / f64::from(echo_gap.max(1));
            let human = !regular(p, key_gap, &mut self.key_gap);
            if in_run
                && human
                && key_gap >= lim.min_gap
                && (p.ratio_min..=p.ratio_max).contains(&ratio)
            {
                let add = if counted { 1 } else { 2 };
                self.keystrokes = self.keystrokes.saturating_add(add);
                self.key_gaps.push(key_gap);
                self.last = Some((pair, true));
                return;
            }
        }
        self.last = Some((pair, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onsets_keep_the_first_ones_in_order() {
        for n in [0u32, 3, 4, 5, 31, 32, 33, 100] {
            let mut o = Onsets::default();
            for t in 0..n {
                o.push(t * 10);
            }
            let want: Vec<u32> = (0..n.min(MAX_ONSETS as u32)).map(|t| t * 10).collect();
            assert_eq!(o.iter().copied().collect::<Vec<_>>(), want, "{n}");
        }
    }

    const MS: i64 = 1_000_000;
    const P: KeystrokeParams = KeystrokeParams::DEFAULT;

    /// Plays `(ms, from_orig, bytes)` packets and returns the state.
    fn play(packets: &[(i64, bool, u32)], ssh: bool) -> Keys {
        let p = KeystrokeParams {
            skip_packets: 0,
            ..Default::default()
        };
        let mut k = Keys::default();
        for (n, &(ms, orig, len)) in packets.iter().enumerate() {
            k.observe(
                &p,
                Timestamp(0),
                Timestamp(ms * MS),
                orig,
                len,
                n as u64 + 1,
                ssh,
            );
        }
        k
    }

    /// A typist on `orig`'s side: keys every `gaps[i]` ms, echoed after `rtt` ms.
    fn session(orig: bool, gaps: &[i64], key: u32, echo: u32, rtt: i64) -> Vec<(i64, bool, u32)> {
        let mut t = 1000;
        let mut v = Vec::new();
        for g in gaps {
            v.push((t, orig, key));
            v.push((t + rtt, !orig, echo));
            t += g;
        }
        v
    }

    const GAPS: [i64; 12] = [210, 340, 180, 290, 400, 160, 250, 330, 270, 190, 380, 220];

    #[test]
    fn modern_ssh_keys_are_counted_for_the_typist_only() {
        let k = play(&session(true, &GAPS, 36, 36, 1), true);
        // 12 keys: the last one has no next burst to confirm it, and the run counts
        // from its second gap (the first has no gap before it to show it is human).
        assert_eq!(k.keystrokes(&P, true), 10);
        assert_eq!(k.keystrokes(&P, false), 0, "the echo side is not a typist");
        let b = k.bursts(&P, true);
        // Every key's burst was closed by its echo; the last echo is still open. Of 11
        // gaps, the first has no average before it and two (250, 270 ms) fall within 5%
        // of the running average: the price of not taking clocks for typists.
        assert_eq!((b.count, b.small, b.typed), (12, 12, 8));
        assert_eq!(k.bursts(&P, false).count, 11);
    }

    #[test]
    fn a_reverse_shell_operator_types_from_the_responder() {
        let k = play(&session(false, &GAPS, 1, 1, 2), false);
        assert_eq!(k.keystrokes(&P, false), 10);
        assert_eq!(k.keystrokes(&P, true), 0);
    }

    #[test]
    fn keys_split_by_framing_coalesce_into_one_burst() {
        let mut v = Vec::new();
        for (t, orig, len) in session(true, &GAPS, 36, 39, 1) {
            if orig {
                v.push((t, true, 1));
                v.push((t, true, 2));
                v.push((t, true, len));
            } else {
                v.push((t, false, len));
            }
        }
        let k = play(&v, false);
        assert_eq!(k.keystrokes(&P, true), 10);
        assert_eq!(
            k.bursts(&P, true).small,
            12,
            "1+2+36 bytes at once are one 39-byte key"
        );
    }

    #[test]
    fn ssh_keys_must_be_a_multiple_of_four() {
        let k = play(&session(true, &GAPS, 37, 36, 1), true);
        assert_eq!(k.keystrokes(&P, true), 0);
        let k = play(&session(true, &GAPS, 37, 36, 1), false);
        assert_eq!(k.keystrokes(&P, true), 10, "the rule is SSH's only");
    }

    #[test]
    fn machine_paced_and_bulk_traffic_have_no_keystrokes() {
        // A request/response protocol polled every 20 ms: too fast for a typist.
        let k = play(&session(true, &[20; 30], 40, 60, 1), false);
        assert_eq!(k.keystrokes(&P, true), 0);
        // Ping: echoed at once, but on a clock (1 s ± 1 ms).
        let clock: Vec<i64> = (0..40).map(|i| 1000 + i % 2).collect();
        let k = play(&session(true, &clock, 64, 64, 1), false);
        assert_eq!((k.keystrokes(&P, true), k.bursts(&P, true).typed), (0, 0));
        // Adaptive ping (`ping -A`): the next request 2.5 ms after each reply, replies
        // 131-136 ms after requests: the replies look like keys echoed by requests, but
        // on a round-trip clock.
        let rtt: Vec<i64> = (0..60).map(|i| 131 + (i * 7) % 5).collect();
        let k = play(&session(false, &rtt, 80, 80, 2), false);
        assert_eq!(k.keystrokes(&P, false), 0);
        // A scripted FTP client: each reply (28 bytes) answered by the next command
        // (9 bytes) 3 ms later, replies a round trip plus server time apart.
        let k = play(&session(false, &GAPS, 28, 9, 3), false);
        assert_eq!(k.keystrokes(&P, false), 0);
        // A load test echoing lines after random sleeps of 0-100 ms: half the gaps are
        // faster than typing, so runs never last.
        let sleeps: Vec<i64> = (0..50).map(|i| (i * 37) % 100 + 1).collect();
        let k = play(&session(true, &sleeps, 20, 20, 1), false);
        assert!(k.keystrokes(&P, true) <= 4, "{}", k.keystrokes(&P, true));
        // Keys answered by large replies (command output, not echo).
        let k = play(&session(true, &GAPS, 36, 1400, 1), false);
        assert_eq!(k.keystrokes(&P, true), 0);
        // Echoes whose rhythm does not follow the keys (ratio out of range).
        let mut v = Vec::new();
        let mut t = 0;
        for (i, g) in GAPS.iter().enumerate() {
            v.push((t, true, 36));
            v.push((t + if i % 2 == 0 { 1 } else { 120 }, false, 36));
            t += g;
        }
        assert_eq!(play(&v, true).keystrokes(&P, true), 0);
    }

    #[test]
    fn the_first_packets_are_skipped_and_flip_swaps_sides() {
        let p = KeystrokeParams::default();
        let mut k = Keys::default();
        let s = session(true, &GAPS, 36, 36, 1);
        for (n, &(ms, orig, len)) in s.iter().enumerate() {
            k.observe(
                &p,
                Timestamp(0),
                Timestamp(ms * MS),
                orig,
                len,
                n as u64 + 1,
                true,
            );
        }
        // 24 packets, 22 skipped: only the last key pair remains, unconfirmed.
        assert_eq!(k.keystrokes(&P, true), 0);
        let mut k = play(&s, true);
        k.flip();
        assert_eq!((k.keystrokes(&P, false), k.keystrokes(&P, true)), (10, 0));
    }
}
