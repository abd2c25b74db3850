//! Flow keys: the canonical 5-tuple a packet belongs to, Zeek's ICMP "ports", the
//! Community ID v1 hash and deterministic `uid`s.
//!
//! The table key is direction-free: both directions of a conversation map to the same
//! [`Key`]. ICMP messages are keyed as Zeek keys them — the message type as source
//! "port" and its counterpart type (echo request ↔ reply, …) or, for one-way messages,
//! the code as destination "port"; one-way messages keep their direction in the key.

use std::net::IpAddr;

use base64::Engine;
use sha1::{Digest, Sha1};
use tunnelwatch_model::{IpProto, Timestamp};

/// A direction-free flow key.
#[derive(Clone, Copy, Debug, Eq)]
pub struct Key {
    /// Lower endpoint address (IPv4 as an IPv4-mapped IPv6 address).
    pub a: [u8; 16],
    /// Higher endpoint address.
    pub b: [u8; 16],
    /// Port of `a`.
    pub pa: u16,
    /// Port of `b`.
    pub pb: u16,
    /// IP protocol.
    pub proto: u8,
    /// 1 for a one-way ICMP key (not canonicalised), 0 otherwise.
    pub one_way: u8,
}

/// Three words, not 38 bytes through the slice path: the flow index hashes a key for
/// every packet. Each address is one 128-bit word (one multiplication in the index's
/// hasher, which folds 64-bit words two by two through a buffer).
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u128(u128::from_le_bytes(self.a));
        h.write_u128(u128::from_le_bytes(self.b));
        h.write_u64(
            u64::from(self.pa) << 32
                | u64::from(self.pb) << 16
                | u64::from(self.proto) << 8
                | u64::from(self.one_way),
        );
    }
}

/// Field by field, the addresses as two 128-bit words (the flow index compares a key
/// for every packet; the derived comparison went through `memcmp`).
impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        u128::from_ne_bytes(self.a) == u128::from_ne_bytes(o.a)
            && u128::from_ne_bytes(self.b) == u128::from_ne_bytes(o.b)
            && (self.pa, self.pb, self.proto, self.one_way) == (o.pa, o.pb, o.proto, o.one_way)
    }
}

/// An endpoint as seen in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Sender address.
    pub src: IpAddr,
    /// Sender port (ICMP: type).
    pub sport: u16,
    /// Receiver address.
    pub dst: IpAddr,
    /// Receiver port (ICMP: counterpart type or code).
    pub dport: u16,
    /// IP protocol.
    pub proto: IpProto,
    /// One-way ICMP message.
    pub one_way: bool,
}

