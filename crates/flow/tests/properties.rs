//! Property tests of the flow table: packets and bytes are conserved into records,
//! mirroring every packet swaps the originator and responder counters, time only moves
//! records forward, and the same input gives the same records.

use etherparse::PacketBuilder;
use proptest::prelude::*;
use tunnelwatch_decode::{Decoded, Decoder, LinkType};
use tunnelwatch_flow::{ChecksumMode, FlowConfig, FlowTable, Frame};
use tunnelwatch_model::{Cause, FlowRecord, Timestamp};

#[derive(Clone, Debug)]
struct Pkt {
    /// Which of 4 hosts sends, which receives.
    from: u8,
    to: u8,
    /// Which of 3 client ports (high, not server ports) is used on each side.
    sport: u8,
    dport: u8,
    tcp: bool,
    len: u16,
    /// Milliseconds since the previous packet.
    gap_ms: u32,
}

fn pkt() -> impl Strategy<Value = Pkt> {
    (
        0u8..4,
        0u8..4,
        0u8..3,
        0u8..3,
        any::<bool>(),
        0u16..1400,
        0u32..200_000,
    )
        .prop_map(|(from, to, sport, dport, tcp, len, gap_ms)| Pkt {
            from,
            to,
            sport,
            dport,
            tcp,
            len,
            gap_ms,
        })
}

fn frame(p: &Pkt, mirrored: bool) -> Vec<u8> {
    let (a, b, pa, pb) = if mirrored {
        (p.to, p.from, p.dport, p.sport)
    } else {
        (p.from, p.to, p.sport, p.dport)
    };
    let ip = |h: u8| [10, 0, 0, h + 1];
    let port = |i: u8| 40_000 + u16::from(i);
    let payload = vec![0x61; usize::from(p.len)];
    let b0 = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(ip(a), ip(b), 64);
    let mut out = Vec::new();
    if p.tcp {
        // Mid-stream data segments (no SYN): sequence numbers advance with the data.
        b0.tcp(port(pa), port(pb), 1_000, 65_535)
            .ack(1)
            .write(&mut out, &payload)
            .unwrap();
    } else {
        b0.udp(port(pa), port(pb))
            .write(&mut out, &payload)
            .unwrap();
    }
    out
}

fn run(pkts: &[Pkt], mirrored: bool) -> (Vec<FlowRecord>, u64, u64) {
    let c = FlowConfig {
        checksums: ChecksumMode::Ignore,
        active_timeout: 0,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(c);
    let dec = Decoder::default();
    let mut out = Vec::new();
    let (mut t, mut n, mut ip_bytes) = (1_600_000_000_000_000_000i64, 0u64, 0u64);
    for (i, p) in pkts.iter().enumerate() {
        if p.from == p.to && p.sport == p.dport {
            continue; // a host talking to itself on one port: a degenerate key
        }
        t += i64::from(p.gap_ms) * 1_000_000;
        let bytes = frame(p, mirrored);
        let mut d = Decoded::default();
        dec.decode(LinkType::ETHERNET, &bytes, &mut d);
        let f = Frame {
            ts: Timestamp(t),
            index: i as u64,
            wire_len: bytes.len() as u32,
            vlan: None,
            inner_vlan: None,
        };
        table.process(&f, &d, &mut out);
        n += 1;
        ip_bytes += u64::from(d.layers[0].ip_len);
    }
    table.flush(&mut out);
    (
        out.into_iter()
            .filter(|r| r.cause != Cause::Status)
            .collect(),
        n,
        ip_bytes,
    )
}

proptest! {
    #[test]
    fn packets_and_bytes_are_conserved(pkts in proptest::collection::vec(pkt(), 1..120)) {
        let (recs, n, ip_bytes) = run(&pkts, false);
        prop_assert_eq!(recs.iter().map(|r| r.orig_pkts + r.resp_pkts).sum::<u64>(), n);
        prop_assert_eq!(recs.iter().map(|r| r.orig_ip_bytes + r.resp_ip_bytes).sum::<u64>(), ip_bytes);
    }

    #[test]
    fn mirroring_every_packet_swaps_the_endpoints_not_the_counts(pkts in proptest::collection::vec(pkt(), 1..80)) {
        let (a, _, _) = run(&pkts, false);
        let (b, _, _) = run(&pkts, true);
        prop_assert_eq!(a.len(), b.len());
        let key = |r: &FlowRecord| (r.ts, r.proto.clone(), r.orig_pkts + r.resp_pkts);
        let mut a = a;
        let mut b = b;
        a.sort_by_key(key);
        b.sort_by_key(key);
        for (x, y) in a.iter().zip(&b) {
            // The first packet's sender is the originator in both runs.
            prop_assert_eq!((x.orig_pkts, x.resp_pkts), (y.orig_pkts, y.resp_pkts));
            prop_assert_eq!((&x.orig_h, x.orig_p), (&y.resp_h, y.resp_p));
        }
    }

    #[test]
    fn records_never_end_before_they_start(pkts in proptest::collection::vec(pkt(), 1..120)) {
        let (recs, _, _) = run(&pkts, false);
        for r in &recs {
            prop_assert!(r.last_ts >= r.ts);
            prop_assert!(r.duration >= 0.0);
        }
    }

    #[test]
    fn same_input_gives_identical_records(pkts in proptest::collection::vec(pkt(), 1..60)) {
        let (a, _, _) = run(&pkts, false);
        let (b, _, _) = run(&pkts, false);
        prop_assert_eq!(a, b);
    }
}
