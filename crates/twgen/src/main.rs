//! `twgen`: inputs for the benchmark and the memory-bound tests.
//!
//! `twgen amplify` turns a small real capture between one client and one server (per
//! address family) into a large many-host capture: every packet of the pair is written
//! `N` times, replica `k` replacing the client address by one of a few thousand hosts
//! (chosen by the client-side port or ICMP id, so each base flow becomes `N` distinct
//! flows) and the server address by one of a few dozen servers. IPv4 header, TCP, UDP
//! and ICMPv6 checksums are updated incrementally (RFC 1624) before truncation to the
//! snap length, so the output verifies. Replicas share the base timestamps, so the
//! output stays in time order. Other packets (ARP, neighbour discovery) are written once.
//!
//! `twgen synflood` writes a spoofed SYN flood: one SYN from each of `N` distinct
//! source addresses to one server, one microsecond apart.
//!
//! Both write classic little-endian microsecond pcap with Ethernet framing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tunnelwatch_capture::CaptureFile;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Amplify a two-host capture into a many-host one.
    Amplify {
        /// Input capture (Ethernet).
        base: PathBuf,
        /// Output pcap.
        out: PathBuf,
        /// Packets wanted in the output (sets the replica count).
        #[arg(long, default_value_t = 8_000_000)]
        target_packets: u64,
        /// Replica count (overrides --target-packets).
        #[arg(long)]
        replicas: Option<u32>,
        /// Bytes kept of each packet (the original length is kept in the record).
        #[arg(long, default_value_t = 192)]
        snaplen: u32,
        /// Base client addresses (IPv4 and IPv6).
        #[arg(long, num_args = 1.., default_values = ["10.201.0.1", "fd00:201::1"])]
        client: Vec<IpAddr>,
        /// Base server addresses (IPv4 and IPv6).
        #[arg(long, num_args = 1.., default_values = ["10.201.0.2", "fd00:201::2"])]
        server: Vec<IpAddr>,
        /// Client hosts per replica.
        #[arg(long, default_value_t = 4000)]
        hosts: u32,
        /// Servers per replica.
        #[arg(long, default_value_t = 64)]
        servers: u32,
    },
    /// Write a spoofed SYN flood.
    Synflood {
        /// Output pcap.
        out: PathBuf,
        /// SYNs, each from its own source address.
        #[arg(long, default_value_t = 10_000_000)]
        packets: u32,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Amplify {
            base,
            out,
            target_packets,
            replicas,
            snaplen,
            client,
            server,
            hosts,
            servers,
        } => {
            let pairs = Pairs::new(&client, &server)?;
            amplify(
                &base,
                &out,
                target_packets,
                replicas,
                snaplen,
                &pairs,
                hosts.max(1),
                servers.max(1),
            )
        }
        Cmd::Synflood { out, packets } => synflood(&out, packets),
    }
}

/// A pcap writer (classic, little endian, microseconds, Ethernet).
struct PcapOut(BufWriter<File>);

impl PcapOut {
    fn create(path: &Path, snaplen: u32) -> Result<Self> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = BufWriter::with_capacity(8 << 20, f);
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&[0; 8])?;
        w.write_all(&snaplen.to_le_bytes())?;
        w.write_all(&1u32.to_le_bytes())?;
        Ok(PcapOut(w))
    }

    fn packet(&mut self, ts_us: i64, data: &[u8], orig_len: u32) -> Result<()> {
        let w = &mut self.0;
        w.write_all(&((ts_us.div_euclid(1_000_000)) as u32).to_le_bytes())?;
        w.write_all(&((ts_us.rem_euclid(1_000_000)) as u32).to_le_bytes())?;
        w.write_all(&(data.len() as u32).to_le_bytes())?;
        w.write_all(&orig_len.to_le_bytes())?;
        w.write_all(data)?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.0.flush()?;
        Ok(())
    }
}

/// The base client/server addresses, as raw bytes per family.
struct Pairs {
    v4: Option<([u8; 4], [u8; 4])>,
    v6: Option<([u8; 16], [u8; 16])>,
}

impl Pairs {
    fn new(client: &[IpAddr], server: &[IpAddr]) -> Result<Self> {
        let mut p = Pairs { v4: None, v6: None };
        for (c, s) in client.iter().zip(server) {
            match (c, s) {
                (IpAddr::V4(c), IpAddr::V4(s)) => p.v4 = Some((c.octets(), s.octets())),
                (IpAddr::V6(c), IpAddr::V6(s)) => p.v6 = Some((c.octets(), s.octets())),
                _ => bail!("--client {c} and --server {s} are of different families"),
            }
        }
        Ok(p)
    }
}

