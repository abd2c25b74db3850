//! The decoded view of one captured frame: zero or more IP layers (outermost first,
//! one per tunnel level) borrowing from the frame, plus link-level facts.
//!
//! Nothing here owns packet bytes; a [`Decoded`] is cleared and refilled for every
//! frame, so decoding allocates nothing.

use std::net::IpAddr;

use arrayvec::ArrayVec;
use tunnelwatch_model::{IpProto, Letters};

use crate::anomaly::Anomaly;

/// A pcap/pcapng link type (`LINKTYPE_*` from tcpdump.org). Open newtype: unknown
/// values are values, reported as [`crate::AnomalyKind::UnknownLinkType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in host byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II / 802.3.
    pub const ETHERNET: LinkType = LinkType(1);
    /// PPP with a 2-byte protocol field (optionally after 0xff 0x03).
    pub const PPP: LinkType = LinkType(9);
    /// Raw IP as `DLT_RAW` on most systems.
    pub const RAW_DLT12: LinkType = LinkType(12);
    /// Raw IP as `DLT_RAW` on OpenBSD.
    pub const RAW_DLT14: LinkType = LinkType(14);
    /// PPP in HDLC-like framing.
    pub const PPP_HDLC: LinkType = LinkType(50);
    /// Raw IPv4 or IPv6 (version nibble decides).
    pub const RAW: LinkType = LinkType(101);
    /// Cisco HDLC.
    pub const C_HDLC: LinkType = LinkType(104);
    /// IEEE 802.11 without radio header.
    pub const IEEE802_11: LinkType = LinkType(105);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// IEEE 802.11 with a radiotap header.
    pub const IEEE802_11_RADIOTAP: LinkType = LinkType(127);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Per-Packet Information header (802.11 captures), then another link type.
    pub const PPI: LinkType = LinkType(192);
    /// Linux netfilter NFLOG.
    pub const NFLOG: LinkType = LinkType(239);
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// Every link type the decoder understands (what property tests and fuzzers pick from).
    pub const SUPPORTED: [LinkType; 17] = [
        Self::NULL,
        Self::ETHERNET,
        Self::PPP,
        Self::RAW_DLT12,
        Self::RAW_DLT14,
        Self::PPP_HDLC,
        Self::RAW,
        Self::C_HDLC,
        Self::IEEE802_11,
        Self::LOOP,
        Self::LINUX_SLL,
        Self::IEEE802_11_RADIOTAP,
        Self::PPI,
        Self::IPV4,
        Self::IPV6,
        Self::NFLOG,
        Self::LINUX_SLL2,
    ];
}

/// How an IP layer was carried inside the layer before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encap {
    /// Not encapsulated (the outermost layer).
    None,
    /// IPv4 or IPv6 directly inside IP (protocol 4 or 41: IP-in-IP, 6in4, 4in6, 6in6).
    IpInIp,
    /// GRE (RFC 2784/2890), including PPTP's enhanced GRE and ERSPAN.
    Gre,
    /// VXLAN over UDP (RFC 7348).
    Vxlan,
    /// Geneve over UDP (RFC 8926).
    Geneve,
    /// Teredo: IPv6 over UDP (RFC 4380).
    Teredo,
    /// GTP-U: user plane of GPRS/UMTS/LTE (3GPP TS 29.281).
    GtpU,
    /// AYIYA: IPv6 over UDP (Anything In Anything).
    Ayiya,
}

impl Encap {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Encap::None => "none",
            Encap::IpInIp => "ip-in-ip",
            Encap::Gre => "gre",
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
            Encap::Teredo => "teredo",
            Encap::GtpU => "gtp-u",
            Encap::Ayiya => "ayiya",
        }
    }
}

