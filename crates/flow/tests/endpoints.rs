//! A record's endpoints: addresses are taken from the flow key (not stored twice), so
//! they must come back as the packets had them — family, order, and which side is the
//! originator, also when the originator is the key's higher side or the flow was
//! flipped because its first packet came from the responder.

use std::net::IpAddr;

use etherparse::PacketBuilder;
use tunnelwatch_decode::{Decoded, Decoder, LinkType};
use tunnelwatch_flow::{ChecksumMode, FlowConfig, FlowTable, Frame};
use tunnelwatch_model::{FlowRecord, Timestamp};

/// One packet: source, destination, ports, and for TCP (`None`: UDP) whether it is a
/// SYN, its sequence number and its acknowledgement number (0: no ACK flag).
struct Pkt {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    tcp: Option<(bool, u32, u32)>,
}

fn bytes(p: &Pkt) -> Vec<u8> {
    let b = match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("one family per packet"),
    };
    let mut out = Vec::new();
    match p.tcp {
        None => b.udp(p.sport, p.dport).write(&mut out, b"data").unwrap(),
        Some((syn, seq, ack)) => {
            let mut t = b.tcp(p.sport, p.dport, seq, 64240);
            if syn {
                t = t.syn();
            }
            if ack != 0 {
                t = t.ack(ack);
            }
            t.write(&mut out, &[]).unwrap();
        }
    }
    out
}

fn run(pkts: &[Pkt]) -> Vec<FlowRecord> {
    let mut table = FlowTable::new(FlowConfig {
        checksums: ChecksumMode::Ignore,
        ..FlowConfig::default()
    });
    let dec = Decoder::default();
    let mut out = Vec::new();
    for (i, p) in pkts.iter().enumerate() {
        let b = bytes(p);
        let mut d = Decoded::default();
        dec.decode(LinkType::RAW, &b, &mut d);
        let f = Frame {
            ts: Timestamp(1_700_000_000_000_000_000 + i as i64 * 1_000_000),
            index: i as u64,
            wire_len: b.len() as u32,
            vlan: None,
            inner_vlan: None,
        };
        table.process(&f, &d, &mut out);
    }
    table.flush(&mut out);
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pkt(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, tcp: Option<(bool, u32, u32)>) -> Pkt {
    Pkt {
        src,
        dst,
        sport,
        dport,
        tcp,
    }
}

/// Two packets from `client`, one back, over UDP.
fn exchange(client: &str, server: &str) -> Vec<Pkt> {
    let (c, s) = (ip(client), ip(server));
    vec![
        pkt(c, 5353, s, 53, None),
        pkt(c, 5353, s, 53, None),
        pkt(s, 53, c, 5353, None),
    ]
}

#[test]
fn addresses_come_back_in_their_family_and_order() {
    for (client, server) in [
        ("10.0.0.1", "10.0.0.2"),
        // The originator on the key's higher side.
        ("10.0.0.9", "10.0.0.2"),
        ("2001:db8::1", "2001:db8::2"),
        ("2001:db8::9", "2001:db8::2"),
        // Keyed as IPv4 is, but written as the IPv6 the packets carried.
        ("::ffff:10.0.0.1", "::ffff:10.0.0.2"),
    ] {
        let recs = run(&exchange(client, server));
        assert_eq!(recs.len(), 1, "{client}");
        let r = &recs[0];
        assert_eq!((r.orig_h, r.orig_p), (ip(client), 5353), "{client}");
        assert_eq!((r.resp_h, r.resp_p), (ip(server), 53), "{client}");
        assert_eq!((r.orig_pkts, r.resp_pkts), (2, 1), "{client}");
        assert_eq!(r.orig_h.to_string(), client);
    }
}

#[test]
fn a_flipped_flow_keeps_the_client_as_originator() {
    for (client, server) in [("10.0.0.9", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
        let (c, s) = (ip(client), ip(server));
        // Flipped when created: the SYN-ACK from a server port is seen first.
        let at_creation = [
            pkt(s, 80, c, 40000, Some((true, 5000, 1001))),
            pkt(c, 40000, s, 80, Some((false, 1001, 5001))),
            pkt(c, 40000, s, 80, Some((false, 1001, 5001))),
        ];
        // Flipped later: between two high ports the SYN-ACK's sender is taken as the
        // originator until the SYN it answers arrives (Zeek flips then).
        let later = [
            pkt(s, 40001, c, 40000, Some((true, 5000, 1001))),
            pkt(c, 40000, s, 40001, Some((true, 1000, 0))),
            pkt(c, 40000, s, 40001, Some((false, 1001, 5001))),
        ];
        for (pkts, server_port) in [(&at_creation, 80), (&later, 40001)] {
            let recs = run(pkts);
            assert_eq!(recs.len(), 1, "{client}");
            let r = &recs[0];
            assert!(r.history.contains('^'), "{client}: {}", r.history);
            assert_eq!((r.orig_h, r.orig_p), (c, 40000), "{client} {}", r.history);
            assert_eq!((r.resp_h, r.resp_p), (s, server_port), "{client}");
            assert_eq!((r.orig_pkts, r.resp_pkts), (2, 1), "{client}");
        }
    }
}

#[test]
fn a_flow_between_one_endpoint_and_itself_counts_every_packet_as_the_originators() {
    let a = ip("10.0.0.5");
    let pkts: Vec<Pkt> = (0..3).map(|_| pkt(a, 7, a, 7, None)).collect();
    let recs = run(&pkts);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].orig_h, recs[0].resp_h), (a, a));
    assert_eq!((recs[0].orig_pkts, recs[0].resp_pkts), (3, 0));
}
