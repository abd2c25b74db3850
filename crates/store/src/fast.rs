//! A fast hash for the maps a query builds over stored rows (connection lists, rollup
//! sums of a view) and for counting distinct keys: each 64-bit word is folded in with
//! SplitMix64's finaliser, several times cheaper than SipHash on 16- to 34-byte keys
//! and well mixed (FxHash's multiply-rotate was tried: on IPv4-mapped addresses, mostly
//! zero bytes, it collided on 0.5 % of 133,000 distinct pair keys). Ingest, whose keys
//! come from traffic, uses it keyed ([`KeyedMap`]): seeded with a per-map random
//! 64-bit value, so a sender cannot pick addresses that collide without knowing it
//! (the defence foldhash and aHash offer; SipHash cost ~1 µs a record in rollup sums).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The hasher.
#[derive(Clone, Copy, Default)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, w: u64) {
        self.0 = crate::blocks::mix(self.0 ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FastHasher {
    /// The hash of a byte string.
    pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
        let mut h = FastHasher::default();
        h.write(b);
        h.finish()
    }
}

/// A map hashed with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Builds [`FastHasher`]s that start from a random seed (one per map).
#[derive(Clone)]
pub(crate) struct Keyed(u64);

impl Default for Keyed {
    fn default() -> Keyed {
        Keyed(RandomState::new().hash_one(0x7477_6b65_7965_6421u64))
    }
}

impl BuildHasher for Keyed {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// A map hashed with a [`Keyed`] [`FastHasher`]: for keys taken from traffic.
pub(crate) type KeyedMap<K, V> = HashMap<K, V, Keyed>;

/// A set of 64-bit hashes (already mixed), hashed with [`FastHasher`].
pub(crate) type FastSet = HashSet<u64, BuildHasherDefault<FastHasher>>;
