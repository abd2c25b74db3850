//! What the store knows about hosts, for host scoring (`docs/specs/scoring.md`): how
//! many distinct clients contacted a destination and how many clients there are (from
//! the `roll_pair` and `roll_client` rollups, so final records only, at a cost that
//! depends on hosts and hours rather than on flows), and when a host was first seen and
//! when the stored traffic begins (from the `flows` indexes, interim records too: each
//! is one index lookup).
//!
//! It reads the existing tables only and writes nothing; every host is a bound
//! parameter. Scoring itself is `tunnelwatch_detect::scoring` (the store does not depend
//! on the detectors); the CLI joins the two.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rusqlite::OptionalExtension;

use crate::addr::addr_to_blob;
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
        self.conn
            .query_row(
                "SELECT count(*) FROM (SELECT DISTINCT client FROM roll_client)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.sql("counting clients", e))
    }

    /// Distinct clients that contacted each of `servers` (any port), from final records.
    pub fn destination_clients(
        &self,
        servers: &[IpAddr],
    ) -> Result<BTreeMap<IpAddr, u64>, StoreError> {
        let err = |e| self.sql("counting the clients of destinations", e);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT DISTINCT client FROM roll_pair WHERE server = ?1)",
            )
            .map_err(err)?;
        let mut out = BTreeMap::new();
        for h in servers {
            let n: i64 = st
                .query_row([&addr_to_blob(*h)[..]], |r| r.get(0))
                .map_err(err)?;
            if n > 0 {
                out.insert(*h, n as u64);
            }
        }
        Ok(out)
    }

    /// The first packet time (µs) of each host's earliest stored flow (final or
    /// interim), as client or server.
    pub fn first_seen(&self, hosts: &[IpAddr]) -> Result<BTreeMap<IpAddr, i64>, StoreError> {
        let err = |e| self.sql("finding when hosts were first seen", e);
        // Two queries rather than one with OR, so each is a single lookup in the
        // (orig_h, ts) or (resp_h, ts) index.
        let mut as_orig = self
            .conn
            .prepare_cached("SELECT min(ts) FROM flows WHERE orig_h = ?1")
            .map_err(err)?;
        let mut as_resp = self
            .conn
            .prepare_cached("SELECT min(ts) FROM flows WHERE resp_h = ?1")
            .map_err(err)?;
        let mut out = BTreeMap::new();
        for h in hosts {
            let b = addr_to_blob(*h);
            let o: Option<i64> = as_orig.query_row([&b[..]], |r| r.get(0)).map_err(err)?;
            let r: Option<i64> = as_resp.query_row([&b[..]], |r| r.get(0)).map_err(err)?;
            if let Some(t) = o.into_iter().chain(r).min() {
                out.insert(*h, t);
            }
        }
        Ok(out)
    }

    /// The first packet time (µs) of the earliest stored flow.
    pub fn first_flow_us(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT min(ts) FROM flows", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
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
    use tunnelwatch_model::{Cause, ConnState, Dynamics, FlowRecord, Timestamp};

    use crate::{CaptureIdentity, Mode, Store};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn flow(uid: &str, orig: &str, resp: &str, port: u16, start_s: i64, fin: bool) -> FlowRecord {
        let ts = Timestamp(start_s * 1_000_000_000);
        FlowRecord {
            uid: uid.into(),
            community_id: format!("1:{uid}"),
            ts,
            last_ts: ts,
            duration: 0.0,
            proto: "tcp".into(),
            ip_proto: 6,
            orig_h: ip(orig),
            orig_p: 40000,
            resp_h: ip(resp),
            resp_p: port,
            service: None,
            orig_pkts: 1,
            resp_pkts: 1,
            orig_bytes: 0,
            resp_bytes: 0,
            orig_ip_bytes: 40,
            resp_ip_bytes: 40,
            conn_state: ConnState::SF,
            history: "ShAFf".into(),
            cause: if fin { Cause::End } else { Cause::Status },
            missed_bytes: 0,
            vlan: None,
            inner_vlan: None,
            tunnel_parents: Vec::new(),
            signatures: Vec::new(),
            dynamics: Dynamics::default(),
            tcp: None,
            icmp: None,
            app: None,
            export: None,
        }
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
