//! Decode anomalies: malformed or unexpected traffic, kept as data.
//!
//! A packet that cannot be decoded completely is not an error of the program; it is a
//! fact about the traffic (often the interesting one). The decoder records the first
//! anomaly that stopped it, with the numbers a person needs to find the byte in
//! Wireshark (layer, offset, required and available lengths), and callers count them by
//! [`AnomalyKind`].

use std::fmt;

/// What went wrong while decoding a packet. The names are stable: they appear in the
/// summary of `tunnelwatch read` and in counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// The capture's link type is not one the decoder knows.
    UnknownLinkType,
    /// The link-layer header (Ethernet, SLL, SLL2, loopback, …) is cut short.
    LinkTruncated,
    /// A VLAN, PBB, VN-Tag or similar tag is cut short.
    VlanTruncated,
    /// An MPLS label stack is cut short or has no bottom-of-stack label.
    MplsTruncated,
    /// A PPP or PPPoE header is cut short.
    PppTruncated,
    /// More nested VLAN/MPLS/tunnel layers than the decoder follows.
    TooManyLayers,
    /// An IPv4 header is cut short.
    Ipv4Truncated,
    /// An IPv4 header length field (IHL) below 5.
    Ipv4BadHeaderLength,
    /// An IPv4 total length below the header length.
    Ipv4BadTotalLength,
    /// An IPv4 header checksum that does not verify.
    Ipv4BadChecksum,
    /// The IP version nibble is neither 4 nor 6 where an IP header was expected.
    IpBadVersion,
    /// An IPv6 header is cut short.
    Ipv6Truncated,
    /// An IPv6 extension header chain is cut short or malformed.
    Ipv6BadExtension,
    /// A TCP header is cut short.
    TcpTruncated,
    /// A TCP data offset below 5 words or beyond the segment.
    TcpBadDataOffset,
    /// A UDP header is cut short.
    UdpTruncated,
    /// A UDP length field that disagrees with the IP payload length.
    UdpBadLength,
    /// An ICMP header is cut short.
    IcmpTruncated,
    /// A GRE header is cut short or uses an unsupported version.
    GreMalformed,
    /// A UDP tunnel header (VXLAN, Geneve, Teredo, GTP-U) is cut short or malformed.
    TunnelMalformed,
}

impl AnomalyKind {
    /// Every kind, in the order summaries print them.
    pub const ALL: [AnomalyKind; 20] = [
        AnomalyKind::UnknownLinkType,
        AnomalyKind::LinkTruncated,
        AnomalyKind::VlanTruncated,
        AnomalyKind::MplsTruncated,
        AnomalyKind::PppTruncated,
        AnomalyKind::TooManyLayers,
        AnomalyKind::Ipv4Truncated,
        AnomalyKind::Ipv4BadHeaderLength,
        AnomalyKind::Ipv4BadTotalLength,
        AnomalyKind::Ipv4BadChecksum,
        AnomalyKind::IpBadVersion,
        AnomalyKind::Ipv6Truncated,
        AnomalyKind::Ipv6BadExtension,
        AnomalyKind::TcpTruncated,
        AnomalyKind::TcpBadDataOffset,
        AnomalyKind::UdpTruncated,
        AnomalyKind::UdpBadLength,
        AnomalyKind::IcmpTruncated,
        AnomalyKind::GreMalformed,
        AnomalyKind::TunnelMalformed,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::UnknownLinkType => "unknown_link_type",
            AnomalyKind::LinkTruncated => "link_truncated",
            AnomalyKind::VlanTruncated => "vlan_truncated",
            AnomalyKind::MplsTruncated => "mpls_truncated",
            AnomalyKind::PppTruncated => "ppp_truncated",
            AnomalyKind::TooManyLayers => "too_many_layers",
            AnomalyKind::Ipv4Truncated => "ipv4_truncated",
            AnomalyKind::Ipv4BadHeaderLength => "ipv4_bad_header_length",
            AnomalyKind::Ipv4BadTotalLength => "ipv4_bad_total_length",
            AnomalyKind::Ipv4BadChecksum => "ipv4_bad_checksum",
            AnomalyKind::IpBadVersion => "ip_bad_version",
            AnomalyKind::Ipv6Truncated => "ipv6_truncated",
            AnomalyKind::Ipv6BadExtension => "ipv6_bad_extension",
            AnomalyKind::TcpTruncated => "tcp_truncated",
            AnomalyKind::TcpBadDataOffset => "tcp_bad_data_offset",
            AnomalyKind::UdpTruncated => "udp_truncated",
            AnomalyKind::UdpBadLength => "udp_bad_length",
            AnomalyKind::IcmpTruncated => "icmp_truncated",
            AnomalyKind::GreMalformed => "gre_malformed",
            AnomalyKind::TunnelMalformed => "tunnel_malformed",
        }
    }

    /// Position in [`AnomalyKind::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        // The variants are declared in the order of `ALL` (checked by a test).
        self as usize
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decode anomaly with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// What went wrong.
    pub kind: AnomalyKind,
    /// Byte offset in the captured frame where the offending header starts.
    pub offset: usize,
    /// Bytes the header needed (or the value found, for field checks).
    pub required: usize,
    /// Bytes that were available (or the bound violated, for field checks).
    pub available: usize,
}

impl Anomaly {
    pub(crate) fn new(kind: AnomalyKind, offset: usize, required: usize, available: usize) -> Self {
        Anomaly {
            kind,
            offset,
            required,
            available,
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at frame offset {} (needed {}, had {})",
            self.kind, self.offset, self.required, self.available
        )
    }
}

/// Counts of anomalies by kind: plain integers, summed per batch by callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnomalyCounts {
    counts: [u64; AnomalyKind::ALL.len()],
}

impl AnomalyCounts {
    /// Adds one anomaly of `kind`.
    pub fn add(&mut self, kind: AnomalyKind) {
        self.counts[kind.index()] += 1;
    }

    /// The count for `kind`.
    pub fn get(&self, kind: AnomalyKind) -> u64 {
        self.counts[kind.index()]
    }

    /// Adds another set of counts into this one.
    pub fn merge(&mut self, other: &AnomalyCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Total of all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-zero counts in summary order.
    pub fn iter(&self) -> impl Iterator<Item = (AnomalyKind, u64)> + '_ {
        AnomalyKind::ALL
            .iter()
            .zip(self.counts.iter())
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| (*k, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_for_every_kind() {
        for (i, k) in AnomalyKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
        }
    }

    #[test]
    fn counts_iterate_only_nonzero_kinds() {
        let mut c = AnomalyCounts::default();
        c.add(AnomalyKind::TcpTruncated);
        c.add(AnomalyKind::TcpTruncated);
        c.add(AnomalyKind::GreMalformed);
        let v: Vec<_> = c.iter().collect();
        assert_eq!(
            v,
            vec![
                (AnomalyKind::TcpTruncated, 2),
                (AnomalyKind::GreMalformed, 1)
            ]
        );
        assert_eq!(c.total(), 3);
    }
}
