//! The Internet checksum (RFC 1071) for IPv4 headers and TCP/UDP/ICMP segments.
//!
//! Verification is only possible when the whole segment was captured; callers ask
//! [`transport_ok`], which answers `None` otherwise. The sum runs over 8-byte words, so
//! verifying a full-size segment costs tens of nanoseconds.

use std::net::IpAddr;

use tunnelwatch_model::IpProto;

use crate::packet::{IpPacket, Transport};

/// Adds `data` as big-endian 16-bit words to a running 64-bit sum.
///
/// The one's complement sum does not depend on byte order but for a final swap
/// (RFC 1071 §2(B)), so whole 32-byte blocks are summed as native 32-bit words in eight
/// lanes (which the compiler turns into vector adds), folded to 16 bits and swapped
/// into network order. The folded value is congruent to the word sum modulo 0xffff and
/// zero only for all-zero data, which is all [`fold`] keeps.
fn add_words(data: &[u8], mut acc: u64) -> u64 {
    let mut blocks = data.chunks_exact(32);
    let mut lanes = [0u64; 8];
    for b in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let native = fold(lanes.iter().sum());
    acc += u64::from(if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    });
    let mut chunks = blocks.remainder().chunks_exact(8);
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
///
/// A header is a whole number of 32-bit words (20 bytes but for options): summed as
/// such (a 32-bit word adds what its two 16-bit halves add once folded, 2^16 ≡ 1 modulo
/// 0xffff), without the block set-up that segments' sums use.
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    let mut words = header.chunks_exact(4);
    let mut acc = 0u64;
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    fold(add_words(words.remainder(), acc)) == 0xffff
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: IpProto, len: u32) -> u64 {
    // Addresses as 32-bit big-endian words: 2^16 ≡ 1 (mod 0xffff), so a 32-bit word
    // adds what its two 16-bit halves add once folded. A mixed pair (not seen on the
    // wire) sums as its IPv4-mapped IPv6 form would: the mapping's 0xffff word adds
    // nothing once folded (the protocol keeps the sum non-zero).
    fn words(a: IpAddr) -> u64 {
        match a {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let v = a.to_bits();
                (0..4).map(|i| (v >> (32 * i)) as u32 as u64).sum()
            }
        }
    }
    words(src) + words(dst) + u64::from(proto.0) + u64::from(len >> 16) + u64::from(len & 0xffff)
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

    /// RFC 1071's definition, one 16-bit word at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut acc = 0u64;
        for w in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        fold(acc)
    }

    #[test]
    fn ipv4_header_check_is_the_word_sum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..=64 {
            for _ in 0..50 {
                let mut h: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                assert_eq!(ipv4_header_ok(&h), reference(&h) == 0xffff, "{h:?}");
                // Set a checksum that makes it verify, where there is room for one.
                if len >= 12 {
                    h[10] = 0;
                    h[11] = 0;
                    let sum = !reference(&h);
                    h[10..12].copy_from_slice(&sum.to_be_bytes());
                    assert_eq!(ipv4_header_ok(&h), reference(&h) == 0xffff, "{h:?}");
                    assert!(ipv4_header_ok(&h) || h.iter().all(|&b| b == 0), "{h:?}");
                }
            }
        }
    }

    #[test]
    fn block_sum_matches_the_word_by_word_sum() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            for fill in [None, Some(0x00), Some(0xff)] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        fill.unwrap_or(x as u8)
                    })
                    .collect();
                assert_eq!(ones_complement(&data), reference(&data), "{len} {fill:?}");
                // With a running sum in front, as the pseudo-header gives.
                assert_eq!(
                    fold(add_words(&data, 0x1_2345)),
                    fold(0x1_2345 + u64::from(reference(&data))),
                    "{len} {fill:?}"
                );
            }
        }
    }

    #[test]
    fn pseudo_header_sums_the_addresses_word_by_word() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..2000u64 {
            let v4 = |n: u64| IpAddr::from((n as u32).to_be_bytes());
            let v6 = |a: u64, b: u64| {
                IpAddr::from(((u128::from(a) << 64) | u128::from(b)).to_be_bytes())
            };
            let (src, dst) = match case % 4 {
                0 => (v4(next()), v4(next())),
                1 => (v6(next(), next()), v6(next(), next())),
                2 => (v4(next()), v6(next(), next())),
                _ => (v4(case % 3 * 0xffff_ffff), v4(0)),
            };
            let bytes = |a: IpAddr| match a {
                IpAddr::V4(a) if src.is_ipv4() && dst.is_ipv4() => a.octets().to_vec(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            let len = (next() as u32) >> (next() % 32);
            let proto = IpProto(next() as u8 | 1);
            let mut header = [bytes(src), bytes(dst)].concat();
            header.extend_from_slice(&[0, proto.0]);
            header.extend_from_slice(&len.to_be_bytes());
            assert_eq!(
                fold(pseudo_header(src, dst, proto, len)),
                reference(&header),
                "{src} {dst} {proto:?} {len}"
            );
        }
    }

    #[test]
    fn odd_length_pads_with_zero_byte() {
        assert_eq!(fold(add_words(&[0x01], 0)), 0x0100);
        assert_eq!(fold(add_words(&[0xff, 0xff, 0x00, 0x01], 0)), 0x0001);
    }
}
