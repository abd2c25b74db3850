//! What the store knows about hosts, for host scoring (`docs/specs/scoring.md`): how
//! many distinct clients contacted a destination and how many clients there are (from
//! the all-time pair and client rollups, so final records only, at a cost that depends
//! on distinct keys rather than on flows), and when a host was first seen and
//! when the stored traffic begins (from the flow blocks whose Bloom filter may hold the
//! host, earliest first, and the interim rows).
//!
//! It reads the existing tables only and writes nothing; every host is a bound
//! parameter. Scoring itself is `tunnelwatch_detect::scoring` (the store does not depend
//! on the detectors); the CLI joins the two.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use rusqlite::OptionalExtension;

use crate::addr::addr_to_blob;
use crate::blocks::{self, KeyList, Meta};
use crate::query::may_hold_any;
use crate::rollup::{HourRange, RollKind};
use crate::{Store, StoreError};

/// What the store measured about a set of hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostActivity {
    /// Distinct clients (originators) of the stored final records.
    pub clients: u64,
    /// Distinct clients that contacted each destination asked about (any port); a
    /// destination no final record reached is absent.
    pub destination_clients: BTreeMap<IpAddr, u64>,
    /// The first packet time (µs) of each asked host's earliest stored flow, as client
    /// or server; a host in no flow is absent.
    pub first_seen_us: BTreeMap<IpAddr, i64>,
    /// The first packet time (µs) of the earliest stored flow.
    pub first_flow_us: Option<i64>,
}

