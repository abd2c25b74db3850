//! Flow-table update cost per packet: short TCP connections spread over many flows
//! (hash lookups, state machine, dynamics, timers, records), a UDP request/response
//! mix, and DNS-tunnel-like queries (the DNS message path). `cargo bench -p
//! tunnelwatch-flow`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tunnelwatch_decode::{Decoded, Decoder, LinkType};
use tunnelwatch_flow::{FlowConfig, FlowTable, Frame};
use tunnelwatch_model::{FlowRecord, Timestamp};

const FLOWS: u32 = 20_000;

/// Raw-IP packets of `FLOWS` interleaved short TCP connections (handshake, request,
/// response, close) from distinct clients, with their times in µs.
fn tcp_traffic() -> Vec<(i64, Vec<u8>)> {
    let mut pkts = Vec::new();
    let server = [192, 0, 2, 80];
    for step in 0..7u32 {
        for i in 0..FLOWS {
            let client = (0x0a00_0000u32 + i).to_be_bytes();
            let (sport, dport) = (10_000 + (i % 50_000) as u16, 80);
            let b = match step {
                0 => etherparse::PacketBuilder::ipv4(client, server, 64)
                    .tcp(sport, dport, 1, 65535)
                    .syn(),
                1 => etherparse::PacketBuilder::ipv4(server, client, 64)
                    .tcp(dport, sport, 9, 65535)
                    .syn()
                    .ack(2),
                2 => etherparse::PacketBuilder::ipv4(client, server, 64)
                    .tcp(sport, dport, 2, 65535)
                    .ack(10),
                3 => etherparse::PacketBuilder::ipv4(client, server, 64)
                    .tcp(sport, dport, 2, 65535)
                    .ack(10)
                    .psh(),
                4 => etherparse::PacketBuilder::ipv4(server, client, 64)
                    .tcp(dport, sport, 10, 65535)
                    .ack(20)
                    .psh(),
                5 => etherparse::PacketBuilder::ipv4(client, server, 64)
                    .tcp(sport, dport, 20, 65535)
                    .ack(110)
                    .fin(),
                _ => etherparse::PacketBuilder::ipv4(server, client, 64)
                    .tcp(dport, sport, 110, 65535)
                    .ack(21)
                    .fin(),
            };
            let payload: &[u8] = match step {
                3 => b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n",
                4 => &[b'x'; 100],
                _ => &[],
            };
            let mut out = Vec::new();
            b.write(&mut out, payload).unwrap();
            pkts.push((i64::from(step) * 1000 + i64::from(i) / 100, out));
        }
    }
    pkts.sort_by_key(|p| p.0);
    pkts
}

/// DNS-like UDP: one query and one response for each of `FLOWS` clients.
fn udp_traffic() -> Vec<(i64, Vec<u8>)> {
    let mut pkts = Vec::new();
    for i in 0..FLOWS {
        let client = (0x0a00_0000u32 + i).to_be_bytes();
        let mut q = Vec::new();
        etherparse::PacketBuilder::ipv4(client, [192, 0, 2, 53], 64)
            .udp(20_000 + (i % 40_000) as u16, 5353)
            .write(&mut q, &[0u8; 40])
            .unwrap();
        let mut r = Vec::new();
        etherparse::PacketBuilder::ipv4([192, 0, 2, 53], client, 64)
            .udp(5353, 20_000 + (i % 40_000) as u16)
            .write(&mut r, &[0u8; 90])
            .unwrap();
        pkts.push((i64::from(i) * 10, q));
        pkts.push((i64::from(i) * 10 + 3, r));
    }
    pkts
}

/// DNS-tunnel-like UDP: for each of `FLOWS` clients a TXT query for a long random name
/// under one domain (two labels of 30 base-32 characters, as data-carrying tunnels
/// send) and its NXDOMAIN answer, through the DNS message path (parsing, the name's
/// hash and entropy, the per-flow tally).
fn dns_tunnel_traffic() -> Vec<(i64, Vec<u8>)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut pkts = Vec::new();
    for i in 0..FLOWS {
        let mut question = Vec::new();
        for _ in 0..2 {
            let label = tunnel_label(&mut x);
            question.push(label.len() as u8);
            question.extend_from_slice(label.as_bytes());
        }
        question.extend_from_slice(b"\x01t\x07example\x03com\x00\x00\x10\x00\x01");
        let message = |flags: u16| {
            let mut m = vec![(i >> 8) as u8, i as u8];
            m.extend_from_slice(&flags.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            m.extend_from_slice(&question);
            m
        };
        let client = (0x0a00_0000u32 + i).to_be_bytes();
        let sport = 20_000 + (i % 40_000) as u16;
        let mut q = Vec::new();
        etherparse::PacketBuilder::ipv4(client, [192, 0, 2, 53], 64)
            .udp(sport, 53)
            .write(&mut q, &message(0x0100))
            .unwrap();
        let mut r = Vec::new();
        etherparse::PacketBuilder::ipv4([192, 0, 2, 53], client, 64)
            .udp(53, sport)
            .write(&mut r, &message(0x8183))
            .unwrap();
        pkts.push((i64::from(i) * 10, q));
        pkts.push((i64::from(i) * 10 + 3, r));
    }
    pkts
}

/// Decodes every packet once, outside the measured loop.
fn decoded(pkts: &[(i64, Vec<u8>)]) -> Vec<(Frame, Decoded<'_>)> {
    let dec = Decoder::default();
    pkts.iter()
        .enumerate()
        .map(|(i, (us, b))| {
            let mut d = Decoded::default();
            dec.decode(LinkType::RAW, b, &mut d);
            let f = Frame {
                ts: Timestamp(1_700_000_000_000_000_000 + us * 1000),
                index: i as u64,
                wire_len: b.len() as u32,
                vlan: None,
                inner_vlan: None,
            };
            (f, d)
        })
        .collect()
}

/// A fresh table through every packet, then the end-of-input flush.
fn run(frames: &[(Frame, Decoded<'_>)]) -> usize {
    let mut table = FlowTable::new(FlowConfig::default());
    let mut out: Vec<FlowRecord> = Vec::new();
    for (f, d) in frames {
        table.process(f, d, &mut out);
    }
    table.flush(&mut out);
    out.len()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table");
    g.sample_size(20);
    for (name, pkts) in [
        ("tcp_short_connections", tcp_traffic()),
        ("udp_request_response", udp_traffic()),
        ("dns_tunnel_queries", dns_tunnel_traffic()),
    ] {
        let frames = decoded(&pkts);
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(|| (), |_| run(&frames), BatchSize::PerIteration)
        });
    }
    g.finish();
}

/// A label of 30 random base-32 characters, as data-carrying DNS tunnels send.
fn tunnel_label(x: &mut u64) -> String {
    (0..30)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz234567"[(*x % 32) as usize])
        })
        .collect()
}

/// The entropy of tunnel-like names alone (two labels under one domain).
fn entropy(c: &mut Criterion) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let names: Vec<String> = (0..FLOWS)
        .map(|_| {
            let (a, b) = (tunnel_label(&mut x), tunnel_label(&mut x));
            format!("{a}.{b}.t.example.com")
        })
        .collect();
    let mut g = c.benchmark_group("dns_name");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("subdomain_entropy", |b| {
        b.iter(|| {
            names
                .iter()
                .filter_map(|n| tunnelwatch_flow::app::subdomain_entropy(n))
                .sum::<f64>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, entropy);
criterion_main!(benches);
