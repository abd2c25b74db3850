//! Decoder throughput on real frames (the demo capture: Ethernet, TCP/UDP/ICMP, IPv4
//! and IPv6) and on a GRE-tunnelled frame. `cargo bench -p tunnelwatch-decode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tunnelwatch_decode::{Decoded, Decoder, LinkType};

/// Frames of a classic little-endian pcap (enough for the bundled demo capture).
fn pcap_frames(bytes: &[u8]) -> (LinkType, Vec<Vec<u8>>) {
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "demo.pcap is classic µs pcap");
    let link = LinkType(u32_at(20));
    let (mut off, mut frames) = (24, Vec::new());
    while off + 16 <= bytes.len() {
        let len = u32_at(off + 8) as usize;
        frames.push(bytes[off + 16..off + 16 + len].to_vec());
        off += 16 + len;
    }
    (link, frames)
}

fn bench(c: &mut Criterion) {
    let demo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo.pcap"
    ))
    .expect("examples/demo.pcap");
    let (link, frames) = pcap_frames(&demo);
    let decoder = Decoder::default();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("demo_frames", |b| {
        b.iter(|| {
            let mut layers = 0;
            for f in &frames {
                let mut d = Decoded::default();
                decoder.decode(link, black_box(f), &mut d);
                layers += d.layers.len();
            }
            layers
        })
    });
    // Ethernet / IPv4 / GRE / IPv4 / TCP with a small payload.
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 1024)
        .ack(1)
        .write(&mut inner, b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut gre = vec![0u8, 0, 0x08, 0x00];
    gre.extend_from_slice(&inner);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut frame, etherparse::IpNumber::GRE, &gre)
        .unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("gre_tcp_frame", |b| {
        b.iter(|| {
            let mut d = Decoded::default();
            decoder.decode(LinkType::ETHERNET, black_box(&frame), &mut d);
            d.layers.len()
        })
    });
    g.finish();
    // The Internet checksum over a full-size TCP payload (every captured segment's
    // transport checksum is verified by default).
    let payload: Vec<u8> = (0..1460u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("ones_complement_1460", |b| {
        b.iter(|| tunnelwatch_decode::checksum::ones_complement(black_box(&payload)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
