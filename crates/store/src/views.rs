//! The seed's three views, read from the rollup tables: the client view (client →
//! server:port → connection), the server view (server:port → client → connection) and
//! the time view (period → minute → connection), with per-node totals, Top-N/Bottom-N
//! ranking, per-node and global averages, modulo-day period slots and time bounds.
//!
//! Levels one and two come from the rollups (`rollup.rs`: client, server:port and
//! client→server:port segments, all-time or per hour; `roll_minute`), so their cost
//! depends on the number of clients, servers and hours, not on the number of flows; level three lists the newest
//! connections of every shown node in one pass over the flow blocks that may hold them
//! (their time range and Bloom filter of addresses decide, `blocks.rs`).
//!
//! Directions are the client's, as in the seed: `tx` / `out` is what the client
//! (originator) sent, `rx` / `in` what it received — in the server view too. Bytes are
//! payload bytes (`orig_bytes` / `resp_bytes`). `uptime` in the text (the seed's
//! "Uptime") is the sum of connection durations; `channel` is the time the node was
//! up, from its first packet to its last. Time bounds apply to a flow's first packet
//! and are rounded to the hour for levels one and two (rollups are hourly).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hash;
use std::net::IpAddr;

use rusqlite::params_from_iter;
use rusqlite::types::Value;
use serde::Serialize;

use crate::addr::{addr_from_blob, addr_to_blob};
use crate::blocks::{self, KeyList, Keys, MetaFrames, Row};
use crate::fast::FastMap;
use crate::query::{may_hold_any, BlockRef, Part};
use crate::rollup::{HourRange, RollKey, RollKind};
use crate::time::utc_fields;
use crate::{Store, StoreError};

const HOUR_US: i64 = 3_600_000_000;
const MINUTE_US: i64 = 60_000_000;

/// Which view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// client → server:port → connection.
    Clients,
    /// server:port → client → connection.
    Servers,
    /// period → minute → connection.
    Time,
}

/// What nodes are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// First packet time (the seed's "sort by time creation"); the default, newest first.
    First,
    /// Connections.
    Conns,
    /// Bytes sent by the clients.
    OutBytes,
    /// Bytes received by the clients.
    InBytes,
    /// Packets both ways.
    Pkts,
    /// Channel uptime: last packet − first packet of the node.
    Uptime,
    /// Connection uptime: sum of connection durations.
    Duration,
}

impl RankBy {
    fn sql(self) -> &'static str {
        match self {
            RankBy::First => "min(first_us)",
            RankBy::Conns => "sum(conns)",
            RankBy::OutBytes => "sum(bytes_out)",
            RankBy::InBytes => "sum(bytes_in)",
            RankBy::Pkts => "sum(pkts_out + pkts_in)",
            RankBy::Uptime => "(max(last_us) - min(first_us))",
            RankBy::Duration => "sum(dur_us)",
        }
    }

    fn key(self, t: &Totals) -> i128 {
        match self {
            RankBy::First => i128::from(t.first_us),
            RankBy::Conns => i128::from(t.conns),
            RankBy::OutBytes => i128::from(t.bytes_out),
            RankBy::InBytes => i128::from(t.bytes_in),
            RankBy::Pkts => i128::from(t.pkts_out) + i128::from(t.pkts_in),
            RankBy::Uptime => i128::from(t.last_us) - i128::from(t.first_us),
            RankBy::Duration => i128::from(t.dur_us),
        }
    }
}

/// Options of a view.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    /// Which view.
    pub kind: Kind,
    /// Rank key.
    pub by: RankBy,
    /// `Some(n)`: the top `n` first-level nodes, and the top `n` second-level nodes of
    /// each (the seed's Top20). `None`: all.
    pub limit: Option<u64>,
    /// Bottom-N instead of Top-N (ascending rank).
    pub bottom: bool,
    /// Period length in hours: 1, 4 or 24. For the client and server views, a modulo-day
    /// slot is shown per tree (the seed's `t_period_infos`) when `slots` is true; for
    /// the time view, the length of a first-level bucket.
    pub period_hours: u32,
    /// Client and server views: one tree per modulo-day period slot.
    pub slots: bool,
    /// First-packet time bounds, µs (inclusive, exclusive).
    pub since_us: Option<i64>,
    /// Upper bound, µs (exclusive).
    pub until_us: Option<i64>,
    /// Levels shown (1–3).
    pub depth: u8,
    /// Most connections listed under a second-level node.
    pub conns_per_node: u64,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            kind: Kind::Clients,
            by: RankBy::First,
            limit: None,
            bottom: false,
            period_hours: 1,
            slots: false,
            since_us: None,
            until_us: None,
            depth: 3,
            conns_per_node: 50,
        }
    }
}

