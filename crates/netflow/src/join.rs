//! One-way export records into bidirectional flow records (seed 002's "combine the two
//! records of a conversation", done without its trap of merging sessions that reuse
//! ports).
//!
//! Records are grouped under a direction-free key per exporter (the same [`Key`] the
//! flow table uses). A record joins an open flow when it is its reverse direction and
//! their active times overlap (within `slack` seconds: exporters' clocks and their
//! millisecond stamps differ), or when it continues the same direction (an exporter's
//! active timeout splits long flows) within `idle` seconds. It starts a new flow when
//! neither holds, or when the open flow had closed (FIN/RST) and the record opens
//! again with a SYN: two sessions on the same ports at different times stay two.
//!
//! The originator is the side that started first (exporters stamp milliseconds; a
//! tie falls to the server-port heuristic). Each record says how it was joined
//! (`export.join`: `paired`, `biflow` for RFC 5103 records, `one_way`) and, when two
//! directions were paired, how sure the pairing is (`export.join_confidence`, 0–1):
//! 0.4 for the shared 5-tuple, up to 0.3 for how well the active times overlap, up to
//! 0.3 for how well the TCP flags (or ICMP types) fit a request and its answer.
//!
//! Counters are scaled by the sampling rate (an estimate of the traffic, as Akvorado
//! and nfacctd's renormalisation give); the rate is on the record. Payload bytes are
//! estimated from IP bytes minus 40 (TCP over IPv4; 60 over IPv6) or 28/48 bytes of
//! headers per packet; a TCP side without PSH whose packets average no more than
//! headers with 32 bytes of options carried none. Flows end `idle` seconds of arrival time after their last
//! record, or `linger` seconds after a record with FIN or RST; at most `max_flows`
//! are open, the oldest is ended early (`cause: evicted`, counted).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use tunnelwatch_flow::key::{community_id, icmp_counterpart, uid, Endpoints, Key};
use tunnelwatch_flow::unions::{conn_state, flag, letters};
use tunnelwatch_flow::FlowConfig;
use tunnelwatch_model::{
    Cause, DirectionStats, Dynamics, ExportFacts, FlowRecord, IpProto, Letters, RecordSink,
    TcpFacts, Timestamp,
};

use crate::wire::{SideDynamics, UniFlow};

const SEC: i64 = 1_000_000_000;

/// Timeouts and bounds, in seconds.
#[derive(Clone, Debug)]
pub struct JoinConfig {
    /// A flow with no record for this long (arrival time) ends.
    pub idle: f64,
    /// A flow that closed (FIN/RST) ends this long after its last record.
    pub linger: f64,
    /// Clock tolerance when comparing the two directions' active times.
    pub slack: f64,
    /// Open flows at most.
    pub max_flows: usize,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            idle: 300.0,
            linger: 30.0,
            slack: 5.0,
            max_flows: 1_000_000,
        }
    }
}

/// One direction's counters.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    pkts: u64,
    bytes: u64,
    flags: u8,
    start: Timestamp,
    end: Timestamp,
    records: u32,
    /// The exporter said this direction's flow ended (flowEndReason idle, end of
    /// flow, forced end or lack of resources; not an active timeout).
    ended: bool,
    /// Exact payload bytes from the exporter, while every record gave them.
    payload: Option<u64>,
    keystrokes: u64,
    retransmissions: u64,
}

impl Side {
    /// Adds a record's dynamics (tunnelwatch exporters send them).
    fn dynamics(&mut self, d: Option<SideDynamics>) {
        let d = d.unwrap_or_default();
        self.payload = match (self.records, self.payload, d.payload) {
            (1, _, Some(p)) => Some(p),
            (_, Some(a), Some(p)) => Some(a.saturating_add(p)),
            _ => None,
        };
        self.keystrokes = self.keystrokes.saturating_add(d.keystrokes);
        self.retransmissions = self.retransmissions.saturating_add(d.retransmissions);
    }