/// The nine TCP flag bits plus the three reserved bits (RFC 9293 §3.1, RFC 3540).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: u16 = 0x001;
    /// Synchronise sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset the connection.
    pub const RST: u16 = 0x004;
    /// Push function.
    pub const PSH: u16 = 0x008;
    /// Acknowledgment field significant.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer field significant.
    pub const URG: u16 = 0x020;
    /// ECN echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce sum (RFC 3540, historic).
    pub const NS: u16 = 0x100;
    /// The three reserved bits of the data-offset byte.
    pub const RESERVED: u16 = 0xE00;

    /// Builds flags from the TCP header's bytes 12 and 13.
    pub fn from_bytes(b12: u8, b13: u8) -> Self {
        TcpFlags((u16::from(b12 & 0x0f) << 8) | u16::from(b13))
    }

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u16) -> bool {
        self.0 & mask == mask
    }

    /// True when any bit of `mask` is set.
    pub fn any(self, mask: u16) -> bool {
        self.0 & mask != 0
    }

    /// SYN set.
    pub fn syn(self) -> bool {
        self.any(Self::SYN)
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.any(Self::ACK)
    }
    /// FIN set.
    pub fn fin(self) -> bool {
        self.any(Self::FIN)
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.any(Self::RST)
    }
    /// URG set.
    pub fn urg(self) -> bool {
        self.any(Self::URG)
    }

    /// Letters in the order `CEUAPRSF`, then `N` for the nonce bit and `r` for any
    /// reserved bit, e.g. `AP` for ACK+PSH.
    pub fn letters(self) -> Letters {
        let mut s = Letters::default();
        self.write_letters(&mut s);
        s
    }

    /// Appends [`TcpFlags::letters`] to `out` (at most ten; what does not fit is left
    /// out).
    pub fn write_letters(self, out: &mut Letters) {
        const ORDER: [(u16, char); 8] = [
            (TcpFlags::CWR, 'C'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ACK, 'A'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::SYN, 'S'),
            (TcpFlags::FIN, 'F'),
        ];
        for (bit, c) in ORDER {
            if self.any(bit) {
                out.push(c);
            }
        }
        if self.any(Self::NS) {
            out.push('N');
        }
        if self.any(Self::RESERVED) {
            out.push('r');
        }
    }
}

/// A TCP segment's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags including NS and the reserved bits.
    pub flags: TcpFlags,
    /// Receive window (unscaled).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Checksum field.
    pub checksum: u16,
    /// Header length in bytes (data offset × 4).
    pub header_len: u8,
    /// The option bytes (header_len − 20 bytes).
    pub options: &'a [u8],
}

/// A UDP datagram's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length field (header + payload).
    pub length: u16,
    /// Checksum field (0 = none, IPv4 only).
    pub checksum: u16,
}

/// The 5-tuple of the packet an ICMP error message quotes (RFC 792 / RFC 4443).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedPacket {
    /// Source address of the quoted packet (normally our side's sender).
    pub src: IpAddr,
    /// Destination address of the quoted packet.
    pub dst: IpAddr,
    /// IP protocol of the quoted packet.
    pub proto: IpProto,
    /// Source port (ICMP: type) if the quote was long enough, else 0.
    pub src_port: u16,
    /// Destination port (ICMP: code) if the quote was long enough, else 0.
    pub dst_port: u16,
}

/// An ICMP or ICMPv6 message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMessage {
    /// True for ICMPv6.
    pub v6: bool,
    /// Message type.
    pub icmp_type: u8,
    /// Message code.
    pub code: u8,
    /// Checksum field.
    pub checksum: u16,
    /// Echo identifier (bytes 4–5), meaningful for echo messages.
    pub echo_id: u16,
    /// For error messages: the quoted packet's 5-tuple.
    pub quoted: Option<QuotedPacket>,
}

impl IcmpMessage {
    /// True for error messages that quote an offending packet.
    pub fn is_error(&self) -> bool {
        if self.v6 {
            self.icmp_type < 128
        } else {
            matches!(self.icmp_type, 3 | 4 | 5 | 11 | 12)
        }
    }

    /// True for echo request/reply.
    pub fn is_echo(&self) -> bool {
        if self.v6 {
            matches!(self.icmp_type, 128 | 129)
        } else {
            matches!(self.icmp_type, 0 | 8)
        }
    }
}