/// Totals of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Connections (final flow records).
    pub conns: i64,
    /// Packets sent by the client(s).
    pub pkts_out: i64,
    /// Packets received by the client(s).
    pub pkts_in: i64,
    /// Payload bytes sent by the client(s).
    pub bytes_out: i64,
    /// Payload bytes received by the client(s).
    pub bytes_in: i64,
    /// Sum of connection durations, µs (connection uptime).
    pub dur_us: i64,
    /// First packet, µs.
    pub first_us: i64,
    /// Last packet, µs.
    pub last_us: i64,
}

impl Totals {
    /// Totals from eight columns of a row, starting at `at`, in stored order.
    pub(crate) fn from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Totals> {
        Ok(Totals {
            conns: r.get(at)?,
            pkts_out: r.get(at + 1)?,
            pkts_in: r.get(at + 2)?,
            bytes_out: r.get(at + 3)?,
            bytes_in: r.get(at + 4)?,
            dur_us: r.get(at + 5)?,
            first_us: r.get(at + 6)?,
            last_us: r.get(at + 7)?,
        })
    }

    /// Channel uptime, µs.
    pub fn channel_us(&self) -> i64 {
        self.last_us.saturating_sub(self.first_us)
    }
}

const SUMS: &str = "sum(conns), sum(pkts_out), sum(pkts_in), sum(bytes_out), sum(bytes_in), \
                    sum(dur_us), min(first_us), max(last_us)";

/// A connection (third level).
#[derive(Clone, Debug, Serialize)]
pub struct Conn {
    /// Flow uid.
    pub uid: String,
    /// Client address.
    pub orig_h: IpAddr,
    /// Client port.
    pub orig_p: u16,
    /// Server address.
    pub resp_h: IpAddr,
    /// Server port.
    pub resp_p: u16,
    /// Totals of this one connection.
    pub totals: Totals,
}

/// A first- or second-level node.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// Text label (`10.1.1.9`, `10.1.2.2:3128`, `25/11/2003 at 13H`, `minute 28`).
    pub label: String,
    /// Address, for client/server nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<IpAddr>,
    /// Port, for server nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Start of the bucket (time view), µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_us: Option<i64>,
    /// Totals.
    pub totals: Totals,
    /// Number of second-level nodes (servers of a client, clients of a server) in range,
    /// before any Top/Bottom limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children_total: Option<u64>,
    /// Second-level nodes shown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
    /// Connections shown (third level).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conns: Vec<Conn>,
    /// Connections not shown because of `conns_per_node`.
    #[serde(skip_serializing_if = "is_zero")]
    pub conns_more: u64,
    /// Client nodes: the host's score, the probability that it is involved in an
    /// incident (`docs/specs/scoring.md`). Not computed here (scoring belongs to the
    /// detectors): the caller fills it at query time; `None` when it did not, or when
    /// the white list names the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Averages of a first-level node per second-level node (per destination server of a
/// client, per client of a server).
#[derive(Clone, Debug, Serialize)]
pub struct Averages {
    /// The first-level node's label.
    pub label: String,
    /// Second-level nodes (servers of the client / clients of the server).
    pub per: u64,
    /// Connections per second-level node.
    pub conns: f64,
    /// Packets sent per second-level node.
    pub pkts_out: f64,
    /// Packets received per second-level node.
    pub pkts_in: f64,
    /// Bytes sent per second-level node.
    pub bytes_out: f64,
    /// Bytes received per second-level node.
    pub bytes_in: f64,
    /// Connection uptime per second-level node, s.
    pub uptime: f64,
    /// Channel uptime per second-level node, s (sum of the second-level nodes' channel
    /// uptimes divided by their number).
    pub channel: f64,
}