    fn add(&mut self, pkts: u64, bytes: u64, flags: u8, start: Timestamp, end: Timestamp) {
        if self.records == 0 {
            (self.start, self.end) = (start, end);
        } else {
            self.start = self.start.min(start);
            self.end = self.end.max(end);
        }
        self.pkts = self.pkts.saturating_add(pkts);
        self.bytes = self.bytes.saturating_add(bytes);
        self.flags |= flags;
        self.records += 1;
    }

    fn closed(&self) -> bool {
        self.flags & (flag::FIN | flag::RST) != 0
    }

    /// Whether a later record of the same direction can continue this one: it starts
    /// within this one's time (an interim record stamped with the flow's start) or at
    /// most `idle` after it (an exporter's active timeout split the flow).
    fn continues(&self, start: Timestamp, new_session: bool, slack: i64, idle: i64) -> bool {
        !self.ended
            && !new_session
            && start.nanos_since(self.start) >= -slack
            && start.nanos_since(self.end) <= idle
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    exporter: IpAddr,
    key: Key,
}

/// A flow being joined. `sides[0]` sends from the key's `a` endpoint.
struct Open {
    id: u64,
    ends: [(IpAddr, u16); 2],
    proto: u8,
    /// ICMP types per side (`type << 8 | code`).
    icmp: [Option<u16>; 2],
    sides: [Side; 2],
    biflow: bool,
    /// Side 0 or 1 is the initiator per the exporter (RFC 5103 biflowDirection).
    initiator: Option<usize>,
    version: u16,
    domain: u32,
    sampling: u32,
    vlan: Option<u16>,
    end_reason: Option<u8>,
    last_arrival: Timestamp,
    /// Export records taken.
    records: u32,
}

impl Open {
    fn closed(&self) -> bool {
        self.sides.iter().any(Side::closed)
    }

    fn due(&self, cfg: &JoinConfig) -> Timestamp {
        let wait = if self.closed() { cfg.linger } else { cfg.idle };
        self.last_arrival.add_nanos(((wait * 1e9) as i64).max(SEC))
    }
}

/// Counters of the joiner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// One-way records taken.
    pub records: u64,
    /// Records that were RFC 5103 biflows.
    pub biflows: u64,
    /// Records joined to the reverse direction of an open flow.
    pub paired: u64,
    /// Records that continued a direction already open.
    pub continued: u64,
    /// Flows written.
    pub flows: u64,
    /// Flows ended early because `max_flows` were open.
    pub evicted: u64,
}

/// The joiner.
pub struct Joiner {
    cfg: JoinConfig,
    server_ports: FlowConfig,
    open: HashMap<FlowKey, Vec<Open>>,
    /// (due, id) → key, for expiry in time order.
    deadlines: BTreeSet<(Timestamp, u64, FlowKeyOrd)>,
    live: usize,
    next_id: u64,
    now: Timestamp,
    stats: JoinStats,
}

/// [`FlowKey`] ordered for the deadline set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKeyOrd([u8; 16], [u8; 16], [u8; 16], u16, u16, u8, u8);

impl From<FlowKey> for FlowKeyOrd {
    fn from(k: FlowKey) -> Self {
        let e = match k.exporter {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        FlowKeyOrd(
            e,
            k.key.a,
            k.key.b,
            k.key.pa,
            k.key.pb,
            k.key.proto,
            k.key.one_way,
        )
    }
}

impl FlowKeyOrd {
    fn key(&self) -> FlowKey {
        let e = std::net::Ipv6Addr::from(self.0);
        FlowKey {
            exporter: e.to_ipv4_mapped().map_or(IpAddr::V6(e), IpAddr::V4),
            key: Key {
                a: self.1,
                b: self.2,
                pa: self.3,
                pb: self.4,
                proto: self.5,
                one_way: self.6,
            },
        }
    }
}

fn secs(s: f64) -> i64 {
    (s * 1e9) as i64
}

impl Joiner {
    /// A joiner with these timeouts.
    pub fn new(cfg: JoinConfig) -> Self {
        Joiner {
            cfg,
            server_ports: FlowConfig::default(),
            open: HashMap::new(),
            deadlines: BTreeSet::new(),
            live: 0,
            next_id: 0,
            now: Timestamp(i64::MIN),
            stats: JoinStats::default(),
        }
    }

