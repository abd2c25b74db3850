//! Addresses as stored: 16-byte blobs, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
//!
//! Blobs compare with `memcmp`, so a network (`net 10.0.0.0/8`) is a range of blobs and
//! an index answers it; the mapped form keeps IPv4 and IPv6 in one column. The cost: a
//! literal IPv6 `::ffff:a.b.c.d` address reads back as IPv4.

use std::net::{IpAddr, Ipv6Addr};

/// The stored form of an address.
pub fn addr_to_blob(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// An address back from its stored form (`None` when the blob is not 16 bytes).
pub fn addr_from_blob(b: &[u8]) -> Option<IpAddr> {
    let arr: [u8; 16] = b.try_into().ok()?;
    Some(Ipv6Addr::from(arr).to_canonical())
}

/// The first and last stored blobs of a network given as address and prefix length
/// (prefix counted in the address's own family).
pub(crate) fn net_range(a: IpAddr, prefix: u8) -> ([u8; 16], [u8; 16]) {
    let (base, bits) = match a {
        IpAddr::V4(_) => (addr_to_blob(a), 96 + u32::from(prefix)),
        IpAddr::V6(_) => (addr_to_blob(a), u32::from(prefix)),
    };
    let v = u128::from_be_bytes(base);
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits.min(128))
    };
    let lo = v & mask;
    let hi = lo | !mask;
    (lo.to_be_bytes(), hi.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips_through_mapped_form() {
        let a: IpAddr = "10.1.1.9".parse().unwrap();
        assert_eq!(addr_from_blob(&addr_to_blob(a)), Some(a));
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr_from_blob(&addr_to_blob(b)), Some(b));
        assert_eq!(addr_from_blob(&[1, 2, 3]), None);
    }

    #[test]
    fn net_range_covers_exactly_the_prefix() {
        let (lo, hi) = net_range("10.0.0.0".parse().unwrap(), 8);
        assert_eq!(addr_from_blob(&lo), Some("10.0.0.0".parse().unwrap()));
        assert_eq!(addr_from_blob(&hi), Some("10.255.255.255".parse().unwrap()));
        let (lo, hi) = net_range("2001:db8::".parse().unwrap(), 32);
        assert_eq!(addr_from_blob(&lo), Some("2001:db8::".parse().unwrap()));
        assert_eq!(
            addr_from_blob(&hi),
            Some("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap())
        );
    }
}
