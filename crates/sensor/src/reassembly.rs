//! IP fragment reassembly (RFC 791 §3.2, RFC 8200 §4.5), as end hosts and Zeek do it:
//! fragments are held until their datagram is complete, then the whole datagram is
//! decoded and counted once, at the time of its last fragment. A tunnel inside a
//! fragmented outer packet, or a DNS answer split over fragments, is thus seen whole.
//!
//! Overlapping fragments keep the bytes that arrived first (and are counted: overlap
//! is a classic evasion). Memory is bounded: a datagram waits at most [`TIMEOUT`] of
//! packet time, at most [`MAX_PENDING`] datagrams and [`MAX_BYTES`] of data are held,
//! and what is dropped is counted, never silently lost. Packet time drives everything.

use std::net::IpAddr;

use hashbrown::HashMap;
use tunnelwatch_decode::{checksum, Fragment, IpPacket};
use tunnelwatch_model::Timestamp;

/// How long an incomplete datagram waits for its fragments.
pub const TIMEOUT: i64 = 30 * 1_000_000_000;
/// Most incomplete datagrams held at once.
pub const MAX_PENDING: usize = 8192;
/// Most fragment bytes held at once.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Largest datagram accepted (IPv4 and IPv6 without jumbograms).
const MAX_DATAGRAM: u32 = 65_535;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DatagramId {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

#[derive(Debug)]
struct Pending {
    first_seen: Timestamp,
    /// IP header of the offset-0 fragment (IPv4 as captured, IPv6 rebuilt), once seen.
    header: Option<Vec<u8>>,
    version: u8,
    data: Vec<u8>,
    /// Payload ranges that arrived (wire lengths), disjoint and sorted.
    arrived: Vec<(u32, u32)>,
    /// Payload ranges whose bytes were captured, disjoint and sorted.
    captured: Vec<(u32, u32)>,
    /// Payload length, known once the last fragment (more = 0) arrived.
    total: Option<u32>,
    /// Fragments merged.
    count: u16,
    /// Wire bytes of the frames that carried the fragments.
    link_bytes: u64,
}

/// A reassembled datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// IP header and payload.
    pub bytes: Vec<u8>,
    /// Fragments it was made of.
    pub fragments: u16,
    /// Wire bytes of the frames that carried its fragments, link headers included.
    pub link_bytes: u64,
}

impl Pending {
    fn new(ts: Timestamp, version: u8) -> Self {
        Pending {
            first_seen: ts,
            header: None,
            version,
            data: Vec::new(),
            arrived: Vec::new(),
            captured: Vec::new(),
            total: None,
            count: 0,
            link_bytes: 0,
        }
    }
}

/// Adds `[a, b)` to a sorted list of disjoint ranges, merging neighbours.
fn insert_range(r: &mut Vec<(u32, u32)>, a: u32, b: u32) {
    if a >= b {
        return;
    }
    r.push((a, b));
    r.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for &(x, y) in r.iter() {
        match merged.last_mut() {
            Some(last) if x <= last.1 => last.1 = last.1.max(y),
            _ => merged.push((x, y)),
        }
    }
    *r = merged;
}

/// True when `[a, b)` shares bytes with the ranges.
fn overlaps(r: &[(u32, u32)], a: u32, b: u32) -> bool {
    r.iter().any(|&(x, y)| x < b && a < y)
}

/// The parts of `[a, b)` not covered by the ranges.
fn uncovered(r: &[(u32, u32)], a: u32, b: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut cursor = a;
    for &(x, y) in r {
        if y <= cursor || x >= b {
            continue;
        }
        if x > cursor {
            out.push((cursor, x));
        }
        cursor = cursor.max(y);
    }
    if cursor < b {
        out.push((cursor, b));
    }
    out
}

/// Counters of the reassembler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyCounters {
    /// Fragments received.
    pub fragments: u64,
    /// Datagrams completed.
    pub datagrams: u64,
    /// Fragments whose bytes overlapped bytes already held.
    pub overlaps: u64,
    /// Incomplete datagrams given up (timeout, memory bound or end of input).
    pub incomplete: u64,
    /// Fragments inside those incomplete datagrams.
    pub incomplete_fragments: u64,
    /// Fragments that were inconsistent (beyond 64 KiB, or past a known end).
    pub invalid: u64,
}

impl ReassemblyCounters {
    /// Adds another reassembler's counters.
    pub fn merge(&mut self, o: &ReassemblyCounters) {
        self.fragments += o.fragments;
        self.datagrams += o.datagrams;
        self.overlaps += o.overlaps;
        self.incomplete += o.incomplete;
        self.incomplete_fragments += o.incomplete_fragments;
        self.invalid += o.invalid;
    }
}

/// The fragment reassembler.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<DatagramId, Pending, foldhash::fast::RandomState>,
    bytes: usize,
    last_sweep: Timestamp,
    counters: ReassemblyCounters,
}