    /// What has been counted so far.
    pub fn stats(&self) -> &JoinStats {
        &self.stats
    }

    /// Flows open now.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Takes one record; flows that ended before its arrival go to `out`.
    pub fn push(&mut self, u: &UniFlow, out: &mut dyn RecordSink) {
        self.stats.records += 1;
        self.advance(u.arrival, out);
        let v6 = u.src.is_ipv6();
        let (sport, dport, one_way) = match u.icmp {
            Some(tc) => {
                let (d, one_way) = icmp_counterpart(v6, (tc >> 8) as u8, tc as u8);
                (tc >> 8, d, one_way)
            }
            None => (u.sport, u.dport, false),
        };
        let ep = Endpoints {
            src: u.src,
            sport,
            dst: u.dst,
            dport,
            proto: IpProto(u.proto),
            one_way,
        };
        let (key, src_first) = ep.key();
        let dir = usize::from(!src_first);
        let fk = FlowKey {
            exporter: u.exporter,
            key,
        };
        let rate = u64::from(u.sampling.max(1));
        let (pkts, bytes) = (u.pkts.saturating_mul(rate), u.bytes.saturating_mul(rate));
        let slack = secs(self.cfg.slack);
        let idle = secs(self.cfg.idle);
        let list = self.open.entry(fk).or_default();
        // Where does the record go: the reverse of an open flow, or its continuation?
        let reopen = u.tcp_flags & (flag::SYN | flag::ACK) == flag::SYN;
        let mut best: Option<(usize, bool, i64)> = None;
        if u.reverse.is_some() {
            // A biflow continues an open biflow of the same conversation (interim
            // records, an exporter's active timeout).
            for (i, f) in list.iter().enumerate() {
                let s = &f.sides[dir];
                if f.biflow && s.continues(u.start, reopen && f.closed(), slack, idle) {
                    best = Some((i, false, -u.start.nanos_since(s.end).abs()));
                }
            }
        } else {
            for (i, f) in list.iter().enumerate() {
                if f.biflow {
                    continue;
                }
                let (mine, theirs) = (&f.sides[dir], &f.sides[1 - dir]);
                if mine.records > 0 {
                    if mine.continues(u.start, reopen && f.closed(), slack, idle) {
                        let score = -u.start.nanos_since(mine.end).abs();
                        if best.is_none_or(|b| score > b.2) {
                            best = Some((i, false, score));
                        }
                    }
                } else if theirs.records > 0 {
                    let gap = overlap_gap(theirs.start, theirs.end, u.start, u.end);
                    let after_close = theirs.closed() && reopen && u.start > theirs.end;
                    if gap <= slack && !after_close {
                        let score = -gap;
                        if best.is_none_or(|b| score > b.2) {
                            best = Some((i, true, score));
                        }
                    }
                }
            }
        }
        let i = match best {
            Some((i, pair, _)) => {
                if pair {
                    self.stats.paired += 1;
                } else {
                    self.stats.continued += 1;
                }
                let f = &mut list[i];
                self.deadlines.remove(&(f.due(&self.cfg), f.id, fk.into()));
                i
            }
            None => {
                self.next_id += 1;
                self.live += 1;
                let ends = if src_first {
                    [(u.src, sport), (u.dst, dport)]
                } else {
                    [(u.dst, dport), (u.src, sport)]
                };
                list.push(Open {
                    id: self.next_id,
                    ends,
                    proto: u.proto,
                    icmp: [None; 2],
                    sides: [Side::default(); 2],
                    biflow: u.reverse.is_some(),
                    initiator: None,
                    version: u.version,
                    domain: u.domain,
                    sampling: u.sampling,
                    vlan: u.vlan,
                    end_reason: None,
                    last_arrival: u.arrival,
                    records: 0,
                });
                list.len() - 1
            }
        };
        let f = &mut list[i];
        f.records = f.records.saturating_add(1);
        // flowEndReason 1 (idle), 3 (end detected), 4 (forced), 5 (lack of resources):
        // the exporter ended this flow; 2 (active timeout) means more will come.
        let ended = matches!(u.end_reason, Some(1 | 3 | 4 | 5));
        f.sides[dir].add(pkts, bytes, u.tcp_flags, u.start, u.end);
        f.sides[dir].dynamics(u.dynamics.map(|d| d[0]));
        f.sides[dir].ended = ended;
        f.icmp[dir] = f.icmp[dir].or(u.icmp);
        if let Some(r) = u.reverse {
            self.stats.biflows += 1;
            f.sides[1 - dir].add(
                r.pkts.saturating_mul(rate),
                r.bytes.saturating_mul(rate),
                r.tcp_flags,
                u.start,
                u.end,
            );
            f.sides[1 - dir].dynamics(u.dynamics.map(|d| d[1]));
            f.sides[1 - dir].ended = ended;
            // biflowDirection 1: the source initiated; 2: the destination did.
            f.initiator = match u.biflow_direction {
                Some(2) => Some(1 - dir),
                _ => Some(dir),
            };
        }
        f.end_reason = u.end_reason.or(f.end_reason);
        f.sampling = f.sampling.max(u.sampling);
        f.last_arrival = f.last_arrival.max(u.arrival);
        let (due, id) = (f.due(&self.cfg), f.id);
        self.deadlines.insert((due, id, fk.into()));
        if self.live > self.cfg.max_flows {
            self.evict(out);
        }
    }

