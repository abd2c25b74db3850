//! Property tests of the decoder, as the project's testing habits ask of every decoder:
//! round-trip (headers built by etherparse's writer decode to the same fields),
//! truncation at every length (the exact anomaly with its numbers, and everything
//! before the cut still decoded), and arbitrary bytes never panic on any link type.

use etherparse::PacketBuilder;
use proptest::prelude::*;
use tunnelwatch_decode::{AnomalyKind, Decoded, Decoder, LinkType, Transport};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn decode(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    let mut d = Decoded::default();
    Decoder::default().decode(link, frame, &mut d);
    d
}

#[derive(Clone, Debug)]
struct Tcp {
    v6: bool,
    vlan: Option<u16>,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    window: u16,
    ttl: u8,
    payload: Vec<u8>,
}

fn tcp_strategy() -> impl Strategy<Value = Tcp> {
    (
        any::<bool>(),
        proptest::option::of(0u16..4095),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        any::<(bool, bool)>(),
        any::<u16>(),
        1u8..=255,
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(
            |(v6, vlan, src, dst, sport, dport, seq, ack, (syn, fin), window, ttl, payload)| Tcp {
                v6,
                vlan,
                src,
                dst,
                sport,
                dport,
                seq,
                ack,
                syn,
                fin,
                window,
                ttl,
                payload,
            },
        )
}

fn build_tcp(t: &Tcp) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let mut out = Vec::new();
    macro_rules! finish {
        ($ip:expr) => {{
            let mut b = $ip.tcp(t.sport, t.dport, t.seq, t.window);
            if t.syn {
                b = b.syn();
            }
            if t.fin {
                b = b.fin();
            }
            if let Some(a) = t.ack {
                b = b.ack(a);
            }
            b.write(&mut out, &t.payload).expect("write");
        }};
    }
    let s4 = [t.src[0], t.src[1], t.src[2], t.src[3]];
    let d4 = [t.dst[0], t.dst[1], t.dst[2], t.dst[3]];
    match (t.vlan, t.v6) {
        (None, false) => finish!(eth.ipv4(s4, d4, t.ttl)),
        (None, true) => finish!(eth.ipv6(t.src, t.dst, t.ttl)),
        (Some(v), false) => finish!(eth
            .single_vlan(etherparse::VlanId::try_new(v).unwrap())
            .ipv4(s4, d4, t.ttl)),
        (Some(v), true) => finish!(eth
            .single_vlan(etherparse::VlanId::try_new(v).unwrap())
            .ipv6(t.src, t.dst, t.ttl)),
    }
    out
}

