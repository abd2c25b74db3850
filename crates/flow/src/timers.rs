//! The table's timer queue: exact (time, sequence) order at near-FIFO cost.
//!
//! Most timers are "base + a configured delay" set while packet time moves forward, so
//! the timers of one delay arrive already sorted. Each configured delay gets a FIFO
//! lane; a timer joins its lane when it does not sort before the lane's last entry, and
//! a binary heap takes the rest (timers of other delays, or out of order). The earliest
//! timer is the least of the lane fronts and the heap top. Compared with one heap over
//! every timer this keeps pushes O(1) and pops O(lanes), on memory that is read in
//! order — the difference between a timer heap that dominates the profile and one that
//! does not, with hundreds of thousands of flows.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use tunnelwatch_model::Timestamp;

/// What a timer checks when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    Inactivity,
    Dns,
    Expire,
    Attempt,
    Delete,
    Status,
}

/// One pending timer of a flow slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timer {
    pub at: Timestamp,
    pub seq: u64,
    pub slot: u32,
    pub epoch: u32,
    pub gen: u32,
    pub kind: TimerKind,
}

/// Timers in (at, seq) order; see the module documentation.
pub(crate) struct TimerQueue {
    lanes: Vec<(i64, VecDeque<Timer>)>,
    heap: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    /// When the earliest timer is due (`None`: no timers): asked before every packet,
    /// answered without looking at the lanes.
    next: Option<Timestamp>,
}

impl TimerQueue {
    /// A queue with one lane per distinct positive delay.
    pub fn new(delays: &[i64]) -> Self {
        let mut ds: Vec<i64> = delays.iter().copied().filter(|d| *d > 0).collect();
        ds.sort_unstable();
        ds.dedup();
        TimerQueue {
            lanes: ds.into_iter().map(|d| (d, VecDeque::new())).collect(),
            heap: BinaryHeap::new(),
            seq: 0,
            next: None,
        }
    }

    /// Adds a timer due at `base + delay`; fills in its sequence number.
    pub fn push(&mut self, mut t: Timer, base: Timestamp, delay: i64) {
        self.seq += 1;
        t.seq = self.seq;
        t.at = base.add_nanos(delay);
        self.next = Some(self.next.map_or(t.at, |n| n.min(t.at)));
        if let Some((_, q)) = self.lanes.iter_mut().find(|(d, _)| *d == delay) {
            if q.back().is_none_or(|b| b.at <= t.at) {
                q.push_back(t);
                return;
            }
        }
        self.heap.push(Reverse(t));
    }

    /// Where the earliest timer is: `None` for the heap, `Some(i)` for lane `i`.
    fn earliest(&self) -> Option<(Option<usize>, Timer)> {
        let mut best = self.heap.peek().map(|Reverse(t)| (None, *t));
        for (i, (_, q)) in self.lanes.iter().enumerate() {
            if let Some(t) = q.front() {
                if best.is_none_or(|(_, b)| (t.at, t.seq) < (b.at, b.seq)) {
                    best = Some((Some(i), *t));
                }
            }
        }
        best
    }

    /// Removes and returns the earliest timer if it is due at or before `now`
    /// (`None`: any time).
    pub fn pop_due(&mut self, now: Option<Timestamp>) -> Option<Timer> {
        let next = self.next?;
        if now.is_some_and(|n| next > n) {
            return None;
        }
        let (at, t) = self.earliest()?;
        match at {
            None => self.heap.pop(),
            Some(i) => self.lanes[i].1.pop_front().map(Reverse),
        };
        self.next = self.earliest().map(|(_, t)| t.at);
        Some(t)
    }

    /// Drops every timer.
    pub fn clear(&mut self) {
        self.heap.clear();
        for (_, q) in &mut self.lanes {
            q.clear();
        }
        self.next = None;
    }

    /// Keeps only the timers `keep` accepts (dropping those of ended flows).
    pub fn retain(&mut self, mut keep: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|Reverse(t)| keep(t));
        for (_, q) in &mut self.lanes {
            q.retain(|t| keep(t));
        }
        self.next = self.earliest().map(|(_, t)| t.at);
    }

    /// Timers pending.
    pub fn len(&self) -> usize {
        self.heap.len() + self.lanes.iter().map(|(_, q)| q.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(slot: u32) -> Timer {
        Timer {
            at: Timestamp(0),
            seq: 0,
            slot,
            epoch: 0,
            gen: 0,
            kind: TimerKind::Inactivity,
        }
    }

    #[test]
    fn pops_in_time_then_sequence_order_across_lanes_and_heap() {
        let mut q = TimerQueue::new(&[10, 30, 0, 10]);
        // (base, delay): lanes 10 and 30, an unknown delay (heap), an out-of-order one.
        let pushes = [
            (0, 30),
            (5, 10),
            (1, 7),
            (20, 10),
            (3, 10),
            (0, 15),
            (6, 30),
        ];
        for (i, (base, delay)) in pushes.iter().enumerate() {
            q.push(timer(i as u32), Timestamp(*base), *delay);
        }
        assert_eq!(q.len(), pushes.len());
        let mut want: Vec<(i64, u32)> = pushes
            .iter()
            .enumerate()
            .map(|(i, (b, d))| (b + d, i as u32))
            .collect();
        want.sort();
        assert_eq!(q.pop_due(Some(Timestamp(7))), None);
        assert_eq!(q.pop_due(Some(Timestamp(8))).map(|t| t.slot), Some(2));
        assert_eq!(q.pop_due(Some(Timestamp(12))), None);
        // A timer pushed earlier than every pending one is due first.
        q.push(timer(99), Timestamp(0), 9);
        assert_eq!(q.pop_due(Some(Timestamp(12))).map(|t| t.slot), Some(99));
        assert_eq!(q.pop_due(Some(Timestamp(12))), None);
        let mut got = vec![(8, 2)];
        while let Some(t) = q.pop_due(None) {
            got.push((t.at.0, t.slot));
        }
        assert_eq!(got, want);
        assert_eq!(q.len(), 0);
    }
}