    /// The clock reached `now`: flows whose time ran out end.
    pub fn advance(&mut self, now: Timestamp, out: &mut dyn RecordSink) {
        self.now = self.now.max(now);
        while let Some(&(due, id, k)) = self.deadlines.first() {
            if due > self.now {
                break;
            }
            self.deadlines.pop_first();
            self.end(k.key(), id, Cause::Timeout, out);
        }
    }

    /// End of input: every open flow ends.
    pub fn finish(&mut self, out: &mut dyn RecordSink) {
        while let Some((_, id, k)) = self.deadlines.pop_first() {
            self.end(k.key(), id, Cause::Timeout, out);
        }
    }

    fn evict(&mut self, out: &mut dyn RecordSink) {
        // The flow heard from least recently goes first.
        if let Some((_, id, k)) = self.deadlines.pop_first() {
            self.stats.evicted += 1;
            self.end(k.key(), id, Cause::Evicted, out);
        }
    }

    fn end(&mut self, fk: FlowKey, id: u64, cause: Cause, out: &mut dyn RecordSink) {
        let Some(list) = self.open.get_mut(&fk) else {
            return;
        };
        let Some(i) = list.iter().position(|f| f.id == id) else {
            return;
        };
        let f = list.swap_remove(i);
        if list.is_empty() {
            self.open.remove(&fk);
        }
        self.live -= 1;
        self.stats.flows += 1;
        let cause = match (cause, f.closed()) {
            (Cause::Timeout, true) => Cause::End,
            (c, _) => c,
        };
        out.emit(self.record(fk, f, cause));
    }

