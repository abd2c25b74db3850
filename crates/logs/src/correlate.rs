//! Firewall-log events into flow records, as seed 003's SEC rules do it: one context
//! per conversation under a direction-free key (the line `A,p -> B,q` and the reply
//! `B,q -> A,p` land in the same flow), opened by a SYN line with its sender as the
//! originator, or by any line when no SYN was logged (the responder is then chosen by
//! Zeek's port heuristic); a FIN or RST starts a linger of `linger` seconds for the
//! last ACKs, after which the flow ends; a quiet flow ends after `idle` seconds; a SYN
//! on a flow that has closed starts a new one (two sessions reusing ports stay two).
//!
//! Sans-IO and deterministic: time comes from the lines, events must come in time
//! order (each line's time advances the clock; a line older than the clock is taken
//! at the clock's time). Records carry what a log can tell: packets and IP bytes per
//! side, payload bytes estimated (IP length minus the IP header and 20 bytes of TCP or
//! 8 of UDP/ICMP; a TCP packet with SYN, or without PSH and at most 32 bytes of TCP,
//! carried none — the log does not give the TCP header's length), a Zeek history from
//! the flags logged (`s h d f r`, each once per side, in order), and the connection
//! state it implies.

use std::collections::{BTreeMap, HashMap};

use tunnelwatch_flow::key::{community_id, uid, Endpoints, Key};
use tunnelwatch_flow::unions::{conn_state, letters};
use tunnelwatch_flow::FlowConfig;
use tunnelwatch_model::{
    Cause, DirectionStats, Dynamics, FlowRecord, IpProto, Letters, RecordSink, TcpFacts, Timestamp,
};

use crate::parse::{flag, LogEvent};

const SEC: i64 = 1_000_000_000;

/// Timeouts, in seconds.
#[derive(Clone, Debug)]
pub struct LogFlowConfig {
    /// Linger after a FIN or RST (seed 003: 30 s).
    pub linger: f64,
    /// A flow with no line for this long ends (Zeek's TCP inactivity: 300 s).
    pub idle: f64,
    /// Open flows at most: beyond, the flow due first ends early (`cause: evicted`).
    pub max_flows: usize,
}

impl Default for LogFlowConfig {
    fn default() -> Self {
        LogFlowConfig {
            linger: 30.0,
            idle: 300.0,
            max_flows: 1_000_000,
        }
    }
}

#[derive(Default)]
struct Side {
    pkts: u64,
    ip_bytes: u64,
    payload: u64,
    flags: u8,
    ttl: Option<(u8, u8)>,
}

struct Flow {
    key: Key,
    index: u64,
    orig: (std::net::IpAddr, u16),
    resp: (std::net::IpAddr, u16),
    proto: IpProto,
    start: Timestamp,
    last: Timestamp,
    sides: [Side; 2],
    syn_seen: bool,
    /// Zeek's history letters in the order they came (originator upper case); each
    /// letter once per side.
    history: String,
    /// When the linger after a FIN or RST ends.
    closing: Option<Timestamp>,
}

/// The correlator.
pub struct LogFlows {
    cfg: LogFlowConfig,
    server_ports: FlowConfig,
    flows: HashMap<Key, Flow>,
    /// Deadlines (time, key, start) for expiry in time order.
    deadlines: BTreeMap<(Timestamp, u64), Key>,
    now: Timestamp,
    lines: u64,
    evicted: u64,
}

impl LogFlows {
    /// An empty table.
    pub fn new(cfg: LogFlowConfig) -> Self {
        LogFlows {
            cfg,
            server_ports: FlowConfig::default(),
            flows: HashMap::new(),
            deadlines: BTreeMap::new(),
            now: Timestamp(i64::MIN),
            lines: 0,
            evicted: 0,
        }
    }

