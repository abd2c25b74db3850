//! IP fragment attribution: later fragments carry no ports, so they are credited to the
//! flow of their datagram's first fragment (matched on source, destination, protocol
//! and identification). Fragments that arrive before their first fragment wait a short
//! while; fragments that never find it are counted, never silently dropped.
//!
//! Memory is bounded: entries live at most [`FRAG_TIMEOUT`] of packet time and the
//! table holds at most [`MAX_ENTRIES`] datagrams.

use std::net::IpAddr;

use hashbrown::HashMap;
use tunnelwatch_model::Timestamp;

/// How long a datagram's fragments are matched (Zeek's `frag_timeout` is unset by
/// default; Linux uses 30 s).
pub const FRAG_TIMEOUT: i64 = 30 * 1_000_000_000;
/// Most datagrams tracked at once.
pub const MAX_ENTRIES: usize = 65_536;

/// Identity of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatagramId {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// IP identification.
    pub id: u32,
}

/// Where a datagram's later fragments go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Flow slot.
    pub slot: u32,
    /// Slot epoch when attributed (a reused slot is a different flow).
    pub epoch: u32,
}

#[derive(Clone, Copy, Debug)]
enum Entry {
    Owned {
        owner: Owner,
        seen: Timestamp,
    },
    /// Later fragments seen before the first one: bytes and count waiting.
    Waiting {
        bytes: u64,
        count: u64,
        seen: Timestamp,
    },
}

/// Fragment attribution table.
#[derive(Debug, Default)]
pub struct FragTable {
    map: HashMap<DatagramId, Entry, foldhash::fast::RandomState>,
    last_sweep: Timestamp,
    /// Later fragments that never found their first fragment.
    pub unattributed: u64,
}

/// Result of offering a later fragment.
pub enum Later {
    /// Credit the fragment to this flow.
    Owner(Owner),
    /// Kept waiting for the first fragment.
    Waiting,
}

impl FragTable {
    /// Records the flow of a first fragment; returns fragments that were waiting
    /// (bytes, count), to credit now.
    pub fn first(&mut self, id: DatagramId, owner: Owner, ts: Timestamp) -> Option<(u64, u64)> {
        let prev = self.map.insert(id, Entry::Owned { owner, seen: ts });
        self.bound();
        match prev {
            Some(Entry::Waiting { bytes, count, .. }) => Some((bytes, count)),
            _ => None,
        }
    }

    /// Offers a later fragment with `bytes` of IP payload.
    pub fn later(&mut self, id: DatagramId, bytes: u64, ts: Timestamp) -> Later {
        match self.map.get_mut(&id) {
            Some(Entry::Owned { owner, seen }) => {
                *seen = ts;
                Later::Owner(*owner)
            }
            Some(Entry::Waiting {
                bytes: b,
                count,
                seen,
            }) => {
                *b += bytes;
                *count += 1;
                *seen = ts;
                Later::Waiting
            }
            None => {
                self.map.insert(
                    id,
                    Entry::Waiting {
                        bytes,
                        count: 1,
                        seen: ts,
                    },
                );
                self.bound();
                Later::Waiting
            }
        }
    }

    /// Drops entries older than the timeout (at most once per second of packet time);
    /// waiting fragments that expire are counted as unattributed.
    pub fn sweep(&mut self, now: Timestamp) {
        if now.nanos_since(self.last_sweep) < 1_000_000_000 {
            return;
        }
        self.last_sweep = now;
        let mut lost = 0;
        self.map.retain(|_, e| {
            let (seen, waiting) = match e {
                Entry::Owned { seen, .. } => (*seen, 0),
                Entry::Waiting { seen, count, .. } => (*seen, *count),
            };
            let keep = now.nanos_since(seen) <= FRAG_TIMEOUT;
            if !keep {
                lost += waiting;
            }
            keep
        });
        self.unattributed += lost;
    }

    /// Counts every fragment still waiting as unattributed (end of input).
    pub fn finish(&mut self) {
        for e in self.map.values() {
            if let Entry::Waiting { count, .. } = e {
                self.unattributed += count;
            }
        }
        self.map.clear();
    }

    fn bound(&mut self) {
        if self.map.len() > MAX_ENTRIES {
            // Forget the oldest half: a flood of bogus fragments must not grow memory.
            let mut seen: Vec<i64> = self
                .map
                .values()
                .map(|e| match e {
                    Entry::Owned { seen, .. } | Entry::Waiting { seen, .. } => seen.as_nanos(),
                })
                .collect();
            seen.sort_unstable();
            let cut = seen[seen.len() / 2];
            let mut lost = 0;
            self.map.retain(|_, e| match e {
                Entry::Owned { seen, .. } => seen.as_nanos() > cut,
                Entry::Waiting { seen, count, .. } => {
                    let keep = seen.as_nanos() > cut;
                    if !keep {
                        lost += *count;
                    }
                    keep
                }
            });
            self.unattributed += lost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> DatagramId {
        DatagramId {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            id: n,
        }
    }

    #[test]
    fn later_before_first_is_credited_when_first_arrives() {
        let mut t = FragTable::default();
        assert!(matches!(t.later(id(1), 100, Timestamp(0)), Later::Waiting));
        let owner = Owner { slot: 3, epoch: 1 };
        assert_eq!(t.first(id(1), owner, Timestamp(1)), Some((100, 1)));
        assert!(matches!(t.later(id(1), 50, Timestamp(2)), Later::Owner(o) if o == owner));
    }

    #[test]
    fn orphan_fragments_are_counted_after_timeout() {
        let mut t = FragTable::default();
        t.later(id(2), 100, Timestamp(0));
        t.sweep(Timestamp(FRAG_TIMEOUT + 2_000_000_000));
        assert_eq!(t.unattributed, 1);
    }
}