    fn record(&self, fk: FlowKey, f: Open, cause: Cause) -> FlowRecord {
        let tcp = f.proto == IpProto::TCP.0;
        let both = f.sides.iter().all(|s| s.records > 0);
        // The originator: the exporter's word, else the side that started first, else
        // the server-port heuristic.
        let o = f.initiator.unwrap_or_else(|| {
            let [s0, s1] = &f.sides;
            match (s0.records > 0, s1.records > 0) {
                (true, false) => self.heuristic(&f, 0),
                (false, true) => self.heuristic(&f, 1),
                _ => match s0.start.cmp(&s1.start) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Greater => 1,
                    std::cmp::Ordering::Equal => self.tie(&f),
                },
            }
        });
        let r = 1 - o;
        let (os, rs) = (f.sides[o], f.sides[r]);
        let v6 = f.ends[0].0.is_ipv6();
        let hdr = match (tcp, v6) {
            (true, false) => 40,
            (true, true) => 60,
            (false, false) => 28,
            (false, true) => 48,
        };
        // Without PSH and with packets no larger than headers with options, a TCP
        // side carried no data (pure ACKs, SYNs, FINs).
        let payload = |s: &Side| {
            if let Some(p) = s.payload {
                return p; // a tunnelwatch exporter said
            }
            let headers = s.pkts.saturating_mul(hdr);
            if tcp && s.flags & flag::PSH == 0 && s.bytes <= s.pkts.saturating_mul(hdr + 32) {
                0
            } else {
                s.bytes.saturating_sub(headers)
            }
        };
        // Zeek counts payload bytes only for transports it follows.
        let zeek_bytes = |s: &Side| {
            if matches!(f.proto, 1 | 6 | 17 | 58) {
                payload(s)
            } else {
                0
            }
        };
        let start = [os, rs]
            .iter()
            .filter(|s| s.records > 0)
            .map(|s| s.start)
            .min()
            .unwrap_or(os.start);
        let last = [os, rs]
            .iter()
            .filter(|s| s.records > 0)
            .map(|s| s.end)
            .max()
            .unwrap_or(os.end);
        let syn_seen = tcp && os.flags & flag::SYN != 0;
        let state = conn_state(
            IpProto(f.proto),
            syn_seen,
            (os.flags, os.pkts),
            (rs.flags, rs.pkts),
        );
        let mut history = String::new();
        if tcp {
            let mut put = |side: &Side, orig: bool, bit: u8, c: char| {
                if side.flags & bit != 0 || (bit == 0 && payload(side) > 0) {
                    history.push(if orig { c.to_ascii_uppercase() } else { c });
                }
            };
            put(&os, true, flag::SYN, 's');
            put(&rs, false, flag::SYN, 'h');
            put(&os, true, 0, 'd');
            put(&rs, false, 0, 'd');
            put(&os, true, flag::FIN, 'f');
            put(&rs, false, flag::FIN, 'f');
            put(&os, true, flag::RST, 'r');
            put(&rs, false, flag::RST, 'r');
        }
        let dir = |s: &Side| DirectionStats {
            payload_bytes: payload(s),
            keystrokes: s.keystrokes,
            retransmissions: s.retransmissions,
            flags: if tcp {
                letters(s.flags)
            } else {
                Letters::default()
            },
            ..Default::default()
        };
        let (orig, resp) = (f.ends[o], f.ends[r]);
        // ICMP: the originator's type, and its counterpart (or the code).
        let (oport, rport) = (orig.1, resp.1);
        let ep = Endpoints {
            src: orig.0,
            sport: oport,
            dst: resp.0,
            dport: rport,
            proto: IpProto(f.proto),
            one_way: fk.key.one_way == 1,
        };
        let join = if f.biflow {
            "biflow"
        } else if both {
            "paired"
        } else {
            "one_way"
        };
        let confidence = match join {
            "biflow" => Some(1.0),
            "paired" => Some(self.confidence(&f, o)),
            _ => None,
        };
        FlowRecord {
            uid: uid(&fk.key, start, f.id),
            community_id: community_id(&ep),
            ts: start,
            last_ts: last,
            duration: FlowRecord::duration_of(start, last),
            proto: IpProto(f.proto).transport_name().to_string(),
            ip_proto: f.proto,
            orig_h: orig.0,
            orig_p: oport,
            resp_h: resp.0,
            resp_p: rport,
            service: None,
            orig_pkts: os.pkts,
            resp_pkts: rs.pkts,
            orig_bytes: zeek_bytes(&os),
            resp_bytes: zeek_bytes(&rs),
            orig_ip_bytes: os.bytes,
            resp_ip_bytes: rs.bytes,
            conn_state: state,
            history,
            cause,
            missed_bytes: 0,
            vlan: f.vlan,
            inner_vlan: None,
            tunnel_parents: Vec::new(),
            signatures: Vec::new(),
            dynamics: Dynamics {
                orig: dir(&os),
                resp: dir(&rs),
            },
            tcp: tcp.then(TcpFacts::default),
            icmp: None,
            app: None,
            export: Some(ExportFacts {
                source: match f.version {
                    5 => "netflow_v5",
                    9 => "netflow_v9",
                    _ => "ipfix",
                }
                .to_string(),
                exporter: fk.exporter,
                domain: f.domain,
                records: f.records,
                sampling: f.sampling,
                join: join.to_string(),
                join_confidence: confidence,
                end_reason: f.end_reason,
            }),
        }
    }

