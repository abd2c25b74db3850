//! Addresses as text without the formatting machinery: a record's JSON and the
//! detectors' series keys write one or two per flow, and `Display` through
//! `core::fmt` was most of that work.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The standard library's text of an address (`Display`: RFC 5952 for IPv6,
/// `::ffff:a.b.c.d` for IPv4-mapped), held in place.
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    /// The text of `a`.
    pub fn new(a: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match a {
            IpAddr::V4(a) => t.v4(a),
            IpAddr::V6(a) => t.v6(a),
        }
        t
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, letters, dots and colons are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    /// The text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn v4(&mut self, a: Ipv4Addr) {
        for (i, o) in a.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            if o >= 100 {
                self.push(b'0' + o / 100);
            }
            if o >= 10 {
                self.push(b'0' + o / 10 % 10);
            }
            self.push(b'0' + o % 10);
        }
    }

    fn v6(&mut self, a: Ipv6Addr) {
        if let Some(v4) = a.to_ipv4_mapped() {
            for &b in b"::ffff:" {
                self.push(b);
            }
            return self.v4(v4);
        }
        let seg = a.segments();
        // The first longest run of zero groups, when longer than one, becomes `::`.
        let (mut run, mut best) = ((0, 0), (0, 0));
        for (i, &g) in seg.iter().enumerate() {
            if g != 0 {
                run = (i + 1, 0);
                continue;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        }
        if best.1 > 1 {
            self.groups(&seg[..best.0]);
            self.push(b':');
            self.push(b':');
            self.groups(&seg[best.0 + best.1..]);
        } else {
            self.groups(&seg);
        }
    }

    /// Groups in lower-case hexadecimal without leading zeros, between colons.
    fn groups(&mut self, groups: &[u16]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            let digits = (16 - g.leading_zeros()).div_ceil(4).max(1);
            for d in (0..digits).rev() {
                self.push(HEX[usize::from((g >> (4 * d)) & 0xf)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_standard_librarys() {
        let mut x = 0x853c_49e6_748f_ea9bu64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases: Vec<IpAddr> = [
            "::",
            "::1",
            "1::",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "2001:db8::1",
            "2001:db8:0:0:1::1",
            "2001:0:0:1:0:0:0:1",
            "fe80::1:0:0:0",
            "1:0:1:0:1:0:1:0",
            "0:0:1::",
            "ffff::ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "192.168.100.20",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for _ in 0..20_000 {
            // Groups drawn from few values, so runs of zeros of every length and place.
            let mut seg = [0u16; 8];
            for g in &mut seg {
                *g = [0, 0, 0, 1, 0xf, 0x10, 0xab0, 0xffff][(next() % 8) as usize];
            }
            cases.push(IpAddr::V6(Ipv6Addr::from(seg)));
            cases.push(IpAddr::V6(Ipv4Addr::from(next() as u32).to_ipv6_mapped()));
            cases.push(IpAddr::V4(Ipv4Addr::from(next() as u32)));
        }
        for a in cases {
            assert_eq!(IpText::new(a).as_str(), a.to_string());
        }
    }
}