/// Where the fields to rewrite sit in one base packet.
struct Layout {
    /// Offset of the source address; the destination follows it.
    src: usize,
    /// Address length (4 or 16).
    alen: usize,
    /// Whether the client sent it.
    from_client: bool,
    /// Offset of the IPv4 header checksum.
    ip_csum: Option<usize>,
    /// Offset of the transport checksum covering the pseudo-header.
    l4_csum: Option<usize>,
    /// UDP (a zero result is written as 0xffff).
    udp: bool,
    /// Client port or ICMP identifier: picks the replica's client host.
    selector: u16,
}

fn be16(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}

/// Finds the rewrite layout of an Ethernet frame between the base pair, if it is one.
fn layout(d: &[u8], pairs: &Pairs) -> Option<Layout> {
    let mut l3 = 14;
    let mut et = be16(d, 12);
    while matches!(et, 0x8100 | 0x88a8) && d.len() >= l3 + 4 {
        et = be16(d, l3 + 2);
        l3 += 4;
    }
    let (src, alen, proto, l4, first, ip_csum) = match et {
        0x0800 if d.len() >= l3 + 20 => {
            let (c, s) = pairs.v4?;
            let (a, b) = (&d[l3 + 12..l3 + 16], &d[l3 + 16..l3 + 20]);
            if !((a == c && b == s) || (a == s && b == c)) {
                return None;
            }
            let first = be16(d, l3 + 6) & 0x1fff == 0;
            let l4 = l3 + usize::from(d[l3] & 0x0f) * 4;
            (l3 + 12, 4, d[l3 + 9], l4, first, Some(l3 + 10))
        }
        0x86dd if d.len() >= l3 + 40 => {
            let (c, s) = pairs.v6?;
            let (a, b) = (&d[l3 + 8..l3 + 24], &d[l3 + 24..l3 + 40]);
            if !((a == c && b == s) || (a == s && b == c)) {
                return None;
            }
            (l3 + 8, 16, d[l3 + 6], l3 + 40, true, None)
        }
        _ => return None,
    };
    let from_client = match alen {
        4 => d[src..src + 4] == pairs.v4?.0,
        _ => d[src..src + 16] == pairs.v6?.0,
    };
    let (mut l4_csum, mut selector, mut udp) = (None, 0, false);
    if first {
        match proto {
            6 | 17 if d.len() >= l4 + 8 => {
                let (sp, dp) = (be16(d, l4), be16(d, l4 + 2));
                selector = if from_client { sp } else { dp };
                let at = l4 + if proto == 6 { 16 } else { 6 };
                udp = proto == 17;
                // A zero UDP checksum over IPv4 means "none": leave it.
                if d.len() >= at + 2 && !(udp && alen == 4 && be16(d, at) == 0) {
                    l4_csum = Some(at);
                }
            }
            1 | 58 if d.len() >= l4 + 6 => {
                selector = be16(d, l4 + 4);
                if proto == 58 {
                    l4_csum = Some(l4 + 2);
                }
            }
            _ => {}
        }
    }
    Some(Layout {
        src,
        alen,
        from_client,
        ip_csum,
        l4_csum,
        udp,
        selector,
    })
}