/// Global averages per first-level node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Global {
    /// First-level nodes in range (all, not only those shown).
    pub nodes: u64,
    /// Totals over all of them.
    pub totals: Totals,
    /// Second-level nodes per first-level node (servers per client …).
    pub per_node_children: f64,
    /// Connections per first-level node.
    pub conns: f64,
    /// Bytes sent per first-level node.
    pub bytes_out: f64,
    /// Bytes received per first-level node.
    pub bytes_in: f64,
    /// Packets per first-level node (both ways).
    pub pkts: f64,
    /// Connection uptime per first-level node, s.
    pub uptime: f64,
}

/// One tree: the whole range, or one modulo-day slot.
#[derive(Clone, Debug, Serialize)]
pub struct Tree {
    /// `Some(k)`: slot `k` of the day (hours `k*period .. (k+1)*period` UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    /// First-level nodes shown.
    pub nodes: Vec<Node>,
    /// Averages of each node shown, per second-level node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub averages: Vec<Averages>,
    /// Global averages.
    pub global: Global,
}

/// A computed view.
#[derive(Clone, Debug, Serialize)]
pub struct View {
    /// Which view.
    pub view: Kind,
    /// Rank key.
    pub by: RankBy,
    /// `top` or `bottom` with its N, or `all`.
    pub rank: String,
    /// Period length, hours.
    pub period_hours: u32,
    /// The trees (one, or one per non-empty slot).
    pub trees: Vec<Tree>,
}

impl Store {
    /// Computes a view.
    pub fn view(&self, o: &ViewOptions) -> Result<View, StoreError> {
        if !matches!(o.period_hours, 1 | 4 | 24) {
            return Err(StoreError::Invalid(format!(
                "period of {} h: expected 1h, 4h or 1d",
                o.period_hours
            )));
        }
        let slots: Vec<Option<u32>> = if o.slots && o.kind != Kind::Time {
            (0..24 / o.period_hours).map(Some).collect()
        } else {
            vec![None]
        };
        let mut trees = Vec::new();
        for slot in slots {
            let t = match o.kind {
                Kind::Clients | Kind::Servers => self.host_tree(o, slot)?,
                Kind::Time => self.time_tree(o)?,
            };
            if slot.is_none() || !t.nodes.is_empty() {
                trees.push(t);
            }
        }
        Ok(View {
            view: o.kind,
            by: o.by,
            rank: match (o.limit, o.bottom) {
                (None, _) => "all".into(),
                (Some(n), false) => format!("top {n}"),
                (Some(n), true) => format!("bottom {n}"),
            },
            period_hours: o.period_hours,
            trees,
        })
    }

    fn order(&self, o: &ViewOptions, tiebreak: &str) -> String {
        let dir = if o.bottom { "ASC" } else { "DESC" };
        format!("{} {dir}, {tiebreak}", o.by.sql())
    }