proptest! {
    #[test]
    fn tcp_roundtrip_fields_survive(t in tcp_strategy()) {
        let frame = build_tcp(&t);
        let d = decode(LinkType::ETHERNET, &frame);
        prop_assert!(d.anomaly.is_none(), "{:?}", d.anomaly);
        prop_assert_eq!(d.layers.len(), 1);
        prop_assert_eq!(d.vlan, t.vlan);
        let l = &d.layers[0];
        prop_assert_eq!(l.ttl, t.ttl);
        let src = l.src.to_string();
        let want_src = if t.v6 {
            std::net::Ipv6Addr::from(t.src).to_string()
        } else {
            std::net::Ipv4Addr::new(t.src[0], t.src[1], t.src[2], t.src[3]).to_string()
        };
        prop_assert_eq!(src, want_src);
        let Transport::Tcp(seg) = l.transport else { return Err(TestCaseError::fail("not TCP")) };
        prop_assert_eq!((seg.src_port, seg.dst_port, seg.seq, seg.window), (t.sport, t.dport, t.seq, t.window));
        prop_assert_eq!(seg.flags.syn(), t.syn);
        prop_assert_eq!(seg.flags.fin(), t.fin);
        prop_assert_eq!(seg.flags.ack(), t.ack.is_some());
        if let Some(a) = t.ack {
            prop_assert_eq!(seg.ack, a);
        }
        prop_assert_eq!(l.payload, &t.payload[..]);
        prop_assert_eq!(l.payload_len as usize, t.payload.len());
        prop_assert_eq!(l.ip_len as usize, frame.len() - 14 - if t.vlan.is_some() { 4 } else { 0 });
        prop_assert_eq!(tunnelwatch_decode::checksum::transport_ok(l), Some(true));
    }

    #[test]
    fn udp_roundtrip_fields_survive(sport in any::<u16>(), dport in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(sport, dport).write(&mut frame, &payload).unwrap();
        let d = decode(LinkType::ETHERNET, &frame);
        // Tunnel ports may decapsulate arbitrary payloads; the outer layer stays exact.
        let l = &d.layers[0];
        let Transport::Udp(u) = l.transport else { return Err(TestCaseError::fail("not UDP")) };
        prop_assert_eq!((u.src_port, u.dst_port, u.length as usize), (sport, dport, payload.len() + 8));
        prop_assert_eq!(l.payload, &payload[..]);
        prop_assert_eq!(tunnelwatch_decode::checksum::transport_ok(l), Some(true));
    }

    #[test]
    fn any_bytes_on_any_link_type_never_panic(sel in 0usize..LinkType::SUPPORTED.len(), bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let d = decode(LinkType::SUPPORTED[sel], &bytes);
        for l in &d.layers {
            prop_assert!(l.frame_offset <= bytes.len());
            let _ = tunnelwatch_decode::checksum::transport_ok(l);
        }
    }

    #[test]
    fn the_peeked_outer_pair_is_the_decoded_one(t in tcp_strategy()) {
        let frame = build_tcp(&t);
        let d = decode(LinkType::ETHERNET, &frame);
        let l = &d.layers[0];
        let dec = Decoder::default();
        prop_assert_eq!(dec.peek_pair(LinkType::ETHERNET, &frame), Some((l.src, l.dst)));
        let ip = &frame[14 + if t.vlan.is_some() { 4 } else { 0 }..];
        prop_assert_eq!(dec.peek_pair(LinkType::RAW, ip), Some((l.src, l.dst)));
    }

    #[test]
    fn a_peek_at_any_bytes_agrees_with_the_decoder_or_defers(sel in 0usize..LinkType::SUPPORTED.len(), bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let link = LinkType::SUPPORTED[sel];
        if let Some(pair) = Decoder::default().peek_pair(link, &bytes) {
            let d = decode(link, &bytes);
            prop_assert!(d.layers.len() <= 1, "a peeked frame with {} layers", d.layers.len());
            if let Some(l) = d.layers.first() {
                prop_assert_eq!((l.src, l.dst), pair);
                prop_assert!(!matches!(l.transport, Transport::Icmp(_)));
            }
        }
    }

    #[test]
    fn a_peek_at_ip_like_garbage_agrees_with_the_decoder_or_defers(v6 in any::<bool>(), low in 0u8..16, udp in any::<bool>(), mut bytes in proptest::collection::vec(any::<u8>(), 40..120)) {
        // Headers that look like IP carrying TCP/UDP, with any length, flags, options.
        bytes[0] = if v6 { 0x60 | low } else { 0x40 | low };
        bytes[if v6 { 6 } else { 9 }] = if udp { 17 } else { 6 };
        if let Some(pair) = Decoder::default().peek_pair(LinkType::RAW, &bytes) {
            let d = decode(LinkType::RAW, &bytes);
            prop_assert!(d.layers.len() <= 1, "a peeked frame with {} layers", d.layers.len());
            if let Some(l) = d.layers.first() {
                prop_assert_eq!((l.src, l.dst), pair);
            }
        }
    }

    #[test]
    fn a_peeked_udp_datagram_carries_no_tunnel(
        port in prop_oneof![Just(3544u16), Just(4789), Just(6081), Just(2152), Just(5072), any::<u16>()],
        other in any::<u16>(),
        v6_inside in any::<bool>(),
        teredo_prefix in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        // A datagram on a tunnel port or not, carrying an IPv6 packet (to a Teredo
        // address or not) or other bytes: a peek that names addresses means the
        // decoder finds one layer.
        let payload = if v6_inside {
            let dst = if teredo_prefix { [0x20, 0x01, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 9] } else { [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9] };
            let mut p = Vec::new();
            PacketBuilder::ipv6([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dst, 64)
                .udp(1, 2)
                .write(&mut p, &body)
                .unwrap();
            p
        } else {
            body
        };
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [198, 51, 100, 2], 64)
            .udp(other, port)
            .write(&mut frame, &payload)
            .unwrap();
        let d = decode(LinkType::ETHERNET, &frame);
        let peeked = Decoder::default().peek_pair(LinkType::ETHERNET, &frame);
        prop_assert!(peeked.is_none() || d.layers.len() == 1, "peeked, and {} layers", d.layers.len());
        // Teredo is looked for on any port but another tunnel's.
        let other_tunnel = |p: u16| [4789, 6081, 2152, 5072, 4754].contains(&p);
        if v6_inside && teredo_prefix && !other_tunnel(port) && !other_tunnel(other) {
            prop_assert_eq!(d.layers.len(), 2, "the Teredo packet was not decoded");
            prop_assert!(peeked.is_none());
        }
    }

    #[test]
    fn ip_version_nibble_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), v in 0u8..16) {
        let mut b = bytes;
        if let Some(first) = b.first_mut() {
            *first = (v << 4) | (*first & 0x0f);
        }
        let _ = decode(LinkType::RAW, &b);
    }
}