/// Folds a 32-bit one's-complement sum to 16 bits.
fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Sum of the 16-bit words of `b` (even length).
fn word_sum(b: &[u8]) -> u32 {
    b.chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum()
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with `old`/`new` the changed words.
fn adjust(d: &mut [u8], at: usize, old: &[u8], new: &[u8], udp: bool) {
    let hc = be16(d, at);
    let old_c: u32 = old
        .chunks_exact(2)
        .map(|w| u32::from(!u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let mut v = !fold(u32::from(!hc) + old_c + word_sum(new));
    if v == 0 && udp {
        v = 0xffff;
    }
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The replica's client and server addresses for a flow selector.
fn replica_hosts(k: u32, selector: u16, hosts: u32, servers: u32) -> ([u8; 4], [u8; 4]) {
    let h = u32::from(selector)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(k.wrapping_mul(40_503));
    let hi = 1 + (h >> 7) % hosts;
    let si = 1 + (h >> 3) % servers;
    let client = [10, 64 + (k % 180) as u8, (hi >> 8) as u8, hi as u8];
    let server = [172, 16 + ((k / 256) % 16) as u8, k as u8, si as u8];
    (client, server)
}

#[allow(clippy::too_many_arguments)]
fn amplify(
    base: &Path,
    out: &Path,
    target: u64,
    replicas: Option<u32>,
    snaplen: u32,
    pairs: &Pairs,
    hosts: u32,
    servers: u32,
) -> Result<()> {
    // First pass: count what can be rewritten, to pick the replica count.
    let (mut total, mut pair) = (0u64, 0u64);
    let mut cap = CaptureFile::open(base)?;
    while let Some(p) = cap.next_packet()? {
        total += 1;
        if p.link.0 == 1 && p.data.len() >= 14 && layout(p.data, pairs).is_some() {
            pair += 1;
        }
    }
    if pair == 0 {
        bail!(
            "{}: no packets between the base client and server",
            base.display()
        );
    }
    let n = replicas.unwrap_or_else(|| {
        let want = target.saturating_sub(total - pair);
        want.div_ceil(pair).clamp(1, 4096) as u32
    });
    eprintln!(
        "base: {total} packets, {pair} between the pair; {n} replicas → {} packets",
        total - pair + pair * u64::from(n)
    );

    let mut w = PcapOut::create(out, snaplen)?;
    let mut cap = CaptureFile::open(base)?;
    let mut buf = Vec::new();
    let (mut written, mut skipped) = (0u64, 0u64);
    while let Some(p) = cap.next_packet()? {
        if p.link.0 != 1 {
            skipped += 1;
            continue;
        }
        let ts_us = p.ts.0.div_euclid(1000);
        let keep = p.data.len().min(snaplen as usize);
        let Some(l) = (p.data.len() >= 14)
            .then(|| layout(p.data, pairs))
            .flatten()
        else {
            w.packet(ts_us, &p.data[..keep], p.orig_len)?;
            written += 1;
            continue;
        };
        let old = p.data[l.src..l.src + 2 * l.alen].to_vec();
        for k in 0..n {
            buf.clear();
            buf.extend_from_slice(p.data);
            let (c4, s4) = replica_hosts(k, l.selector, hosts, servers);
            let (c, s) = if l.from_client { (c4, s4) } else { (s4, c4) };
            // IPv6 keeps the base prefix and puts the IPv4-style host in the last 4 bytes.
            let a = l.src;
            let b = a + l.alen;
            buf[b - 4..b].copy_from_slice(&c);
            buf[b + l.alen - 4..b + l.alen].copy_from_slice(&s);
            let new = buf[a..a + 2 * l.alen].to_vec();
            if let Some(at) = l.ip_csum {
                adjust(&mut buf, at, &old, &new, false);
            }
            if let Some(at) = l.l4_csum {
                adjust(&mut buf, at, &old, &new, l.udp);
            }
            w.packet(ts_us, &buf[..keep], p.orig_len)?;
            written += 1;
        }
    }
    w.finish()?;
    eprintln!(
        "out: {} packets written{}",
        written,
        if skipped > 0 {
            format!(", {skipped} non-Ethernet skipped")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn synflood(out: &Path, packets: u32) -> Result<()> {
    let mut w = PcapOut::create(out, 65535)?;
    let mut f = [0u8; 54];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = 14;
    f[ip] = 0x45;
    f[ip + 2..ip + 4].copy_from_slice(&40u16.to_be_bytes());
    f[ip + 8] = 64;
    f[ip + 9] = 6;
    f[ip + 16..ip + 20].copy_from_slice(&[192, 0, 2, 10]);
    let tcp = 34;
    f[tcp + 2..tcp + 4].copy_from_slice(&80u16.to_be_bytes());
    f[tcp + 12] = 0x50;
    f[tcp + 13] = 0x02;
    f[tcp + 14..tcp + 16].copy_from_slice(&1024u16.to_be_bytes());
    let start_us = 1_700_000_000_000_000i64;
    for i in 0..packets {
        // Sources from 11.0.0.0 upwards: 10 million fit below 11.153.0.0.
        let src = (0x0b00_0000u32 + i).to_be_bytes();
        f[ip + 4..ip + 6].copy_from_slice(&(i as u16).to_be_bytes());
        f[ip + 12..ip + 16].copy_from_slice(&src);
        f[ip + 10..ip + 12].fill(0);
        let c = !fold(word_sum(&f[ip..ip + 20]));
        f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        f[tcp..tcp + 2].copy_from_slice(&(1024 + (i % 60000) as u16).to_be_bytes());
        f[tcp + 4..tcp + 8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        f[tcp + 16..tcp + 18].fill(0);
        let mut pseudo = [0u8; 12];
        pseudo[0..8].copy_from_slice(&f[ip + 12..ip + 20]);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
        let c = !fold(word_sum(&pseudo) + word_sum(&f[tcp..tcp + 20]));
        f[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
        w.packet(start_us + i64::from(i), &f, f.len() as u32)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_checksum_equals_recomputed() {
        let mut hdr = [
            0x45u8, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 201, 0, 1, 10, 201, 0, 2,
        ];
        let c = !fold(word_sum(&hdr));
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        let old = hdr[12..20].to_vec();
        hdr[12..16].copy_from_slice(&[10, 70, 1, 2]);
        hdr[16..20].copy_from_slice(&[172, 16, 3, 4]);
        let new = hdr[12..20].to_vec();
        adjust(&mut hdr, 10, &old, &new, false);
        let got = be16(&hdr, 10);
        hdr[10..12].fill(0);
        assert_eq!(got, !fold(word_sum(&hdr)));
    }
}