    fn host_tree(&self, o: &ViewOptions, slot: Option<u32>) -> Result<Tree, StoreError> {
        let clients = o.kind == Kind::Clients;
        let range = HourRange {
            from: o.since_us.map(|s| s.div_euclid(HOUR_US)),
            to: o
                .until_us
                .map(|u| u.saturating_add(HOUR_US - 1).div_euclid(HOUR_US)),
            slot: slot.map(|k| (o.period_hours, k)),
        };
        // Level 1: every node in range, ranked (ties by address, then port).
        let kind = if clients {
            RollKind::Client
        } else {
            RollKind::Server
        };
        let mut firsts: Vec<(RollKey, Totals)> =
            self.rollup(kind, &range, &|_| true)?.into_iter().collect();
        let mut global_totals = Totals::default();
        for (_, t) in &firsts {
            global_totals.merge(t);
        }
        let all_nodes = firsts.len();
        let side = |k: &RollKey| {
            if clients {
                (k.client, 0)
            } else {
                (k.server, k.port)
            }
        };
        firsts.sort_by(|(ka, a), (kb, b)| {
            let (ra, rb) = (o.by.key(a), o.by.key(b));
            let ord = if o.bottom { ra.cmp(&rb) } else { rb.cmp(&ra) };
            ord.then_with(|| side(ka).cmp(&side(kb)))
        });
        if let Some(n) = o.limit {
            firsts.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        let mut nodes: Vec<Node> = firsts
            .iter()
            .map(|(k, t)| {
                let (h, p) = side(k);
                host_node(addr_from_blob(&h), (!clients).then_some(p), *t)
            })
            .collect();
        // Level 2: every pair in range (their number is the global average's), the
        // shown nodes' children from them.
        let shown: FastMap<([u8; 16], u16), usize> = firsts
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (side(k), i))
            .collect();
        let (pairs, all_pairs) = self.rollup_counted(
            RollKind::Pair,
            &range,
            &|k| {
                let parent = if clients {
                    (k.client, 0)
                } else {
                    (k.server, k.port)
                };
                shown.contains_key(&parent)
            },
            true,
        )?;
        let mut kids: Vec<Vec<Node>> = vec![Vec::new(); nodes.len()];
        for (k, t) in &pairs {
            let (parent, child) = if clients {
                ((k.client, 0), (k.server, Some(k.port)))
            } else {
                ((k.server, k.port), (k.client, None))
            };
            if let Some(&i) = shown.get(&parent) {
                kids[i].push(host_node(addr_from_blob(&child.0), child.1, *t));
            }
        }
        let mut averages = Vec::new();
        for (n, mut ks) in nodes.iter_mut().zip(kids) {
            averages.push(averages_of(n, &ks));
            n.children_total = Some(ks.len() as u64);
            rank(&mut ks, o);
            if o.depth >= 2 {
                n.children = ks;
            }
        }
        if o.depth >= 3 {
            self.host_conns(o, slot, clients, &mut nodes)?;
        }
        let d = all_nodes.max(1) as f64;
        let t = global_totals;
        let global = Global {
            nodes: all_nodes as u64,
            totals: t,
            per_node_children: all_pairs as f64 / d,
            conns: t.conns as f64 / d,
            bytes_out: t.bytes_out as f64 / d,
            bytes_in: t.bytes_in as f64 / d,
            pkts: (t.pkts_out as f64 + t.pkts_in as f64) / d,
            uptime: t.dur_us as f64 / 1e6 / d,
        };
        Ok(Tree {
            slot,
            nodes,
            averages,
            global,
        })
    }