    /// Side `s` alone: it is the originator unless it sends from a server port to a
    /// port that is not one.
    fn heuristic(&self, f: &Open, s: usize) -> usize {
        let tcp = f.proto == IpProto::TCP.0;
        let (from, to) = (f.ends[s].1, f.ends[1 - s].1);
        if f.icmp[s].is_none()
            && f.sides[s].flags & flag::SYN == 0
            && self.server_ports.is_likely_server(from, tcp)
            && !self.server_ports.is_likely_server(to, tcp)
        {
            1 - s
        } else {
            s
        }
    }

    /// Both directions started in the same millisecond (exporters' resolution): the
    /// side sending an ICMP request, else the side that is not on a server port, else
    /// the side whose flags have a SYN the other's lack, else the higher port.
    fn tie(&self, f: &Open) -> usize {
        let tcp = f.proto == IpProto::TCP.0;
        if IpProto(f.proto).is_icmp() {
            // `ends[s].1` is the type side `s` sends.
            let request = |s: usize| {
                matches!(
                    f.ends[s].1,
                    8 | 10 | 13 | 15 | 17 | 128 | 130 | 133 | 135 | 139 | 144
                )
            };
            return usize::from(!request(0) && request(1));
        }
        let server = |s: usize| self.server_ports.is_likely_server(f.ends[s].1, tcp);
        let syn = |s: usize| f.sides[s].flags & flag::SYN != 0;
        match (server(0), server(1)) {
            (true, false) => 1,
            (false, true) => 0,
            _ if syn(0) != syn(1) => usize::from(syn(1)),
            _ => usize::from(f.ends[1].1 > f.ends[0].1),
        }
    }

    /// How sure the pairing of the two sides is (see the module text).
    fn confidence(&self, f: &Open, o: usize) -> f64 {
        let (a, b) = (&f.sides[o], &f.sides[1 - o]);
        let slack = secs(self.cfg.slack).max(1) as f64;
        // Overlap: shared time over the union, or for instants how close they are.
        let inter = a.end.min(b.end).nanos_since(a.start.max(b.start));
        let union = a.end.max(b.end).nanos_since(a.start.min(b.start));
        let timing = if inter > 0 && union > 0 {
            inter as f64 / union as f64
        } else {
            let gap = overlap_gap(a.start, a.end, b.start, b.end) as f64;
            (1.0 - gap / slack).clamp(0.0, 1.0)
        };
        let fit = if f.proto == IpProto::TCP.0 {
            let (of, rf) = (a.flags, b.flags);
            let answered =
                rf & (flag::SYN | flag::ACK) == flag::SYN | flag::ACK || rf & flag::RST != 0;
            if of & flag::SYN != 0 && answered {
                1.0 // a handshake (SYN, SYN+ACK back) or a refusal (SYN, RST back)
            } else if of & flag::ACK != 0 && rf & flag::ACK != 0 {
                0.5 // both sides in mid-stream
            } else {
                0.0
            }
        } else if let (Some(x), Some(y)) = (f.icmp[o], f.icmp[1 - o]) {
            let v6 = f.ends[0].0.is_ipv6();
            let (answer, _) = icmp_counterpart(v6, (x >> 8) as u8, x as u8);
            if answer == y >> 8 {
                1.0
            } else {
                0.0
            }
        } else {
            0.5
        };
        ((0.4 + 0.3 * timing + 0.3 * fit) * 100.0).round() / 100.0
    }
}