/// Truncating an Ethernet/IPv4/TCP frame at every length gives, at each length, the
/// exact anomaly with its numbers, and keeps what was decoded before the cut.
#[test]
fn truncation_at_every_length_gives_the_exact_anomaly() {
    for v6 in [false, true] {
        let t = Tcp {
            v6,
            vlan: None,
            src: [10; 16],
            dst: [20; 16],
            sport: 40000,
            dport: 80,
            seq: 7,
            ack: Some(9),
            syn: false,
            fin: false,
            window: 512,
            ttl: 64,
            payload: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        };
        let frame = build_tcp(&t);
        let ip_hl = if v6 { 40 } else { 20 };
        let (ip_at, tcp_at) = (14, 14 + ip_hl);
        for cut in 0..frame.len() {
            let d = decode(LinkType::ETHERNET, &frame[..cut]);
            let a = d.anomaly;
            if cut < 14 {
                let a = a.expect("link anomaly");
                assert_eq!(
                    (a.kind, a.offset, a.required, a.available),
                    (AnomalyKind::LinkTruncated, 0, 14, cut)
                );
                assert!(d.layers.is_empty());
            } else if cut < tcp_at {
                let kind = if v6 {
                    AnomalyKind::Ipv6Truncated
                } else {
                    AnomalyKind::Ipv4Truncated
                };
                let a = a.unwrap_or_else(|| panic!("ip anomaly at cut {cut}"));
                assert_eq!(
                    (a.kind, a.offset, a.required, a.available),
                    (kind, ip_at, ip_hl, cut - ip_at),
                    "cut {cut}"
                );
                assert!(d.layers.is_empty());
            } else if cut < tcp_at + 20 {
                let a = a.unwrap_or_else(|| panic!("tcp anomaly at cut {cut}"));
                assert_eq!(
                    (a.kind, a.offset, a.required, a.available),
                    (AnomalyKind::TcpTruncated, tcp_at, 20, cut - tcp_at),
                    "cut {cut}"
                );
                assert_eq!(d.layers.len(), 1, "the IP layer before the cut is kept");
                assert_eq!(
                    d.layers[0].ip_len as usize,
                    frame.len() - 14,
                    "wire length, not captured"
                );
            } else {
                assert!(a.is_none(), "cut {cut}: {a:?}");
                let l = &d.layers[0];
                assert!(matches!(l.transport, Transport::Tcp(_)));
                assert_eq!(
                    l.payload_len as usize,
                    t.payload.len(),
                    "payload counted at wire length"
                );
                assert_eq!(l.payload, &t.payload[..cut - tcp_at - 20]);
                assert!(!l.captured_all() || cut == frame.len());
            }
        }
    }
}