    /// Flows ended early because `max_flows` were open.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Live flows.
    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// Takes one event; flows that ended before it go to `out`.
    pub fn event(&mut self, e: &LogEvent, out: &mut dyn RecordSink) {
        self.lines += 1;
        let ts = e.ts.max(self.now);
        self.advance(ts, out);
        let ep = Endpoints {
            src: e.src,
            sport: e.sport,
            dst: e.dst,
            dport: e.dport,
            proto: e.proto,
            one_way: false,
        };
        let (key, _) = ep.key();
        let syn_only = e.flags & (flag::SYN | flag::ACK) == flag::SYN;
        // A new SYN after the flow closed (or while it lingers) is a new session.
        let restart = syn_only
            && self
                .flows
                .get(&key)
                .is_some_and(|f| f.closing.is_some() && !is_retransmit(f, e));
        if restart {
            if let Some(f) = self.flows.remove(&key) {
                out.emit(record(f, Cause::End));
            }
        }
        // The flow's deadline moves: its old one leaves the queue.
        if let Some(f) = self.flows.get(&key) {
            self.deadlines.remove(&(due(f, &self.cfg), f.index));
        }
        let index = self.lines;
        let server_ports = &self.server_ports;
        let f = self.flows.entry(key).or_insert_with(|| {
            // The SYN's sender is the originator; without a SYN, the port heuristic.
            let tcp = e.proto == IpProto::TCP;
            let flip = !syn_only
                && server_ports.is_likely_server(e.sport, tcp)
                && !server_ports.is_likely_server(e.dport, tcp);
            let (o, r) = if flip {
                ((e.dst, e.dport), (e.src, e.sport))
            } else {
                ((e.src, e.sport), (e.dst, e.dport))
            };
            Flow {
                key,
                index,
                orig: o,
                resp: r,
                proto: e.proto,
                start: ts,
                last: ts,
                sides: Default::default(),
                syn_seen: syn_only,
                history: String::new(),
                closing: None,
            }
        });
        let d = usize::from((e.src, e.sport) != f.orig);
        let s = &mut f.sides[d];
        s.pkts += 1;
        s.ip_bytes += u64::from(e.ip_len);
        let l4 = match e.proto {
            IpProto::TCP => 20,
            _ => 8,
        };
        // The TCP header's length is not logged: a packet without PSH whose TCP part
        // fits a header with options (32 bytes) carried none.
        let rest = e.ip_len.saturating_sub(e.ip_hlen);
        let data = if e.proto == IpProto::TCP
            && (e.flags & flag::SYN != 0 || (e.flags & flag::PSH == 0 && rest <= 32))
        {
            0
        } else {
            rest.saturating_sub(l4)
        };
        s.payload += u64::from(data);
        s.flags |= e.flags;
        if let Some(t) = e.ttl {
            s.ttl = Some(s.ttl.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
        }
        if e.proto == IpProto::TCP {
            let mut add = |c: char| {
                let c = if d == 0 { c.to_ascii_uppercase() } else { c };
                if !f.history.contains(c) {
                    f.history.push(c);
                }
            };
            if e.flags & flag::SYN != 0 {
                add(if e.flags & flag::ACK != 0 { 'h' } else { 's' });
            }
            if data > 0 {
                add('d');
            }
            if e.flags & flag::FIN != 0 {
                add('f');
            }
            if e.flags & flag::RST != 0 {
                add('r');
            }
            if e.flags & (flag::FIN | flag::RST) != 0 && f.closing.is_none() {
                f.closing = Some(ts.add_nanos((self.cfg.linger * 1e9) as i64));
            }
        }
        f.last = f.last.max(ts);
        let deadline = due(f, &self.cfg);
        let start = f.index;
        self.deadlines.insert((deadline, start), key);
        // Bounded memory: beyond the cap, the flow due first ends now.
        while self.flows.len() > self.cfg.max_flows {
            let Some(((_, index), key)) = self.deadlines.pop_first() else {
                break;
            };
            if self.flows.get(&key).is_some_and(|f| f.index == index) {
                if let Some(f) = self.flows.remove(&key) {
                    self.evicted += 1;
                    out.emit(record(f, Cause::Evicted));
                }
            }
        }
    }

    /// The clock reached `now`: flows whose linger or idle time ran out end.
    pub fn advance(&mut self, now: Timestamp, out: &mut dyn RecordSink) {
        self.now = self.now.max(now);
        while let Some((&(t, index), &key)) = self.deadlines.iter().next() {
            if t > self.now {
                break;
            }
            self.deadlines.remove(&(t, index));
            let Some(f) = self.flows.get(&key).filter(|f| f.index == index) else {
                continue;
            };
            if due(f, &self.cfg) > t {
                continue; // a later line moved it; its own deadline is queued
            }
            let cause = if f.closing.is_some() {
                Cause::End
            } else {
                Cause::Timeout
            };
            if let Some(f) = self.flows.remove(&key) {
                out.emit(record(f, cause));
            }
        }
    }

    /// The input ended: every flow is written, in start order.
    pub fn finish(&mut self, out: &mut dyn RecordSink) {
        let mut rest: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
        rest.sort_by_key(|f| (f.start, f.index));
        for f in rest {
            out.emit(record(f, Cause::End));
        }
        self.deadlines.clear();
    }
}

/// When a flow ends if no line comes: its linger's end once closing, else its idle
/// timeout (at least a second after its last line).
fn due(f: &Flow, cfg: &LogFlowConfig) -> Timestamp {
    f.closing.unwrap_or(
        f.last
            .add_nanos((cfg.idle * 1e9) as i64)
            .max(f.last.add_nanos(SEC)),
    )
}

/// A SYN repeated while its flow has not answered yet is a retransmission.
fn is_retransmit(f: &Flow, e: &LogEvent) -> bool {
    (e.src, e.sport) == f.orig && f.sides[1].pkts == 0
}

fn record(f: Flow, cause: Cause) -> FlowRecord {
    let [o, r] = &f.sides;
    let tcp = f.proto == IpProto::TCP;
    let conn_state = conn_state(f.proto, f.syn_seen, (o.flags, o.pkts), (r.flags, r.pkts));
    let dir = |s: &Side| DirectionStats {
        payload_bytes: s.payload,
        flags: if tcp {
            letters(s.flags)
        } else {
            Letters::default()
        },
        ttl_min: s.ttl.map(|t| t.0),
        ttl_max: s.ttl.map(|t| t.1),
        ..Default::default()
    };
    let ep = Endpoints {
        src: f.orig.0,
        sport: f.orig.1,
        dst: f.resp.0,
        dport: f.resp.1,
        proto: f.proto,
        one_way: false,
    };
    FlowRecord {
        uid: uid(&f.key, f.start, f.index),
        community_id: community_id(&ep),
        ts: f.start,
        last_ts: f.last,
        duration: FlowRecord::duration_of(f.start, f.last),
        proto: f.proto.transport_name().to_string(),
        ip_proto: f.proto.0,
        orig_h: f.orig.0,
        orig_p: f.orig.1,
        resp_h: f.resp.0,
        resp_p: f.resp.1,
        service: None,
        orig_pkts: o.pkts,
        resp_pkts: r.pkts,
        orig_bytes: o.payload,
        resp_bytes: r.payload,
        orig_ip_bytes: o.ip_bytes,
        resp_ip_bytes: r.ip_bytes,
        conn_state,
        history: f.history,
        cause,
        missed_bytes: 0,
        vlan: None,
        inner_vlan: None,
        tunnel_parents: Vec::new(),
        signatures: Vec::new(),
        dynamics: Dynamics {
            orig: dir(o),
            resp: dir(r),
        },
        tcp: tcp.then(TcpFacts::default),
        icmp: None,
        app: None,
        export: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line, Format};
    use tunnelwatch_model::ConnState;

    fn flows(lines: &[&str]) -> Vec<FlowRecord> {
        let mut t = LogFlows::new(LogFlowConfig::default());
        let mut out: Vec<FlowRecord> = Vec::new();
        for l in lines {
            t.event(&parse_line(l, Format::Auto, 2026).unwrap(), &mut out);
        }
        t.finish(&mut out);
        out
    }

    fn nf(t: &str, src: &str, spt: u16, dst: &str, dpt: u16, flags: &str, len: u32) -> String {
        format!("Dec  1 {t} fw kernel: IN=eth0 OUT= SRC={src} DST={dst} LEN={len} TTL=60 PROTO=TCP SPT={spt} DPT={dpt} WINDOW=1 RES=0x00 {flags} URGP=0")
    }

    #[test]
    fn a_logged_connection_is_one_flow_both_ways_closed_after_the_linger() {
        let c = "192.0.2.7";
        let s = "198.51.100.9";
        let lines = [
            nf("10:00:00.000", c, 40000, s, 443, "SYN", 60),
            nf("10:00:00.010", s, 443, c, 40000, "ACK SYN", 60),
            nf("10:00:00.020", c, 40000, s, 443, "ACK", 52),
            nf("10:00:00.030", c, 40000, s, 443, "ACK PSH", 552),
            nf("10:00:00.040", s, 443, c, 40000, "ACK PSH", 1452),
            nf("10:00:01.000", c, 40000, s, 443, "ACK FIN", 52),
            nf("10:00:01.010", s, 443, c, 40000, "ACK FIN", 52),
            nf("10:00:01.020", c, 40000, s, 443, "ACK", 52),
            // The same ports again, a minute later: a new session.
            nf("10:01:10.000", c, 40000, s, 443, "SYN", 60),
        ];
        let v: Vec<&str> = lines.iter().map(String::as_str).collect();
        let out = flows(&v);
        assert_eq!(out.len(), 2, "{out:#?}");
        let f = &out[0];
        assert_eq!((f.orig_h.to_string().as_str(), f.resp_p), (c, 443));
        assert_eq!((f.orig_pkts, f.resp_pkts), (5, 3));
        assert_eq!((f.orig_bytes, f.resp_bytes), (512, 1412));
        assert_eq!(f.history, "ShDdFf");
        assert_eq!(f.conn_state, ConnState::SF);
        assert_eq!(f.cause, Cause::End);
        assert_eq!(f.dynamics.orig.ttl_min, Some(60));
        assert_eq!(out[1].conn_state, ConnState::S0);
        assert_ne!(out[0].uid, out[1].uid);
    }

    #[test]
    fn the_flow_cap_ends_the_flow_due_first_and_counts_it() {
        let mut t = LogFlows::new(LogFlowConfig {
            max_flows: 3,
            ..LogFlowConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..10u16 {
            let l = nf("04:04:32", "10.0.0.1", 40000 + i, "10.0.0.2", 80, "SYN", 60);
            t.event(&parse_line(&l, Format::Auto, 2026).unwrap(), &mut out);
        }
        assert_eq!(t.live(), 3);
        assert_eq!(t.evicted(), 7);
        assert!(out.iter().all(|r| r.cause == Cause::Evicted));
        assert_eq!(out[0].orig_p, 40000, "the oldest goes first");
        // A flow with many lines keeps one deadline in the queue, not one per line.
        let mut t = LogFlows::new(LogFlowConfig::default());
        for _ in 0..100 {
            let l = nf("04:04:32", "10.0.0.1", 40000, "10.0.0.2", 80, "ACK", 60);
            t.event(&parse_line(&l, Format::Auto, 2026).unwrap(), &mut out);
        }
        assert_eq!(t.deadlines.len(), 1);
    }

    #[test]
    fn flows_without_syn_take_the_server_port_heuristic_and_idle_out() {
        // The reply of a connection whose SYN was not logged: 443 is a server port.
        let lines = [
            nf(
                "10:00:00.000",
                "198.51.100.9",
                443,
                "192.0.2.7",
                40001,
                "ACK PSH",
                100,
            ),
            nf("10:20:00.000", "192.0.2.7", 5353, "192.0.2.8", 9, "ACK", 40),
        ];
        let v: Vec<&str> = lines.iter().map(String::as_str).collect();
        let out = flows(&v);
        assert_eq!(out.len(), 2);
        let f = &out[0];
        assert_eq!(
            (f.orig_p, f.resp_p, f.orig_pkts, f.resp_pkts),
            (40001, 443, 0, 1)
        );
        assert_eq!((f.conn_state, f.cause), (ConnState::OTH, Cause::Timeout));
        assert_eq!(f.history, "d");
    }
}