/// Nanoseconds between two intervals (0 when they overlap).
fn overlap_gap(s1: Timestamp, e1: Timestamp, s2: Timestamp, e2: Timestamp) -> i64 {
    if s2 > e1 {
        s2.nanos_since(e1)
    } else if s1 > e2 {
        s1.nanos_since(e2)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Out(Vec<FlowRecord>);
    impl RecordSink for Out {
        fn emit(&mut self, r: FlowRecord) {
            self.0.push(r);
        }
    }

    const S: i64 = SEC;

    /// A one-way TCP record `src:sport -> dst:dport` active from `t0` to `t1` seconds,
    /// arriving at `t1 + 1`.
    fn rec(src: &str, sport: u16, dst: &str, dport: u16, t: (i64, i64), flags: u8) -> UniFlow {
        UniFlow {
            version: 9,
            exporter: "192.0.2.1".parse().unwrap(),
            domain: 0,
            arrival: Timestamp((t.1 + 1) * S),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            proto: 6,
            icmp: None,
            pkts: 10,
            bytes: 4000,
            tcp_flags: flags,
            start: Timestamp(t.0 * S),
            end: Timestamp(t.1 * S),
            sampling: 1,
            end_reason: None,
            biflow_direction: None,
            reverse: None,
            vlan: None,
            dynamics: None,
        }
    }

    fn join(recs: &[UniFlow]) -> Vec<FlowRecord> {
        let mut j = Joiner::new(JoinConfig::default());
        let mut out = Out(Vec::new());
        for r in recs {
            j.push(r, &mut out);
        }
        j.finish(&mut out);
        out.0
    }

    const SAF: u8 = flag::SYN | flag::ACK | flag::FIN | flag::PSH;

    #[test]
    fn two_directions_of_a_session_become_one_flow_with_the_earlier_side_originating() {
        // The answer is exported first; the request started 20 ms earlier.
        let mut req = rec("10.0.0.1", 40000, "10.0.0.2", 443, (100, 130), SAF);
        req.start = Timestamp(100 * S - 20_000_000);
        let resp = rec("10.0.0.2", 443, "10.0.0.1", 40000, (100, 130), SAF);
        let f = join(&[resp, req]);
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(
            (f.orig_h.to_string().as_str(), f.orig_p),
            ("10.0.0.1", 40000)
        );
        assert_eq!((f.orig_pkts, f.resp_pkts, f.orig_ip_bytes), (10, 10, 4000));
        assert_eq!(f.conn_state.as_str(), "SF");
        let e = f.export.as_ref().unwrap();
        assert_eq!(e.join, "paired");
        assert_eq!(e.records, 2);
        // Same 5-tuple, full overlap, a handshake in the flags.
        assert!(e.join_confidence.unwrap() > 0.95, "{e:?}");
    }

    #[test]
    fn sessions_reusing_ports_at_different_times_stay_apart() {
        let a = [
            rec("10.0.0.1", 40000, "10.0.0.2", 80, (100, 110), SAF),
            rec("10.0.0.2", 80, "10.0.0.1", 40000, (100, 110), SAF),
            // Ten minutes later, the same ports again: a new SYN after a FIN.
            rec("10.0.0.1", 40000, "10.0.0.2", 80, (700, 705), SAF),
            rec("10.0.0.2", 80, "10.0.0.1", 40000, (700, 705), SAF),
        ];
        let f = join(&a);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f
            .iter()
            .all(|r| r.export.as_ref().unwrap().join == "paired"));
        assert_ne!(f[0].uid, f[1].uid);
        // Even within the idle time, a SYN after both sides closed is a new session.
        let b = [
            rec("10.0.0.1", 40000, "10.0.0.2", 80, (100, 110), SAF),
            rec("10.0.0.2", 80, "10.0.0.1", 40000, (100, 110), SAF),
            rec(
                "10.0.0.1",
                40000,
                "10.0.0.2",
                80,
                (140, 150),
                flag::SYN | flag::ACK,
            ),
        ];
        assert_eq!(join(&b).len(), 2);
    }

    #[test]
    fn a_reply_that_does_not_overlap_in_time_is_not_joined() {
        let a = [
            rec("10.0.0.1", 5353, "10.0.0.2", 53, (100, 100), 0),
            rec("10.0.0.2", 53, "10.0.0.1", 5353, (200, 200), 0),
        ];
        let f = join(&a);
        assert_eq!(f.len(), 2);
        assert!(f
            .iter()
            .all(|r| r.export.as_ref().unwrap().join == "one_way"));
        assert!(f
            .iter()
            .all(|r| r.export.as_ref().unwrap().join_confidence.is_none()));
    }

    #[test]
    fn active_timeout_splits_are_continued_into_one_flow() {
        let a = [
            rec(
                "10.0.0.1",
                40000,
                "10.0.0.2",
                22,
                (0, 60),
                flag::SYN | flag::ACK | flag::PSH,
            ),
            rec(
                "10.0.0.2",
                22,
                "10.0.0.1",
                40000,
                (0, 60),
                flag::SYN | flag::ACK | flag::PSH,
            ),
            rec(
                "10.0.0.1",
                40000,
                "10.0.0.2",
                22,
                (60, 120),
                flag::ACK | flag::PSH,
            ),
            rec(
                "10.0.0.2",
                22,
                "10.0.0.1",
                40000,
                (60, 120),
                flag::ACK | flag::PSH,
            ),
        ];
        let f = join(&a);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].orig_pkts, f[0].resp_pkts), (20, 20));
        assert_eq!(f[0].duration, 120.0);
        assert_eq!(f[0].export.as_ref().unwrap().records, 4);
    }

    #[test]
    fn a_lone_answer_from_a_server_port_is_turned_around() {
        let f = join(&[rec("10.0.0.2", 443, "10.0.0.1", 51000, (5, 6), flag::ACK)]);
        assert_eq!((f[0].orig_p, f[0].resp_p), (51000, 443));
        assert_eq!((f[0].orig_pkts, f[0].resp_pkts), (0, 10));
        assert_eq!(f[0].conn_state.as_str(), "OTH");
    }

    #[test]
    fn biflows_pass_through_and_sampling_scales_counters() {
        let mut b = rec("10.0.0.1", 40000, "10.0.0.2", 80, (0, 1), SAF);
        b.reverse = Some(crate::wire::Reverse {
            pkts: 3,
            bytes: 900,
            tcp_flags: SAF,
        });
        b.biflow_direction = Some(2); // the destination initiated
        b.sampling = 100;
        let f = join(&[b]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].orig_h.to_string().as_str(), f[0].orig_pkts),
            ("10.0.0.2", 300)
        );
        assert_eq!(f[0].resp_ip_bytes, 400_000);
        let e = f[0].export.as_ref().unwrap();
        assert_eq!(
            (e.join.as_str(), e.join_confidence, e.sampling),
            ("biflow", Some(1.0), 100)
        );
    }

    #[test]
    fn icmp_echo_request_and_reply_pair_like_zeek_keys_them() {
        let mut q = rec("10.0.0.1", 0, "10.0.0.2", 0, (0, 3), 0);
        (q.proto, q.icmp) = (1, Some(8 << 8));
        let mut a = rec("10.0.0.2", 0, "10.0.0.1", 0, (0, 3), 0);
        (a.proto, a.icmp) = (1, Some(0));
        let f = join(&[a, q]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].orig_p, f[0].resp_p), (8, 0));
        assert!(f[0].export.as_ref().unwrap().join_confidence.unwrap() > 0.95);
    }

    #[test]
    fn the_flow_cap_ends_the_oldest_flow_early() {
        let mut j = Joiner::new(JoinConfig {
            max_flows: 2,
            ..JoinConfig::default()
        });
        let mut out = Out(Vec::new());
        for p in 0..5u16 {
            j.push(
                &rec(
                    "10.0.0.1",
                    1000 + p,
                    "10.0.0.2",
                    80,
                    (i64::from(p), i64::from(p)),
                    0,
                ),
                &mut out,
            );
        }
        assert_eq!(j.live(), 2);
        assert_eq!(j.stats().evicted, 3);
        assert!(out.0.iter().all(|r| r.cause == Cause::Evicted));
        assert_eq!(out.0[0].orig_p, 1000);
    }
}