    /// Level three of the client and server views: the newest connections of every
    /// shown (client, server, port), in one pass over the flow blocks whose Bloom
    /// filter may hold one of the shown clients and one of the shown servers.
    fn host_conns(
        &self,
        o: &ViewOptions,
        slot: Option<u32>,
        clients: bool,
        nodes: &mut [Node],
    ) -> Result<(), StoreError> {
        type Pair = ([u8; 16], [u8; 16], u16);
        let mut want: FastMap<Pair, (usize, usize)> = FastMap::default();
        for (i, n) in nodes.iter().enumerate() {
            let Some(h) = n.host else { continue };
            for (j, k) in n.children.iter().enumerate() {
                let (c, s, port) = if clients {
                    (Some(h), k.host, k.port)
                } else {
                    (k.host, Some(h), n.port)
                };
                if let (Some(c), Some(s), Some(port)) = (c, s, port) {
                    want.insert((addr_to_blob(c), addr_to_blob(s), port), (i, j));
                }
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        let hashes = |side: fn(&Pair) -> [u8; 16]| -> Vec<u64> {
            let set: HashSet<u64> = want.keys().map(|k| blocks::addr_hash(&side(k))).collect();
            set.into_iter().collect()
        };
        let (ch, sh) = (hashes(|k| k.0), hashes(|k| k.1));
        // A first, cheap test of a row: the last 8 bytes of its client among the wanted
        // clients' (sorted), before the whole key is looked up.
        let tail = |a: &[u8; 16]| {
            u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]])
        };
        let mut tails: Vec<u64> = want.keys().map(|k| tail(&k.0)).collect();
        tails.sort_unstable();
        tails.dedup();
        let (lo, hi) = ts_bounds(o);
        let expected = expected_conns(nodes);
        let found = self.collect_conns(
            o.conns_per_node,
            &expected,
            |b, bloom| {
                b.max_ts >= lo
                    && b.min_ts < hi
                    && may_hold_any(bloom, &ch)
                    && may_hold_any(bloom, &sh)
            },
            |r| {
                if tails.binary_search(&tail(&r.orig_h)).is_err() {
                    return None;
                }
                let in_slot = slot.is_none_or(|k| {
                    let hour = r.ts.div_euclid(HOUR_US).rem_euclid(24);
                    hour / i64::from(o.period_hours) == i64::from(k)
                });
                if r.ts < lo || r.ts >= hi || !in_slot {
                    return None;
                }
                want.get(&(r.orig_h, r.resp_h, r.resp_p)).copied()
            },
        )?;
        for ((i, j), list) in found {
            let k = &mut nodes[i].children[j];
            k.conns_more = (k.totals.conns.max(0) as u64).saturating_sub(list.len() as u64);
            k.conns = list;
        }
        Ok(())
    }

    /// The newest `limit` final connections of each key of `expected` (which holds
    /// how many connections the rollups count for it), over the flow blocks `block`
    /// accepts; `key` places a row (or not). Newest first, ties by storage order,
    /// newest stored first. Blocks are read newest first, and reading stops once every
    /// key is complete: all its connections found, or `limit` of them all newer than
    /// any block left.
    fn collect_conns<K: Eq + Hash + Copy + Send + Sync>(
        &self,
        limit: u64,
        expected: &HashMap<K, u64>,
        block: impl Fn(&BlockRef, &[u8]) -> bool,
        key: impl Fn(&Keys) -> Option<K> + Sync,
    ) -> Result<HashMap<K, Vec<Conn>>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut acc: FastMap<K, (Vec<Listed>, u64)> = FastMap::default();
        let mut refs: Vec<BlockRef> = self.blocks_where(block)?;
        refs.sort_by_key(|b| std::cmp::Reverse((b.max_ts, b.id)));
        let mut open: Vec<K> = expected.keys().copied().collect();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        // Blocks are read from SQLite here, a batch at a time, and decompressed and
        // searched on `workers` threads.
        for batch in refs.chunks(8 * workers) {
            open.retain(|k| {
                let Some((list, seen)) = acc.get_mut(k) else {
                    return expected.get(k).is_some_and(|&e| e > 0);
                };
                if limit == 0 || *seen >= expected.get(k).copied().unwrap_or(0) {
                    return false;
                }
                newest(list, limit);
                !(list.len() == limit && list.last().is_some_and(|c| c.0 > batch[0].max_ts))
            });
            if open.is_empty() {
                break;
            }
            let packed = batch
                .iter()
                .map(|b| self.block_part(b.id, Part::Keys).map(|p| (b.id, p)))
                .collect::<Result<Vec<_>, _>>()?;
            // Which rows of each block belong to a wanted key, from the keys alone.
            let search = |(id, p): &(i64, Vec<u8>)| -> Found<K> {
                let keys = blocks::unpack(p).map_err(|d| (*id, d))?;
                let kl = KeyList::parse(&keys).map_err(|d| (*id, d))?;
                Ok((0..kl.len())
                    .filter_map(|i| key(&kl.get(i)).map(|k| (i, k)))
                    .collect())
            };
            let per = packed.len().div_ceil(workers);
            let results: Vec<Found<K>> = std::thread::scope(|s| {
                let handles: Vec<_> = packed
                    .chunks(per.max(1))
                    .map(|part| s.spawn(|| part.iter().map(search).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join()
                            .unwrap_or_else(|_| vec![Err((0, "search thread failed".into()))])
                    })
                    .collect()
            });
            // The rows found, from the meta frames that hold them.
            for ((id, _), r) in packed.iter().zip(results) {
                let found = r.map_err(|(id, d)| self.bad_block(id, d))?;
                if found.is_empty() {
                    continue;
                }
                let meta = self.block_part(*id, Part::Meta)?;
                let mut mf = MetaFrames::new(&meta).map_err(|d| self.bad_block(*id, d))?;
                for (idx, k) in found {
                    let c = mf
                        .with_row(idx, |r, _| (r.ts, *id, idx, conn_of(r)))
                        .map_err(|d| self.bad_block(*id, d))?;
                    let (list, seen) = acc.entry(k).or_default();
                    *seen += 1;
                    list.push(c);
                    if list.len() >= limit.saturating_mul(2).max(64) {
                        newest(list, limit);
                    }
                }
            }
        }
        Ok(acc
            .into_iter()
            .map(|(k, (mut list, _))| {
                newest(&mut list, limit);
                (k, list.into_iter().map(|(.., c)| c).collect())
            })
            .collect())
    }

    fn time_tree(&self, o: &ViewOptions) -> Result<Tree, StoreError> {
        let err = |e| self.sql("computing the time view", e);
        let bucket_min = i64::from(o.period_hours) * 60;
        let mut cond = String::from("1");
        let mut p = Vec::new();
        if let Some(s) = o.since_us {
            cond.push_str(" AND minute >= ?");
            p.push(Value::Integer(s.div_euclid(MINUTE_US)));
        }
        if let Some(u) = o.until_us {
            cond.push_str(" AND minute < ?");
            p.push(Value::Integer((u + MINUTE_US - 1).div_euclid(MINUTE_US)));
        }
        let mut sql = format!(
            "SELECT minute / {bucket_min} AS b, {SUMS} FROM roll_minute WHERE {cond} GROUP BY b ORDER BY {}",
            self.order(o, "b DESC")
        );
        let mut params = p.clone();
        if let Some(n) = o.limit {
            sql.push_str(" LIMIT ?");
            params.push(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        }
        let mut nodes = Vec::new();
        {
            let mut st = self.conn.prepare(&sql).map_err(err)?;
            let mut rows = st.query(params_from_iter(params.iter())).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let b: i64 = row.get(0).map_err(err)?;
                let start = b * bucket_min * MINUTE_US;
                nodes.push(Node {
                    label: bucket_label(start, o.period_hours),
                    host: None,
                    port: None,
                    start_us: Some(start),
                    totals: Totals::from_row(row, 1).map_err(err)?,
                    children_total: None,
                    children: Vec::new(),
                    conns: Vec::new(),
                    conns_more: 0,
                    score: None,
                });
            }
        }
        for n in nodes.iter_mut() {
            let start = n.start_us.unwrap_or(0);
            let lo = start / MINUTE_US;
            let hi = lo + bucket_min;
            let mut st = self
                .conn
                .prepare_cached(&format!(
                    "SELECT minute, {SUMS} FROM roll_minute WHERE minute >= ? AND minute < ? AND {cond} GROUP BY minute"
                ))
                .map_err(err)?;
            let mut q = vec![Value::Integer(lo), Value::Integer(hi)];
            q.extend(p.iter().cloned());
            let mut rows = st.query(params_from_iter(q.iter())).map_err(err)?;
            let mut kids = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let m: i64 = row.get(0).map_err(err)?;
                let (_, _, _, hh, mm, _) = utc_fields(m * 60);
                kids.push(Node {
                    label: if o.period_hours == 1 {
                        format!("minute {mm}")
                    } else {
                        format!("minute {hh:02}:{mm:02}")
                    },
                    host: None,
                    port: None,
                    start_us: Some(m * MINUTE_US),
                    totals: Totals::from_row(row, 1).map_err(err)?,
                    children_total: None,
                    children: Vec::new(),
                    conns: Vec::new(),
                    conns_more: 0,
                    score: None,
                });
            }
            drop(rows);
            n.children_total = Some(kids.len() as u64);
            rank(&mut kids, o);
            if o.depth >= 2 {
                n.children = kids;
            }
        }
        if o.depth >= 3 {
            self.minute_conns(o, &mut nodes)?;
        }
        let mut global = Global::default();
        for n in &nodes {
            global.totals.merge(&n.totals);
        }
        Ok(Tree {
            slot: None,
            nodes,
            averages: Vec::new(),
            global,
        })
    }
}