impl Store {
    /// Distinct clients of the stored final records.
    pub fn client_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .rollup(RollKind::Client, &HourRange::default(), &|_| true)?
            .len() as u64)
    }

    /// Distinct clients that contacted each of `servers` (any port), from final records.
    pub fn destination_clients(
        &self,
        servers: &[IpAddr],
    ) -> Result<BTreeMap<IpAddr, u64>, StoreError> {
        if servers.is_empty() {
            return Ok(BTreeMap::new());
        }
        let want: HashMap<[u8; 16], IpAddr> =
            servers.iter().map(|h| (addr_to_blob(*h), *h)).collect();
        let pairs = self.rollup(RollKind::Pair, &HourRange::default(), &|k| {
            want.contains_key(&k.server)
        })?;
        let mut clients: HashMap<IpAddr, HashSet<[u8; 16]>> = HashMap::new();
        for k in pairs.keys() {
            if let Some(h) = want.get(&k.server) {
                clients.entry(*h).or_default().insert(k.client);
            }
        }
        Ok(clients
            .into_iter()
            .map(|(h, c)| (h, c.len() as u64))
            .collect())
    }

    /// The first packet time (µs) of each host's earliest stored flow (final or
    /// interim), as client or server: the blocks whose Bloom filter may hold one of the
    /// hosts are read, the earliest first, until no unread block can start earlier.
    pub fn first_seen(&self, hosts: &[IpAddr]) -> Result<BTreeMap<IpAddr, i64>, StoreError> {
        let mut out: BTreeMap<IpAddr, i64> = BTreeMap::new();
        if hosts.is_empty() {
            return Ok(out);
        }
        let want: HashMap<[u8; 16], IpAddr> =
            hosts.iter().map(|h| (addr_to_blob(*h), *h)).collect();
        let hashes: Vec<u64> = want.keys().map(blocks::addr_hash).collect();
        let note = |b: &[u8; 16], ts: i64, out: &mut BTreeMap<IpAddr, i64>| {
            if let Some(h) = want.get(b) {
                let e = out.entry(*h).or_insert(ts);
                *e = (*e).min(ts);
            }
        };
        let mut refs = self.blocks_where(|_, bloom| may_hold_any(bloom, &hashes))?;
        refs.sort_by_key(|b| b.min_ts);
        for b in refs {
            // Every host found, and no block left starting before its time.
            if out.len() == want.len() && out.values().all(|&t| t <= b.min_ts) {
                break;
            }
            let keys = self.block_keys(b.id)?;
            let kl = KeyList::parse(&keys).map_err(|d| self.bad_block(b.id, d))?;
            for i in 0..kl.len() {
                let k = kl.get(i);
                note(&k.orig_h, k.ts, &mut out);
                note(&k.resp_h, k.ts, &mut out);
            }
        }
        let err = |e| self.sql("finding when hosts were first seen", e);
        let mut st = self
            .conn
            .prepare_cached("SELECT meta FROM flows_interim")
            .map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let meta: Vec<u8> = row.get(0).map_err(err)?;
            if let Ok(m) = Meta::parse(&meta) {
                for i in 0..m.len() {
                    let k = m.keys(i);
                    note(&k.orig_h, k.ts, &mut out);
                    note(&k.resp_h, k.ts, &mut out);
                }
            }
        }
        Ok(out)
    }

    /// The first packet time (µs) of the earliest stored flow.
    pub fn first_flow_us(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(t) FROM (SELECT min(min_ts) AS t FROM flow_blocks
                   UNION ALL SELECT min(ts) FROM flows_interim)",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.sql("finding the earliest flow", e))
    }

    /// Everything host scoring asks of the store: client counts of `destinations`,
    /// first-seen times of `hosts`, the number of clients and the earliest flow.
    pub fn host_activity(
        &self,
        hosts: &[IpAddr],
        destinations: &[IpAddr],
    ) -> Result<HostActivity, StoreError> {
        Ok(HostActivity {
            clients: self.client_count()?,
            destination_clients: self.destination_clients(destinations)?,
            first_seen_us: self.first_seen(hosts)?,
            first_flow_us: self.first_flow_us()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{CaptureIdentity, Mode, Store};

    use super::*;

    use crate::test_flow as flow;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_activity_counts_clients_per_destination_and_first_seen_either_side() {
        let path = std::env::temp_dir().join(format!("tw-hosts-{}.db", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        let mut s = Store::open(&path, Mode::ReadWrite).unwrap();
        // Empty: nothing known.
        let a = s
            .host_activity(&[ip("10.0.0.1")], &[ip("192.0.2.1")])
            .unwrap();
        assert_eq!(a, HostActivity::default());
        let cid = s.begin_capture(&CaptureIdentity::named("hosts")).unwrap();
        let recs = [
            flow("C1", "10.0.0.1", "192.0.2.1", 443, 1000, true),
            flow("C2", "10.0.0.2", "192.0.2.1", 80, 2000, true),
            // Same client twice, another hour: still one client.
            flow("C3", "10.0.0.2", "192.0.2.1", 443, 9000, true),
            flow("C4", "10.0.0.3", "192.0.2.9", 22, 500, true),
            // 10.0.0.1 answered someone before it was a client.
            flow("C5", "10.0.0.3", "10.0.0.1", 22, 700, true),
            // An interim record: a first sighting, but not in the rollups.
            flow("C6", "10.0.0.4", "192.0.2.7", 443, 300, false),
        ];
        s.insert_flows(cid, &recs).unwrap();
        let a = s
            .host_activity(
                &[ip("10.0.0.1"), ip("10.0.0.4"), ip("10.0.0.99")],
                &[ip("192.0.2.1"), ip("192.0.2.9"), ip("192.0.2.7")],
            )
            .unwrap();
        assert_eq!(a.clients, 2 + 1, "final records' clients");
        assert_eq!(
            a.destination_clients.into_iter().collect::<Vec<_>>(),
            [(ip("192.0.2.1"), 2), (ip("192.0.2.9"), 1)]
        );
        assert_eq!(
            a.first_seen_us.into_iter().collect::<Vec<_>>(),
            [(ip("10.0.0.1"), 700_000_000), (ip("10.0.0.4"), 300_000_000)]
        );
        assert_eq!(a.first_flow_us, Some(300_000_000));
        drop(s);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }
}