/// An address as a number (IPv4 as IPv4-mapped IPv6), by arithmetic: the octet arrays'
/// path was copied byte by byte into place.
fn addr_number(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => 0xffff_0000_0000 | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Endpoints {
    /// The table key, and whether the sender is the key's `a` side.
    pub fn key(&self) -> (Key, bool) {
        let (sn, dn) = (addr_number(self.src), addr_number(self.dst));
        let src_first = self.one_way || (sn, self.sport) <= (dn, self.dport);
        let (a, pa, b, pb) = if src_first {
            (sn, self.sport, dn, self.dport)
        } else {
            (dn, self.dport, sn, self.sport)
        };
        let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
        (
            Key {
                a,
                b,
                pa,
                pb,
                proto: self.proto.0,
                one_way: u8::from(self.one_way),
            },
            src_first,
        )
    }
}

/// Zeek's (and Community ID's) ICMP counterpart: returns the "destination port" and
/// whether the message is one-way.
pub fn icmp_counterpart(v6: bool, icmp_type: u8, code: u8) -> (u16, bool) {
    let two_way = if v6 {
        match icmp_type {
            128 => Some(129),
            129 => Some(128),
            130 => Some(131),
            131 => Some(130),
            133 => Some(134),
            134 => Some(133),
            135 => Some(136),
            136 => Some(135),
            139 => Some(140),
            140 => Some(139),
            144 => Some(145),
            145 => Some(144),
            _ => None,
        }
    } else {
        match icmp_type {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            10 => Some(9),
            9 => Some(10),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        }
    };
    match two_way {
        Some(t) => (t, false),
        None => (u16::from(code), true),
    }
}

/// Community ID v1 (<https://github.com/corelight/community-id-spec>) with seed 0.
///
/// `sport`/`dport` are the transport ports, or for ICMP the type and its counterpart
/// (see [`icmp_counterpart`]); one-way ICMP messages are not reordered.
pub fn community_id(e: &Endpoints) -> String {
    let with_ports = matches!(
        e.proto,
        IpProto::TCP | IpProto::UDP | IpProto::SCTP | IpProto::ICMP | IpProto::ICMPV6
    );
    let (mut sa, mut da, mut sp, mut dp) = (e.src, e.dst, e.sport, e.dport);
    let ordered = |a: &IpAddr, b: &IpAddr, pa: u16, pb: u16| {
        let ((ab, an), (bb, bn)) = (ip_bytes(a), ip_bytes(b));
        let (ab, bb) = (&ab[..an], &bb[..bn]);
        ab < bb || (ab == bb && pa <= pb)
    };
    if !(ordered(&sa, &da, sp, dp) || e.one_way && e.proto.is_icmp()) {
        std::mem::swap(&mut sa, &mut da);
        std::mem::swap(&mut sp, &mut dp);
    }
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    let ((sb, sn), (db, dn)) = (ip_bytes(&sa), ip_bytes(&da));
    h.update(&sb[..sn]);
    h.update(&db[..dn]);
    h.update([e.proto.0, 0]);
    if with_ports {
        h.update(sp.to_be_bytes());
        h.update(dp.to_be_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut out);
    out
}

/// The address bytes (4 or 16) in a fixed buffer: `(bytes, length)`.
fn ip_bytes(a: &IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A deterministic connection identifier: `C` + base62 of 96 bits of SHA-1 over the
/// key, the first packet's time and its position in the input. The same input always
/// yields the same `uid`s, and no two flows of one input share one.
pub fn uid(key: &Key, first_ts: Timestamp, packet_index: u64) -> String {
    let mut h = Sha1::new();
    h.update(key.a);
    h.update(key.b);
    h.update(key.pa.to_be_bytes());
    h.update(key.pb.to_be_bytes());
    h.update([key.proto, key.one_way]);
    h.update(first_ts.as_nanos().to_be_bytes());
    h.update(packet_index.to_be_bytes());
    let d = h.finalize();
    let v = u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[4..].copy_from_slice(&d[..12]);
        b
    });
    let mut out = Vec::with_capacity(18);
    out.push(b'C');
    base62(v, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the base-62 digits of `v` (none for 0), most significant first. A 96-bit
/// value is split once by 62^10 (one 128-bit division), the rest is 64-bit arithmetic:
/// digit by digit in 128 bits was a library call per digit.
fn base62(v: u128, out: &mut Vec<u8>) {
    const LOW: u64 = 62u64.pow(10);
    let mut digits = [0u8; 32];
    let mut n = 0;
    let mut push = |mut x: u64, all: bool| {
        let mut i = 0;
        while x > 0 || (all && i < 10) {
            digits[n] = BASE62[(x % 62) as usize];
            x /= 62;
            n += 1;
            i += 1;
        }
    };
    let mut rest = v;
    while rest > u128::from(u64::MAX) {
        let low = (rest % u128::from(LOW)) as u64;
        rest /= u128::from(LOW);
        push(low, true);
    }
    push(rest as u64, false);
    out.extend(digits[..n].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(src: &str, sport: u16, dst: &str, dport: u16, proto: IpProto) -> Endpoints {
        Endpoints {
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
            proto,
            one_way: false,
        }
    }

    #[test]
    fn key_holds_addresses_as_their_ipv6_octets() {
        let octets = |a: IpAddr| match a {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        for (s, d) in [
            ("10.0.0.2", "10.0.0.1"),
            ("192.0.2.1", "::ffff:192.0.2.2"),
            ("2001:db8::2", "2001:db8::1"),
            ("255.255.255.255", "::"),
        ] {
            let e = ep(s, 1, d, 2, IpProto::UDP);
            let (k, src_first) = e.key();
            let (lo, hi) = if src_first {
                (e.src, e.dst)
            } else {
                (e.dst, e.src)
            };
            assert_eq!((k.a, k.b), (octets(lo), octets(hi)), "{s} {d}");
            assert!(k.a <= k.b, "{s} {d}");
        }
    }

    // Test vectors: Tenzir's `community_id` documentation (TCP) and the Community ID
    // baseline shipped with the `communityid` crate (tests/data/baseline_default.json).
    #[test]
    fn community_id_tcp_published_vector() {
        let e = ep("1.2.3.4", 4584, "43.3.132.3", 3483, IpProto::TCP);
        assert_eq!(community_id(&e), "1:koNcqhFRD5kb254ZrLsdv630jCM=");
    }

    #[test]
    fn community_id_icmpv6_neighbor_pair_is_symmetric() {
        let mut e = ep(
            "fe80::200:86ff:fe05:80da",
            135,
            "fe80::260:97ff:fe07:69ea",
            136,
            IpProto::ICMPV6,
        );
        assert_eq!(community_id(&e), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=");
        e = ep(
            "fe80::260:97ff:fe07:69ea",
            136,
            "fe80::200:86ff:fe05:80da",
            135,
            IpProto::ICMPV6,
        );
        assert_eq!(community_id(&e), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=");
    }

    #[test]
    fn community_id_icmpv6_one_way_published_vector() {
        let mut e = ep(
            "3ffe:501:1800:2345::2",
            3,
            "3ffe:507:0:1:200:86ff:fe05:80da",
            0,
            IpProto::ICMPV6,
        );
        e.one_way = true;
        assert_eq!(community_id(&e), "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=");
        let e = ep(
            "3ffe:507:0:1:200:86ff:fe05:80da",
            128,
            "3ffe:501:0:1001::2",
            129,
            IpProto::ICMPV6,
        );
        assert_eq!(community_id(&e), "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=");
    }

    #[test]
    fn key_is_direction_free() {
        let fwd = ep("10.0.0.1", 1234, "10.0.0.2", 80, IpProto::TCP);
        let rev = ep("10.0.0.2", 80, "10.0.0.1", 1234, IpProto::TCP);
        let (k1, a1) = fwd.key();
        let (k2, a2) = rev.key();
        assert_eq!(k1, k2);
        assert_ne!(a1, a2);
    }

    #[test]
    fn base62_is_the_digit_by_digit_encoding() {
        fn reference(mut v: u128) -> Vec<u8> {
            let mut out = Vec::new();
            while v > 0 {
                out.push(BASE62[(v % 62) as usize]);
                v /= 62;
            }
            out.reverse();
            out
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut values = vec![0, 1, 61, 62, u128::from(u64::MAX), u128::from(u64::MAX) + 1];
        values.extend([
            u128::MAX,
            u128::MAX >> 32,
            62u128.pow(10),
            62u128.pow(20) - 1,
        ]);
        for bits in 1..=128 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (u128::from(x) << 64 | u128::from(x.rotate_left(17))) >> (128 - bits);
            values.extend([v, v.saturating_sub(1)]);
        }
        for v in values {
            let mut got = Vec::new();
            base62(v, &mut got);
            assert_eq!(got, reference(v), "{v}");
        }
    }

    #[test]
    fn uid_is_deterministic_and_distinct() {
        let (k, _) = ep("10.0.0.1", 1, "10.0.0.2", 2, IpProto::UDP).key();
        let t = Timestamp(5);
        assert_eq!(uid(&k, t, 1), uid(&k, t, 1));
        assert_ne!(uid(&k, t, 1), uid(&k, t, 2));
        assert!(uid(&k, t, 1).starts_with('C'));
    }
}