/// The transport layer of an IP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// TCP.
    Tcp(TcpSegment<'a>),
    /// UDP.
    Udp(UdpDatagram),
    /// ICMP or ICMPv6.
    Icmp(IcmpMessage),
    /// Another protocol, a tunnel protocol whose inner packet is the next layer, a
    /// non-first fragment, or a transport header that could not be decoded.
    Other,
}

/// IP fragmentation status of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment.
    No,
    /// First fragment (offset 0, more fragments follow): carries the transport header.
    First {
        /// IP identification (IPv4) or fragment header identification (IPv6).
        id: u32,
    },
    /// A later fragment: no transport header.
    Later {
        /// Identification shared by the fragments of one datagram.
        id: u32,
        /// Fragment offset in bytes.
        offset: u32,
        /// More fragments follow.
        more: bool,
    },
}

/// One IP layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket<'a> {
    /// 4 or 6.
    pub version: u8,
    /// Source address (IPv6: a routing header type 2 home address is not applied).
    pub src: IpAddr,
    /// Destination address (IPv6: the final destination of a type 0/2 routing header).
    pub dst: IpAddr,
    /// Upper-layer protocol after any extension headers.
    pub proto: IpProto,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Length of the IP packet on the wire (IPv4 total length; IPv6 40 + payload length).
    pub ip_len: u32,
    /// IP header length including options / extension headers.
    pub header_len: u32,
    /// True when an IPv4 header checksum was checked and is wrong.
    pub bad_ip_checksum: bool,
    /// Fragmentation status.
    pub fragment: Fragment,
    /// Transport header.
    pub transport: Transport<'a>,
    /// Captured bytes from the transport header to the end of the IP packet (shorter
    /// than `ip_len - header_len` when the capture was cut by the snap length).
    pub l4: &'a [u8],
    /// Captured transport payload.
    pub payload: &'a [u8],
    /// Transport payload length on the wire.
    pub payload_len: u32,
    /// How this layer was carried inside the previous one.
    pub encap: Encap,
    /// Offset of this IP header in the frame.
    pub frame_offset: usize,
    /// For a datagram reassembled from IP fragments: how many fragments it was made of
    /// (0 for a packet that was not fragmented).
    pub fragments: u16,
}

impl IpPacket<'_> {
    /// True when the whole IP packet was captured (no snap-length truncation).
    pub fn captured_all(&self) -> bool {
        self.l4.len() as u64 + u64::from(self.header_len) >= u64::from(self.ip_len)
    }

    /// Source and destination ports (ICMP: 0), for display and keys.
    pub fn ports(&self) -> (u16, u16) {
        match self.transport {
            Transport::Tcp(t) => (t.src_port, t.dst_port),
            Transport::Udp(u) => (u.src_port, u.dst_port),
            _ => (0, 0),
        }
    }
}

/// Maximum IP layers (tunnel nesting) kept per frame.
pub const MAX_LAYERS: usize = 4;

/// The decoded view of one frame.
#[derive(Clone, Debug, Default)]
pub struct Decoded<'a> {
    /// IP layers, outermost first.
    pub layers: ArrayVec<IpPacket<'a>, MAX_LAYERS>,
    /// Outer 802.1Q VLAN identifier.
    pub vlan: Option<u16>,
    /// Inner (QinQ) VLAN identifier.
    pub inner_vlan: Option<u16>,
    /// EtherType of a frame that carried no IP (ARP, LLDP, …); `None` for IP frames.
    pub non_ip: Option<u16>,
    /// The anomaly that stopped decoding, or a non-fatal one (bad IPv4 checksum).
    pub anomaly: Option<Anomaly>,
}

impl Decoded<'_> {
    /// Clears the view for the next frame.
    pub fn clear(&mut self) {
        self.layers.clear();
        self.vlan = None;
        self.inner_vlan = None;
        self.non_ip = None;
        self.anomaly = None;
    }

    /// The innermost IP layer, if any.
    pub fn innermost(&self) -> Option<&IpPacket<'_>> {
        self.layers.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_letters_follow_documented_order() {
        let f = TcpFlags(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE);
        assert_eq!(f.letters(), "EAS");
        assert_eq!(TcpFlags::from_bytes(0x5f, 0x29).letters(), "UPFNr");
    }
}