impl Reassembler {
    /// Counters so far.
    pub fn counters(&self) -> &ReassemblyCounters {
        &self.counters
    }

    /// Adds the fragment `layer` (whose IP header is `header`, the captured bytes at
    /// the layer's start), carried in a frame of `frame_len` bytes on the wire.
    /// Returns the complete datagram when this fragment completed it.
    pub fn add(
        &mut self,
        layer: &IpPacket<'_>,
        header: &[u8],
        frame_len: u32,
        ts: Timestamp,
    ) -> Option<Datagram> {
        self.sweep(ts);
        let (id, offset, more) = match layer.fragment {
            Fragment::No => return None,
            Fragment::First { id } => (id, 0u32, true),
            Fragment::Later { id, offset, more } => (id, offset, more),
        };
        self.counters.fragments += 1;
        let wire_len = layer.ip_len.saturating_sub(layer.header_len);
        let end = offset.saturating_add(wire_len);
        if end > MAX_DATAGRAM {
            self.counters.invalid += 1;
            return None;
        }
        let key = DatagramId {
            src: layer.src,
            dst: layer.dst,
            proto: layer.proto.0,
            id,
        };
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING {
            self.drop_oldest();
        }
        let p = self
            .pending
            .entry(key)
            .or_insert_with(|| Pending::new(ts, layer.version));
        if p.total.is_some_and(|t| end > t)
            || (!more && p.arrived.last().is_some_and(|r| r.1 > end))
        {
            self.counters.invalid += 1;
            return None;
        }
        p.count = p.count.saturating_add(1);
        p.link_bytes += u64::from(frame_len);
        if offset == 0 && p.header.is_none() {
            p.header = Some(build_header(layer, header));
        }
        if !more {
            p.total = Some(end);
        }
        if (p.data.len() as u32) < end {
            self.bytes += end as usize - p.data.len();
            p.data.resize(end as usize, 0);
        }
        if overlaps(&p.arrived, offset, end) {
            self.counters.overlaps += 1;
        }
        insert_range(&mut p.arrived, offset, end);
        // Captured bytes not captured before are copied: the first data wins.
        let cap_end = offset + (layer.l4.len() as u32).min(wire_len);
        for (a, b) in uncovered(&p.captured, offset, cap_end) {
            p.data[a as usize..b as usize]
                .copy_from_slice(&layer.l4[(a - offset) as usize..(b - offset) as usize]);
        }
        insert_range(&mut p.captured, offset, cap_end);

        let total = p.total?;
        let done = p.header.is_some() && matches!(p.arrived.as_slice(), [(0, b)] if *b >= total);
        if !done {
            return None;
        }
        let p = self.pending.remove(&key)?;
        self.bytes = self.bytes.saturating_sub(p.data.len());
        self.counters.datagrams += 1;
        // Bytes cut by the snap length stay unknown: only the captured prefix follows.
        let prefix = match p.captured.first() {
            Some(&(0, b)) => b.min(total) as usize,
            _ => 0,
        };
        let mut out = p.header.unwrap_or_default();
        finish_header(&mut out, p.version, total);
        out.extend_from_slice(&p.data[..prefix]);
        Some(Datagram {
            bytes: out,
            fragments: p.count,
            link_bytes: p.link_bytes,
        })
    }