impl Store {
    /// Level three of the time view: the newest connections of every shown minute.
    fn minute_conns(&self, o: &ViewOptions, nodes: &mut [Node]) -> Result<(), StoreError> {
        let mut want: HashMap<i64, (usize, usize)> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for (j, k) in n.children.iter().enumerate() {
                if let Some(s) = k.start_us {
                    want.insert(s.div_euclid(MINUTE_US), (i, j));
                }
            }
        }
        let (Some(&lo), Some(&hi)) = (want.keys().min(), want.keys().max()) else {
            return Ok(());
        };
        let (lo, hi) = (
            lo.saturating_mul(MINUTE_US),
            hi.saturating_add(1).saturating_mul(MINUTE_US),
        );
        let expected = expected_conns(nodes);
        let found = self.collect_conns(
            o.conns_per_node,
            &expected,
            |b, _| b.max_ts >= lo && b.min_ts < hi,
            |r| want.get(&r.ts.div_euclid(MINUTE_US)).copied(),
        )?;
        for ((i, j), list) in found {
            let k = &mut nodes[i].children[j];
            k.conns_more = (k.totals.conns.max(0) as u64).saturating_sub(list.len() as u64);
            k.conns = list;
        }
        Ok(())
    }
}

/// The connections the rollups count under each shown second-level node.
fn expected_conns(nodes: &[Node]) -> HashMap<(usize, usize), u64> {
    let mut out = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for (j, k) in n.children.iter().enumerate() {
            out.insert((i, j), k.totals.conns.max(0) as u64);
        }
    }
    out
}

