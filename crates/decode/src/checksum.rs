//! The Internet checksum (RFC 1071) for IPv4 headers and TCP/UDP/ICMP segments.
//!
//! Verification is only possible when the whole segment was captured; callers ask
//! [`transport_ok`], which answers `None` otherwise. The sum runs over 8-byte words, so
//! verifying a full-size segment costs tens of nanoseconds.

use std::net::IpAddr;

use tunnelwatch_model::IpProto;

use crate::packet::{IpPacket, Transport};

/// Adds `data` as big-endian 16-bit words to a running 64-bit sum.
fn add_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let v = u64::from_be_bytes(b);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits (one's complement addition).
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The one's complement sum of `data` as 16-bit big-endian words (not inverted).
pub fn ones_complement(data: &[u8]) -> u16 {
    fold(add_words(data, 0))
}

/// True when an IPv4 header (with its checksum field) sums to 0xffff.
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    fold(add_words(header, 0)) == 0xffff
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: IpProto, len: u32) -> u64 {
    let mut acc = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = add_words(&s.octets(), acc);
            acc = add_words(&d.octets(), acc);
        }
        (s, d) => {
            let s16 = match s {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let d16 = match d {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            acc = add_words(&s16, acc);
            acc = add_words(&d16, acc);
        }
    }
    acc + u64::from(proto.0) + u64::from(len >> 16) + u64::from(len & 0xffff)
}

/// Verifies the transport checksum of `pkt`.
///
/// Returns `None` when it cannot be checked (segment not fully captured, a fragment, or
/// not TCP/UDP/ICMP), `Some(true)` when it verifies or is absent (IPv4 UDP checksum 0).
pub fn transport_ok(pkt: &IpPacket<'_>) -> Option<bool> {
    let wire = pkt.ip_len.checked_sub(pkt.header_len)?;
    if pkt.l4.len() as u64 != u64::from(wire) || !matches!(pkt.fragment, crate::Fragment::No) {
        return None;
    }
    let acc = match pkt.transport {
        Transport::Tcp(_) => pseudo_header(pkt.src, pkt.dst, IpProto::TCP, wire),
        Transport::Udp(u) => {
            if u.checksum == 0 && pkt.version == 4 {
                return Some(true);
            }
            pseudo_header(pkt.src, pkt.dst, IpProto::UDP, wire)
        }
        Transport::Icmp(m) if m.v6 => pseudo_header(pkt.src, pkt.dst, IpProto::ICMPV6, wire),
        Transport::Icmp(_) => 0,
        Transport::Other => return None,
    };
    Some(fold(add_words(pkt.l4, acc)) == 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_known_good_verifies() {
        // RFC 1071-style example header (Wikipedia's IPv4 checksum example).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(ipv4_header_ok(&h));
        let mut bad = h;
        bad[10] ^= 1;
        assert!(!ipv4_header_ok(&bad));
    }

    #[test]
    fn odd_length_pads_with_zero_byte() {
        assert_eq!(fold(add_words(&[0x01], 0)), 0x0100);
        assert_eq!(fold(add_words(&[0xff, 0xff, 0x00, 0x01], 0)), 0x0001);
    }
}