    /// Gives up datagrams older than the timeout (at most once per second of packet
    /// time).
    pub fn sweep(&mut self, now: Timestamp) {
        if now.nanos_since(self.last_sweep) < 1_000_000_000 && self.bytes <= MAX_BYTES {
            return;
        }
        self.last_sweep = now;
        let mut lost = (0u64, 0u64, 0usize);
        self.pending.retain(|_, p| {
            let keep = now.nanos_since(p.first_seen) <= TIMEOUT;
            if !keep {
                lost.0 += 1;
                lost.1 += u64::from(p.count);
                lost.2 += p.data.len();
            }
            keep
        });
        self.counters.incomplete += lost.0;
        self.counters.incomplete_fragments += lost.1;
        self.bytes = self.bytes.saturating_sub(lost.2);
        while self.bytes > MAX_BYTES && !self.pending.is_empty() {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let Some(key) = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(p) = self.pending.remove(&key) {
            self.counters.incomplete += 1;
            self.counters.incomplete_fragments += u64::from(p.count);
            self.bytes = self.bytes.saturating_sub(p.data.len());
        }
    }

    /// Gives up everything still pending (end of input).
    pub fn finish(&mut self) {
        for p in self.pending.values() {
            self.counters.incomplete += 1;
            self.counters.incomplete_fragments += u64::from(p.count);
        }
        self.pending.clear();
        self.bytes = 0;
    }
}

/// The header the reassembled datagram gets: IPv4 keeps the first fragment's header
/// (options included); IPv6 gets a plain 40-byte header whose next header is the
/// fragmented payload's protocol (extension headers before the fragment header are
/// not needed to key or decode the datagram).
fn build_header(layer: &IpPacket<'_>, captured: &[u8]) -> Vec<u8> {
    if layer.version == 4 {
        let hl = (layer.header_len as usize).min(captured.len());
        return captured[..hl].to_vec();
    }
    let mut h = vec![0u8; 40];
    h[..4].copy_from_slice(captured.get(..4).unwrap_or(&[0x60, 0, 0, 0]));
    h[6] = layer.proto.0;
    h[7] = layer.ttl;
    if let (IpAddr::V6(s), IpAddr::V6(d)) = (layer.src, layer.dst) {
        h[8..24].copy_from_slice(&s.octets());
        h[24..40].copy_from_slice(&d.octets());
    }
    h
}

/// Sets the reassembled length, clears the fragment fields and fixes the checksum.
fn finish_header(h: &mut [u8], version: u8, payload: u32) {
    if version == 4 && h.len() >= 20 {
        let total = (h.len() as u32 + payload).min(0xffff) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6] &= 0x40; // keep DF, clear MF and the offset
        h[7] = 0;
        h[10] = 0;
        h[11] = 0;
        let sum = checksum::ones_complement(h);
        h[10..12].copy_from_slice(&(!sum).to_be_bytes());
    } else if h.len() >= 40 {
        h[4..6].copy_from_slice(&(payload.min(0xffff) as u16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnelwatch_decode::{Decoded, Decoder, Encap, LinkType, Transport};

    /// An IPv4/UDP datagram of `payload` bytes split into fragments of `chunk` bytes
    /// (multiples of 8), as raw IP packets.
    fn fragments(payload: usize, chunk: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut udp = vec![0u8; 8 + payload];
        udp[0..2].copy_from_slice(&5353u16.to_be_bytes());
        udp[2..4].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        for (i, b) in udp[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut frags = Vec::new();
        let mut off = 0;
        while off < udp.len() {
            let end = (off + chunk).min(udp.len());
            let more = end < udp.len();
            let mut h = vec![
                0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            let total = (20 + end - off) as u16;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            let fo = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&fo.to_be_bytes());
            let sum = checksum::ones_complement(&h);
            h[10..12].copy_from_slice(&(!sum).to_be_bytes());
            h.extend_from_slice(&udp[off..end]);
            frags.push(h);
            off = end;
        }
        (udp, frags)
    }

    fn feed(r: &mut Reassembler, pkt: &[u8], ts: i64) -> Option<Datagram> {
        let mut d = Decoded::default();
        Decoder::default().decode(LinkType::RAW, pkt, &mut d);
        let l = d.layers[0];
        r.add(&l, pkt, pkt.len() as u32, Timestamp(ts))
    }

    #[test]
    fn reassembly_out_of_order_yields_whole_datagram() {
        let (udp, frags) = fragments(3000, 1480);
        assert_eq!(frags.len(), 3);
        let mut r = Reassembler::default();
        assert!(feed(&mut r, &frags[2], 1).is_none());
        assert!(feed(&mut r, &frags[0], 2).is_none());
        let dg = feed(&mut r, &frags[1], 3).expect("complete");
        assert_eq!(dg.fragments, 3);
        assert_eq!(
            dg.link_bytes as usize,
            frags.iter().map(Vec::len).sum::<usize>()
        );
        let dgram = dg.bytes;
        let mut d = Decoded::default();
        Decoder::default().decode_ip(&dgram, 4, Encap::None, &mut d);
        let l = d.layers[0];
        assert_eq!(l.ip_len as usize, 20 + udp.len());
        assert!(matches!(l.transport, Transport::Udp(u) if u.dst_port == 53));
        assert_eq!(l.payload, &udp[8..]);
        assert!(!l.bad_ip_checksum);
        assert_eq!(r.counters().datagrams, 1);
    }

    #[test]
    fn reassembly_incomplete_is_counted_at_finish() {
        let (_, frags) = fragments(3000, 1480);
        let mut r = Reassembler::default();
        assert!(feed(&mut r, &frags[0], 1).is_none());
        r.finish();
        assert_eq!(
            (r.counters().incomplete, r.counters().incomplete_fragments),
            (1, 1)
        );
    }

    #[test]
    fn reassembly_overlap_keeps_first_bytes_and_counts() {
        let (_, frags) = fragments(16, 8);
        let mut r = Reassembler::default();
        feed(&mut r, &frags[0], 1);
        let mut dup = frags[1].clone();
        let n = dup.len();
        dup[n - 1] ^= 0xff; // different bytes at the same offset
        feed(&mut r, &frags[1], 2);
        feed(&mut r, &dup, 3);
        assert!(r.counters().overlaps >= 1);
    }
}