/// First-packet bounds of listed connections: the view's bounds rounded out to the
/// hour, as the rollups behind levels one and two are.
fn ts_bounds(o: &ViewOptions) -> (i64, i64) {
    let lo = o
        .since_us
        .map_or(i64::MIN, |s| s.div_euclid(HOUR_US) * HOUR_US);
    let hi = o.until_us.map_or(i64::MAX, |u| {
        u.saturating_add(HOUR_US - 1).div_euclid(HOUR_US) * HOUR_US
    });
    (lo, hi)
}

/// Keeps the `limit` newest of `list` (by time, then storage order), newest first.
/// What one block gave a connection search: (row, key) pairs, or the block id and what
/// is wrong with it.
type Found<K> = Result<Vec<(usize, K)>, (i64, String)>;

/// A listed connection with its sort key: first packet, block id, row in the block.
type Listed = (i64, i64, usize, Conn);

fn newest(list: &mut Vec<Listed>, limit: usize) {
    list.sort_by_key(|c| std::cmp::Reverse((c.0, c.1, c.2)));
    list.truncate(limit);
}

fn conn_of(r: &Row<'_>) -> Conn {
    let addr = |b: &[u8; 16]| addr_from_blob(b).unwrap_or(IpAddr::from([0u8; 4]));
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Conn {
        uid: r.uid.to_string(),
        orig_h: addr(&r.orig_h),
        orig_p: r.orig_p,
        resp_h: addr(&r.resp_h),
        resp_p: r.resp_p,
        totals: Totals {
            conns: 1,
            pkts_out: clamp(r.orig_pkts),
            pkts_in: clamp(r.resp_pkts),
            bytes_out: clamp(r.orig_bytes),
            bytes_in: clamp(r.resp_bytes),
            dur_us: (r.duration * 1e6).round() as i64,
            first_us: r.ts,
            last_us: r.last_ts,
        },
    }
}

fn host_node(host: Option<IpAddr>, port: Option<u16>, totals: Totals) -> Node {
    Node {
        label: host_label(host, port),
        host,
        port,
        start_us: None,
        totals,
        children_total: None,
        children: Vec::new(),
        conns: Vec::new(),
        conns_more: 0,
        score: None,
    }
}

fn rank(kids: &mut Vec<Node>, o: &ViewOptions) {
    kids.sort_by(|a, b| {
        let (ka, kb) = (o.by.key(&a.totals), o.by.key(&b.totals));
        let ord = if o.bottom { ka.cmp(&kb) } else { kb.cmp(&ka) };
        ord.then_with(|| a.label.cmp(&b.label))
    });
    if let Some(n) = o.limit {
        kids.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
}

fn averages_of(n: &Node, kids: &[Node]) -> Averages {
    let per = kids.len() as u64;
    let d = per.max(1) as f64;
    let t = &n.totals;
    let channel: f64 = kids.iter().map(|k| k.totals.channel_us() as f64).sum();
    Averages {
        label: n.label.clone(),
        per,
        conns: t.conns as f64 / d,
        pkts_out: t.pkts_out as f64 / d,
        pkts_in: t.pkts_in as f64 / d,
        bytes_out: t.bytes_out as f64 / d,
        bytes_in: t.bytes_in as f64 / d,
        uptime: t.dur_us as f64 / 1e6 / d,
        channel: channel / 1e6 / d,
    }
}

fn host_label(h: Option<IpAddr>, port: Option<u16>) -> String {
    let h = h.map_or_else(|| "?".to_string(), |h| h.to_string());
    match port {
        Some(p) if h.contains(':') => format!("[{h}]:{p}"),
        Some(p) => format!("{h}:{p}"),
        None => h,
    }
}

fn bucket_label(start_us: i64, period_hours: u32) -> String {
    let (y, m, d, h, _, _) = utc_fields(start_us.div_euclid(1_000_000));
    match period_hours {
        24 => format!("{d:02}/{m:02}/{y}"),
        1 => format!("{d:02}/{m:02}/{y} at {h:02}H"),
        p => format!("{d:02}/{m:02}/{y} at {h:02}H-{:02}H", h + p),
    }
}

/// Seconds as the seed prints them: whole seconds bare, otherwise up to microseconds.
pub fn secs(us: i64) -> String {
    if us % 1_000_000 == 0 {
        format!("{}", us / 1_000_000)
    } else {
        let s = format!("{:.6}", us as f64 / 1e6);
        s.trim_end_matches('0').to_string()
    }
}

fn stamps(t: &Totals) -> String {
    format!(
        "({}-{})",
        t.first_us.div_euclid(1_000_000),
        t.last_us.div_euclid(1_000_000)
    )
}

fn counts(t: &Totals) -> String {
    format!(
        "packets rx={} tx={}, bytes rx={} tx={}, Uptime {}",
        t.pkts_in,
        t.pkts_out,
        t.bytes_in,
        t.bytes_out,
        secs(t.dur_us)
    )
}

fn conn_label(c: &Conn, kind: Kind) -> String {
    let ep = |h: IpAddr, p: u16| host_label(Some(h), Some(p));
    match kind {
        Kind::Time => format!("{}->{}", ep(c.orig_h, c.orig_p), ep(c.resp_h, c.resp_p)),
        _ => ep(c.orig_h, c.orig_p),
    }
}

/// Renders a view as the seed's text tree: `o` first level, `$` second, `#` connections
/// (indented by level), then the averages.
pub fn render_text(v: &View) -> String {
    let mut s = String::new();
    let what = match v.view {
        Kind::Clients => "client",
        Kind::Servers => "server",
        Kind::Time => "time",
    };
    for t in &v.trees {
        let _ = write!(s, "Statistics per {what} view ({}, by {:?}", v.rank, v.by);
        if let Some(k) = t.slot {
            let p = v.period_hours;
            let _ = write!(
                s,
                ", period {:02}H-{:02}H UTC of every day",
                k * p,
                (k + 1) * p
            );
        } else if v.view == Kind::Time {
            s.push_str(", UTC");
        }
        let _ = writeln!(s, "): {} connections", t.global.totals.conns);
        for n in &t.nodes {
            let _ = writeln!(
                s,
                "o {} {} : TcpCon {}, {}{}",
                n.label,
                stamps(&n.totals),
                n.totals.conns,
                counts(&n.totals),
                n.score.map_or(String::new(), |p| format!(", score {p:.6}"))
            );
            for k in &n.children {
                let _ = writeln!(
                    s,
                    "  $ {} {}: TcpCon {}, {}",
                    k.label,
                    stamps(&k.totals),
                    k.totals.conns,
                    counts(&k.totals)
                );
                for c in &k.conns {
                    let _ = writeln!(
                        s,
                        "    # {} {}: {}",
                        conn_label(c, v.view),
                        stamps(&c.totals),
                        counts(&c.totals)
                    );
                }
                if k.conns_more > 0 {
                    let _ = writeln!(s, "    # … {} more connections", k.conns_more);
                }
            }
            if let Some(total) = n.children_total {
                let shown = n.children.len() as u64;
                if shown > 0 && total > shown {
                    let _ = writeln!(s, "  $ … {} more", total - shown);
                }
            }
        }
        if !t.averages.is_empty() {
            let per = if v.view == Kind::Clients {
                "destination server"
            } else {
                "client"
            };
            let _ = writeln!(s, "Averages per {per}:");
            for a in &t.averages {
                let _ = writeln!(
                    s,
                    "= {}: {} x {per}; TcpCon {:.2}, packets rx={:.2} tx={:.2}, bytes rx={:.2} tx={:.2}, Uptime {:.2}, channel {:.2}",
                    a.label, a.per, a.conns, a.pkts_in, a.pkts_out, a.bytes_in, a.bytes_out, a.uptime, a.channel
                );
            }
        }
        if v.view != Kind::Time {
            let g = &t.global;
            let _ = writeln!(
                s,
                "Global averages over {} {what}s: {:.2} x {}; TcpCon {:.2}, packets {:.2}, bytes rx={:.2} tx={:.2}, Uptime {:.2}",
                g.nodes,
                g.per_node_children,
                if v.view == Kind::Clients { "server" } else { "client" },
                g.conns,
                g.pkts,
                g.bytes_in,
                g.bytes_out,
                g.uptime
            );
        }
    }
    s
}
