//! The frame walker: link layer → tags and labels → IP → transport → tunnels → inner IP.
//!
//! [`Decoder::decode`] never panics and never allocates: every read is bounds-checked
//! through the small `be16`/`be32` helpers or an etherparse slice constructor (which
//! checks the header length once, so its accessors cannot fail). When a header is cut
//! short or malformed the walk stops, the layers decoded so far are kept, and the
//! anomaly is recorded in [`Decoded::anomaly`]. Lengths on the wire come from the
//! headers (IP total length), not from the captured bytes, so snap-length truncated
//! frames still count their real size.
//!
//! Header parsing uses etherparse where it fits (IPv4/IPv6 headers, IPv6 extension
//! headers one by one, TCP, ICMP); the walk between them, the tunnel framings and the
//! link layers etherparse does not know (SLL2, loopback, MPLS, PPPoE, 802.11, NFLOG,
//! FabricPath, PBB, VN-Tag) are ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpAuthHeaderSlice, IpNumber, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice,
};
use tunnelwatch_model::IpProto;

use crate::anomaly::{Anomaly, AnomalyKind};
use crate::checksum;
use crate::packet::{
    Decoded, Encap, Fragment, IcmpMessage, IpPacket, LinkType, QuotedPacket, TcpFlags, TcpSegment,
    Transport, UdpDatagram, MAX_LAYERS,
};

/// EtherType values the walker follows.
mod ether_type {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const TEB: u16 = 0x6558;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD1: u16 = 0x9100;
    pub const QINQ_OLD2: u16 = 0x9200;
    pub const QINQ_OLD3: u16 = 0x9300;
    pub const IPV6: u16 = 0x86dd;
    pub const PPP: u16 = 0x880b;
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MC: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
    pub const PBB: u16 = 0x88e7;
    pub const ERSPAN_II: u16 = 0x88be;
    pub const ERSPAN_III: u16 = 0x22eb;
    pub const FABRIC_PATH: u16 = 0x8903;
    pub const VNTAG: u16 = 0x8926;
    pub const NSH: u16 = 0x894f;
}

/// Offsets of the fixed TCP header fields (RFC 9293 §3.1).
mod tcp_field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    /// Length of the fixed part.
    pub const FIXED: usize = 20;
}

/// Decoder settings. The defaults follow the IANA ports of each tunnel protocol.
#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// Verify IPv4 header checksums (a bad one is flagged on the layer, not dropped).
    pub verify_ip_checksum: bool,
    /// UDP ports carrying VXLAN.
    pub vxlan_ports: Vec<u16>,
    /// UDP ports carrying Geneve.
    pub geneve_ports: Vec<u16>,
    /// UDP ports carrying Teredo.
    pub teredo_ports: Vec<u16>,
    /// UDP ports carrying GTP-U.
    pub gtpu_ports: Vec<u16>,
    /// UDP ports carrying AYIYA.
    pub ayiya_ports: Vec<u16>,
    /// UDP ports carrying GRE (GRE-in-UDP, RFC 8086).
    pub gre_udp_ports: Vec<u16>,
    /// Recognise Teredo on any UDP port when the payload is a well-formed IPv6 packet
    /// of exactly the datagram's length to or from a Teredo (2001::/32) or link-local
    /// address (relays and clients often use other ports than 3544).
    pub teredo_any_port: bool,
    /// Whether to look inside tunnels at all.
    pub decapsulate: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            verify_ip_checksum: true,
            vxlan_ports: vec![4789],
            geneve_ports: vec![6081],
            teredo_ports: vec![3544],
            gtpu_ports: vec![2152],
            ayiya_ports: vec![5072],
            gre_udp_ports: vec![4754],
            teredo_any_port: true,
            decapsulate: true,
        }
    }
}

/// Decodes frames into [`Decoded`] views.
#[derive(Clone, Debug)]
pub struct Decoder {
    config: DecoderConfig,
    /// Every UDP port of any tunnel list, one bit each: most datagrams carry none, and
    /// one bit test each way answers that instead of a scan of six lists.
    tunnel_ports: Box<[u64]>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecoderConfig::default())
    }
}

#[inline]
fn be16(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]))
}

#[inline]
fn be32(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The walk's state for one frame.
struct Walk<'a, 'o> {
    out: &'o mut Decoded<'a>,
    config: &'o DecoderConfig,
    /// [`Decoder`]'s bit set of tunnel ports.
    tunnel_ports: &'o [u64],
    /// Link-level nesting (tags, labels, inner Ethernet headers) — bounded.
    link_depth: u8,
}

const MAX_LINK_DEPTH: u8 = 16;

impl Decoder {
    /// A decoder with the given settings.
    pub fn new(config: DecoderConfig) -> Self {
        let mut tunnel_ports = vec![0u64; 65536 / 64].into_boxed_slice();
        for &p in [
            &config.vxlan_ports,
            &config.geneve_ports,
            &config.teredo_ports,
            &config.gtpu_ports,
            &config.ayiya_ports,
            &config.gre_udp_ports,
        ]
        .into_iter()
        .flatten()
        {
            tunnel_ports[usize::from(p / 64)] |= 1 << (p % 64);
        }
        Decoder {
            config,
            tunnel_ports,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The addresses of a frame's only IP layer, read without decoding it
    /// ([`crate::peek`]), or `None` when the frame needs [`Decoder::decode`]: besides
    /// what the peek defers, a UDP datagram on a tunnel port or that may be Teredo on
    /// another. So when this returns addresses, the frame carries no tunnel.
    pub fn peek_pair(&self, link: LinkType, frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
        let o = crate::peek::outer(link, frame)?;
        if let Some((sp, dp, payload)) = o.udp.filter(|_| self.config.decapsulate) {
            let payload = payload?;
            if listed(&self.tunnel_ports, sp)
                || listed(&self.tunnel_ports, dp)
                || (self.config.teredo_any_port && teredo_inner(payload).is_some())
            {
                return None;
            }
        }
        Some((o.src, o.dst))
    }

    /// Decodes an IP packet (version 4 or 6) and what it carries, for packets that do
    /// not come from a link layer: reassembled fragments, or raw IP from an export.
    /// The first layer is marked with `encap`.
    pub fn decode_ip<'a>(&self, data: &'a [u8], version: u8, encap: Encap, out: &mut Decoded<'a>) {
        out.clear();
        let mut walk = Walk {
            out,
            config: &self.config,
            tunnel_ports: &self.tunnel_ports,
            link_depth: 0,
        };
        walk.ip(data, 0, encap, version);
    }

    /// Decodes one captured frame of link type `link` into `out` (cleared first).
    pub fn decode<'a>(&self, link: LinkType, frame: &'a [u8], out: &mut Decoded<'a>) {
        out.clear();
        let mut walk = Walk {
            out,
            config: &self.config,
            tunnel_ports: &self.tunnel_ports,
            link_depth: 0,
        };
        walk.link(link, frame);
    }
}

impl<'a> Walk<'a, '_> {
    fn stop(&mut self, kind: AnomalyKind, offset: usize, required: usize, available: usize) {
        if self.out.anomaly.is_none() {
            self.out.anomaly = Some(Anomaly::new(kind, offset, required, available));
        }
    }

    fn link(&mut self, link: LinkType, d: &'a [u8]) {
        match link {
            LinkType::ETHERNET => self.ethernet(d, 0),
            LinkType::RAW | LinkType::RAW_DLT12 | LinkType::RAW_DLT14 => self.raw_ip(d, 0),
            LinkType::IPV4 | LinkType::IPV6 => self.raw_ip(d, 0),
            LinkType::NULL | LinkType::LOOP => {
                if d.len() < 4 {
                    return self.stop(AnomalyKind::LinkTruncated, 0, 4, d.len());
                }
                // The family is in host byte order of the capturing machine (NULL) or
                // network order (LOOP): accept both.
                let fam_le = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let fam_be = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                let is_inet = |f: u32| f == 2;
                let is_inet6 = |f: u32| matches!(f, 10 | 24 | 28 | 30);
                if is_inet(fam_le) || is_inet(fam_be) || is_inet6(fam_le) || is_inet6(fam_be) {
                    self.raw_ip(&d[4..], 4)
                } else {
                    self.out.non_ip = Some(0);
                }
            }
            LinkType::LINUX_SLL => {
                // 16 bytes: packet type, ARPHRD, address length, 8 address bytes, protocol.
                let Some(proto) = be16(d, 14) else {
                    return self.stop(AnomalyKind::LinkTruncated, 0, 16, d.len());
                };
                let hatype = be16(d, 2).unwrap_or(0);
                self.sll_payload(hatype, proto, &d[16..], 16)
            }
            LinkType::LINUX_SLL2 => {
                // 20 bytes: protocol, reserved, interface index, ARPHRD, packet type,
                // address length, 8 address bytes.
                if d.len() < 20 {
                    return self.stop(AnomalyKind::LinkTruncated, 0, 20, d.len());
                }
                let proto = be16(d, 0).unwrap_or(0);
                let hatype = be16(d, 8).unwrap_or(0);
                self.sll_payload(hatype, proto, &d[20..], 20)
            }
            LinkType::PPP | LinkType::PPP_HDLC => self.ppp(d, 0),
            LinkType::C_HDLC => {
                // address, control, 2-byte EtherType.
                let Some(et) = be16(d, 2) else {
                    return self.stop(AnomalyKind::LinkTruncated, 0, 4, d.len());
                };
                self.ether_type(et, &d[4..], 4)
            }
            LinkType::IEEE802_11 => self.wifi(d, 0),
            LinkType::IEEE802_11_RADIOTAP => {
                let Some(len) = d
                    .get(2..4)
                    .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                else {
                    return self.stop(AnomalyKind::LinkTruncated, 0, 4, d.len());
                };
                if len < 8 || d.len() < len {
                    return self.stop(AnomalyKind::LinkTruncated, 0, len.max(8), d.len());
                }
                self.wifi(&d[len..], len)
            }
            LinkType::NFLOG => self.nflog(d),
            LinkType::PPI => {
                // version, flags, header length (LE), then the DLT of what follows (LE).
                let (Some(len), Some(dlt)) = (
                    d.get(2..4)
                        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
                    d.get(4..8)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                ) else {
                    return self.stop(AnomalyKind::LinkTruncated, 0, 8, d.len());
                };
                if len < 8 || d.len() < len || dlt == LinkType::PPI.0 {
                    return self.stop(AnomalyKind::LinkTruncated, 0, len.max(8), d.len());
                }
                // Offsets reported below are relative to the inner frame.
                self.link(LinkType(dlt), &d[len..])
            }
            _ => self.stop(AnomalyKind::UnknownLinkType, 0, link.0 as usize, d.len()),
        }
    }

    fn sll_payload(&mut self, hatype: u16, proto: u16, d: &'a [u8], off: usize) {
        // ARPHRD_IPGRE (778) carries GRE payloads directly; others carry an EtherType.
        match (hatype, proto) {
            (778, _) => self.gre_payload(d, off),
            (_, 0x0004) | (_, 0x0001) | (_, 0x0003) => self.out.non_ip = Some(proto),
            _ => self.ether_type(proto, d, off),
        }
    }

    fn raw_ip(&mut self, d: &'a [u8], off: usize) {
        match d.first().map(|b| b >> 4) {
            Some(4) => self.ip(d, off, Encap::None, 4),
            Some(6) => self.ip(d, off, Encap::None, 6),
            Some(v) => self.stop(AnomalyKind::IpBadVersion, off, 4, usize::from(v)),
            None => self.stop(AnomalyKind::LinkTruncated, off, 1, 0),
        }
    }

    fn ethernet(&mut self, d: &'a [u8], off: usize) {
        let Some(et) = be16(d, 12) else {
            return self.stop(AnomalyKind::LinkTruncated, off, 14, d.len());
        };
        self.ether_type(et, &d[14..], off + 14)
    }

    fn deeper(&mut self, off: usize) -> bool {
        self.link_depth += 1;
        if self.link_depth > MAX_LINK_DEPTH {
            self.stop(
                AnomalyKind::TooManyLayers,
                off,
                usize::from(MAX_LINK_DEPTH),
                0,
            );
            return false;
        }
        true
    }

    fn ether_type(&mut self, et: u16, d: &'a [u8], off: usize) {
        use ether_type as t;
        if !self.deeper(off) {
            return;
        }
        match et {
            t::IPV4 => self.ip(d, off, Encap::None, 4),
            t::IPV6 => self.ip(d, off, Encap::None, 6),
            t::VLAN | t::QINQ | t::QINQ_OLD1 | t::QINQ_OLD2 | t::QINQ_OLD3 => {
                let (Some(tci), Some(next)) = (be16(d, 0), be16(d, 2)) else {
                    return self.stop(AnomalyKind::VlanTruncated, off, 4, d.len());
                };
                let id = tci & 0x0fff;
                if self.out.vlan.is_none() {
                    self.out.vlan = Some(id);
                } else if self.out.inner_vlan.is_none() {
                    self.out.inner_vlan = Some(id);
                }
                self.ether_type(next, &d[4..], off + 4)
            }
            t::MPLS | t::MPLS_MC => self.mpls(d, off),
            t::PPPOE_SESSION => {
                // 6-byte PPPoE header, then the PPP protocol field.
                if d.len() < 8 {
                    return self.stop(AnomalyKind::PppTruncated, off, 8, d.len());
                }
                self.ppp_protocol(be16(d, 6).unwrap_or(0), &d[8..], off + 8)
            }
            t::PPP => self.ppp(d, off),
            t::PBB => {
                // 4-byte I-TAG, then the customer Ethernet header.
                if d.len() < 4 {
                    return self.stop(AnomalyKind::VlanTruncated, off, 4, d.len());
                }
                self.ethernet(&d[4..], off + 4)
            }
            t::VNTAG => {
                let Some(next) = be16(d, 4) else {
                    return self.stop(AnomalyKind::VlanTruncated, off, 6, d.len());
                };
                self.ether_type(next, &d[6..], off + 6)
            }
            t::FABRIC_PATH => {
                // FTag/TTL (2 bytes), then the original Ethernet frame.
                if d.len() < 2 {
                    return self.stop(AnomalyKind::VlanTruncated, off, 2, d.len());
                }
                self.ethernet(&d[2..], off + 2)
            }
            t::TEB => self.ethernet(d, off),
            t::NSH => {
                // Network Service Header: length in 4-byte words in byte 1 (6 bits),
                // next protocol in byte 3 (1 = IPv4, 2 = IPv6, 3 = Ethernet).
                let (Some(&b1), Some(&np)) = (d.get(1), d.get(3)) else {
                    return self.stop(AnomalyKind::VlanTruncated, off, 4, d.len());
                };
                let len = usize::from(b1 & 0x3f) * 4;
                if len < 8 || d.len() < len {
                    return self.stop(AnomalyKind::VlanTruncated, off, len.max(8), d.len());
                }
                match np {
                    1 => self.ip(&d[len..], off + len, Encap::None, 4),
                    2 => self.ip(&d[len..], off + len, Encap::None, 6),
                    3 => self.ethernet(&d[len..], off + len),
                    _ => self.out.non_ip = Some(et),
                }
            }
            len if len < 0x0600 => {
                // IEEE 802.3 length field: LLC follows; SNAP carries an EtherType.
                if d.len() >= 8 && d[0] == 0xaa && d[1] == 0xaa && d[2] == 0x03 {
                    let next = be16(d, 6).unwrap_or(0);
                    self.ether_type(next, &d[8..], off + 8)
                } else {
                    self.out.non_ip = Some(et);
                }
            }
            t::ARP => self.out.non_ip = Some(et),
            _ => self.out.non_ip = Some(et),
        }
    }

    fn mpls(&mut self, d: &'a [u8], off: usize) {
        let mut pos = 0usize;
        loop {
            let Some(entry) = be32(d, pos) else {
                return self.stop(AnomalyKind::MplsTruncated, off + pos, pos + 4, d.len());
            };
            pos += 4;
            if entry & 0x100 != 0 {
                break; // bottom of stack
            }
            if pos >= 4 * 16 {
                return self.stop(AnomalyKind::TooManyLayers, off + pos, 16, 0);
            }
        }
        let rest = &d[pos..];
        match rest.first().map(|b| b >> 4) {
            Some(4) => self.ip(rest, off + pos, Encap::None, 4),
            Some(6) => self.ip(rest, off + pos, Encap::None, 6),
            // Ethernet pseudowire with a zero control word (RFC 4448).
            Some(0) if rest.len() >= 4 + 14 => self.ethernet(&rest[4..], off + pos + 4),
            Some(_) => self.out.non_ip = Some(ether_type::MPLS),
            None => self.stop(AnomalyKind::MplsTruncated, off + pos, 1, 0),
        }
    }

    fn ppp(&mut self, d: &'a [u8], off: usize) {
        // Cisco HDLC framing (address 0x0f unicast / 0x8f broadcast, control 0x00, then
        // an EtherType) is often stored under the PPP link type.
        if d.len() >= 4 && (d[0] == 0x0f || d[0] == 0x8f) && d[1] == 0x00 {
            let et = u16::from_be_bytes([d[2], d[3]]);
            return self.ether_type(et, &d[4..], off + 4);
        }
        // Optional HDLC address/control bytes, then a 1- or 2-byte protocol field.
        let (d, off) = if d.len() >= 2 && d[0] == 0xff && d[1] == 0x03 {
            (&d[2..], off + 2)
        } else {
            (d, off)
        };
        let Some(&b0) = d.first() else {
            return self.stop(AnomalyKind::PppTruncated, off, 1, 0);
        };
        if b0 & 1 == 1 {
            // Compressed 1-byte protocol field (RFC 1661 §6.5).
            self.ppp_protocol(u16::from(b0), &d[1..], off + 1)
        } else {
            let Some(p) = be16(d, 0) else {
                return self.stop(AnomalyKind::PppTruncated, off, 2, d.len());
            };
            self.ppp_protocol(p, &d[2..], off + 2)
        }
    }

    fn ppp_protocol(&mut self, proto: u16, d: &'a [u8], off: usize) {
        match proto {
            0x0021 => self.ip(d, off, Encap::None, 4),
            0x0057 => self.ip(d, off, Encap::None, 6),
            0x0281 | 0x0283 => self.mpls(d, off),
            _ => self.out.non_ip = Some(proto),
        }
    }

    fn wifi(&mut self, d: &'a [u8], off: usize) {
        let (Some(&fc0), Some(&fc1)) = (d.first(), d.get(1)) else {
            return self.stop(AnomalyKind::LinkTruncated, off, 2, d.len());
        };
        let frame_type = (fc0 >> 2) & 0x3;
        let subtype = fc0 >> 4;
        if frame_type != 2 {
            self.out.non_ip = Some(0);
            return; // management or control
        }
        if fc1 & 0x40 != 0 {
            self.out.non_ip = Some(0);
            return; // protected: payload is encrypted
        }
        let mut hlen = 24usize;
        if fc1 & 0x03 == 0x03 {
            hlen += 6; // four-address format
        }
        if subtype & 0x8 != 0 {
            hlen += 2; // QoS control
            if fc1 & 0x80 != 0 {
                hlen += 4; // HT control
            }
        }
        if subtype & 0x4 != 0 {
            self.out.non_ip = Some(0);
            return; // null data
        }
        // LLC/SNAP header then the EtherType.
        let Some(llc) = d.get(hlen..hlen + 8) else {
            return self.stop(AnomalyKind::LinkTruncated, off, hlen + 8, d.len());
        };
        if llc[0] == 0xaa && llc[1] == 0xaa && llc[2] == 0x03 {
            let et = u16::from_be_bytes([llc[6], llc[7]]);
            self.ether_type(et, &d[hlen + 8..], off + hlen + 8)
        } else {
            self.out.non_ip = Some(0);
        }
    }

    fn nflog(&mut self, d: &'a [u8]) {
        // 4-byte header (family, version, resource id), then TLVs with 4-byte alignment;
        // TLV type 9 is the packet payload (raw IP).
        let Some(&family) = d.first() else {
            return self.stop(AnomalyKind::LinkTruncated, 0, 4, 0);
        };
        let mut pos = 4usize;
        while let Some(hdr) = d.get(pos..pos + 4) {
            let len = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
            let typ = u16::from_le_bytes([hdr[2], hdr[3]]) & 0x7fff;
            if len < 4 {
                break;
            }
            if typ == 9 {
                let end = (pos + len).min(d.len());
                let payload = &d[pos + 4..end];
                let v = if family == 10 { 6 } else { 4 };
                return self.ip(payload, pos + 4, Encap::None, v);
            }
            pos += (len + 3) & !3;
        }
        self.out.non_ip = Some(0);
    }

    /// Decodes an IP header of the given version at `d` and everything above it.
    fn ip(&mut self, d: &'a [u8], off: usize, encap: Encap, version: u8) {
        if self.out.layers.is_full() {
            return self.stop(AnomalyKind::TooManyLayers, off, MAX_LAYERS, MAX_LAYERS);
        }
        match d.first().map(|b| b >> 4) {
            Some(v) if v == version => {}
            Some(v) => {
                return self.stop(
                    AnomalyKind::IpBadVersion,
                    off,
                    usize::from(version),
                    usize::from(v),
                )
            }
            None => {
                let kind = if version == 4 {
                    AnomalyKind::Ipv4Truncated
                } else {
                    AnomalyKind::Ipv6Truncated
                };
                let min = if version == 4 { 20 } else { 40 };
                return self.stop(kind, off, min, 0);
            }
        }
        if version == 4 {
            self.ipv4(d, off, encap)
        } else {
            self.ipv6(d, off, encap)
        }
    }

    fn ipv4(&mut self, d: &'a [u8], off: usize, encap: Encap) {
        let h = match Ipv4HeaderSlice::from_slice(d) {
            Ok(h) => h,
            Err(etherparse::err::ipv4::HeaderSliceError::Len(e)) => {
                return self.stop(AnomalyKind::Ipv4Truncated, off, e.required_len, e.len);
            }
            Err(etherparse::err::ipv4::HeaderSliceError::Content(_)) => {
                let ihl = usize::from(d[0] & 0x0f);
                return self.stop(AnomalyKind::Ipv4BadHeaderLength, off, 20, ihl * 4);
            }
        };
        let hlen = h.slice().len();
        let mut total = usize::from(h.total_len());
        if total == 0 {
            // TCP segmentation offload on the capturing host: the length is unknown.
            total = d.len();
        }
        if total < hlen {
            return self.stop(AnomalyKind::Ipv4BadTotalLength, off, hlen, total);
        }
        let bad_ip_checksum =
            self.config.verify_ip_checksum && !checksum::ipv4_header_ok(h.slice());
        if bad_ip_checksum && self.out.anomaly.is_none() {
            self.out.anomaly = Some(Anomaly::new(
                AnomalyKind::Ipv4BadChecksum,
                off,
                0,
                usize::from(h.header_checksum()),
            ));
        }
        let frag_off = u32::from(h.fragments_offset().value()) * 8;
        let more = h.more_fragments();
        let id = u32::from(h.identification());
        let fragment = match (frag_off, more) {
            (0, false) => Fragment::No,
            (0, true) => Fragment::First { id },
            (o, m) => Fragment::Later {
                id,
                offset: o,
                more: m,
            },
        };
        let end = total.min(d.len());
        let l4 = &d[hlen..end];
        let pkt = IpPacket {
            version: 4,
            src: IpAddr::V4(Ipv4Addr::from(h.source())),
            dst: IpAddr::V4(Ipv4Addr::from(h.destination())),
            proto: IpProto(h.protocol().0),
            ttl: h.ttl(),
            ip_len: total as u32,
            header_len: hlen as u32,
            bad_ip_checksum,
            fragment,
            transport: Transport::Other,
            l4,
            payload: l4,
            payload_len: (total - hlen) as u32,
            encap,
            frame_offset: off,
            fragments: 0,
        };
        self.transport(pkt, off + hlen);
    }

    fn ipv6(&mut self, d: &'a [u8], off: usize, encap: Encap) {
        let h = match Ipv6HeaderSlice::from_slice(d) {
            Ok(h) => h,
            Err(etherparse::err::ipv6::HeaderSliceError::Len(e)) => {
                return self.stop(AnomalyKind::Ipv6Truncated, off, e.required_len, e.len);
            }
            Err(etherparse::err::ipv6::HeaderSliceError::Content(_)) => {
                return self.stop(AnomalyKind::IpBadVersion, off, 6, usize::from(d[0] >> 4));
            }
        };
        let mut total = 40 + usize::from(h.payload_length());
        if h.payload_length() == 0 && h.next_header() == IpNumber::IPV6_HEADER_HOP_BY_HOP {
            // A jumbogram (RFC 2675) carries its length in a hop-by-hop option: use
            // what was captured.
            total = d.len().max(40);
        }
        let end = total.min(d.len());
        let body = &d[40..end];
        let mut dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
        let src = IpAddr::V6(Ipv6Addr::from(h.source()));

        // Walk the extension headers one by one (etherparse's chain parser keeps going
        // after a non-first fragment header, where the bytes are no headers).
        let mut next = h.next_header();
        let mut pos = 0usize;
        let mut fragment = Fragment::No;
        let mut steps = 0;
        loop {
            steps += 1;
            if steps > 16 {
                return self.stop(AnomalyKind::Ipv6BadExtension, off + 40 + pos, 16, steps);
            }
            let rest = &body[pos..];
            match next {
                IpNumber::IPV6_HEADER_HOP_BY_HOP
                | IpNumber::IPV6_DESTINATION_OPTIONS
                | IpNumber::IPV6_ROUTE_HEADER => {
                    let Ok(ext) = Ipv6RawExtHeaderSlice::from_slice(rest) else {
                        let need = usize::from(rest.get(1).copied().unwrap_or(0)) * 8 + 8;
                        return self.stop(
                            AnomalyKind::Ipv6BadExtension,
                            off + 40 + pos,
                            need,
                            rest.len(),
                        );
                    };
                    if next == IpNumber::IPV6_ROUTE_HEADER {
                        if let Some(final_dst) = routing_final_destination(ext.slice()) {
                            dst = final_dst;
                        }
                    }
                    pos += ext.slice().len();
                    next = ext.next_header();
                }
                IpNumber::IPV6_FRAGMENTATION_HEADER => {
                    let Ok(fh) = Ipv6FragmentHeaderSlice::from_slice(rest) else {
                        return self.stop(
                            AnomalyKind::Ipv6BadExtension,
                            off + 40 + pos,
                            8,
                            rest.len(),
                        );
                    };
                    pos += fh.slice().len();
                    next = fh.next_header();
                    let offset = u32::from(fh.fragment_offset().value()) * 8;
                    let id = fh.identification();
                    if offset != 0 {
                        fragment = Fragment::Later {
                            id,
                            offset,
                            more: fh.more_fragments(),
                        };
                        break;
                    } else if fh.more_fragments() {
                        fragment = Fragment::First { id };
                    }
                }
                IpNumber::AUTHENTICATION_HEADER => {
                    let Ok(ah) = IpAuthHeaderSlice::from_slice(rest) else {
                        return self.stop(
                            AnomalyKind::Ipv6BadExtension,
                            off + 40 + pos,
                            12,
                            rest.len(),
                        );
                    };
                    pos += ah.slice().len();
                    next = ah.next_header();
                }
                _ => break,
            }
        }
        let hlen = 40 + pos;
        let l4 = &body[pos.min(body.len())..];
        let pkt = IpPacket {
            version: 6,
            src,
            dst,
            proto: IpProto(next.0),
            ttl: h.hop_limit(),
            ip_len: total as u32,
            header_len: hlen as u32,
            bad_ip_checksum: false,
            fragment,
            transport: Transport::Other,
            l4,
            payload: l4,
            payload_len: total.saturating_sub(hlen) as u32,
            encap,
            frame_offset: off,
            fragments: 0,
        };
        self.transport(pkt, off + hlen);
    }

    /// Decodes the transport header of `pkt` (at frame offset `off`), pushes the layer,
    /// and follows tunnels.
    fn transport(&mut self, mut pkt: IpPacket<'a>, off: usize) {
        if matches!(pkt.fragment, Fragment::Later { .. }) {
            self.out.layers.push(pkt);
            return;
        }
        let d = pkt.l4;
        let wire_l4 = pkt.payload_len as usize;
        match pkt.proto {
            IpProto::TCP => {
                // The fixed 20 bytes are read here rather than through etherparse's
                // TcpHeaderSlice, which needs the whole header: a header whose options
                // were cut by the snap length still has all fixed fields, and the
                // segment must still count.
                if d.len() < tcp_field::FIXED || wire_l4 < tcp_field::FIXED {
                    self.out.layers.push(pkt);
                    return self.stop(
                        AnomalyKind::TcpTruncated,
                        off,
                        tcp_field::FIXED,
                        d.len().min(wire_l4),
                    );
                }
                let hl = usize::from(d[tcp_field::DATA_OFFSET] >> 4) * 4;
                if hl < tcp_field::FIXED {
                    self.out.layers.push(pkt);
                    return self.stop(AnomalyKind::TcpBadDataOffset, off, tcp_field::FIXED, hl);
                }
                let malformed = hl > wire_l4;
                let captured_hl = hl.min(d.len()).min(wire_l4);
                pkt.transport = Transport::Tcp(TcpSegment {
                    src_port: be16(d, tcp_field::SRC_PORT).unwrap_or(0),
                    dst_port: be16(d, tcp_field::DST_PORT).unwrap_or(0),
                    seq: be32(d, tcp_field::SEQ).unwrap_or(0),
                    ack: be32(d, tcp_field::ACK).unwrap_or(0),
                    flags: TcpFlags::from_bytes(d[tcp_field::DATA_OFFSET], d[tcp_field::FLAGS]),
                    window: be16(d, tcp_field::WINDOW).unwrap_or(0),
                    urgent: be16(d, tcp_field::URGENT).unwrap_or(0),
                    checksum: be16(d, tcp_field::CHECKSUM).unwrap_or(0),
                    header_len: hl as u8,
                    options: &d[tcp_field::FIXED..captured_hl],
                });
                pkt.payload = d.get(hl..).unwrap_or(&[]);
                pkt.payload_len = wire_l4.saturating_sub(hl) as u32;
                self.out.layers.push(pkt);
                if malformed {
                    self.stop(AnomalyKind::TcpBadDataOffset, off, hl, wire_l4);
                }
            }
            IpProto::UDP => {
                let (Some(sp), Some(dp), Some(len), Some(ck)) =
                    (be16(d, 0), be16(d, 2), be16(d, 4), be16(d, 6))
                else {
                    self.out.layers.push(pkt);
                    return self.stop(AnomalyKind::UdpTruncated, off, 8, d.len());
                };
                if wire_l4 < 8 {
                    self.out.layers.push(pkt);
                    return self.stop(AnomalyKind::UdpTruncated, off, 8, wire_l4);
                }
                pkt.transport = Transport::Udp(UdpDatagram {
                    src_port: sp,
                    dst_port: dp,
                    length: len,
                    checksum: ck,
                });
                pkt.payload = &d[8..];
                pkt.payload_len = (wire_l4 - 8) as u32;
                let payload = pkt.payload;
                // A first fragment carries the whole datagram's UDP length.
                let bad_len = usize::from(len) != wire_l4 && pkt.fragment == Fragment::No;
                self.out.layers.push(pkt);
                if bad_len {
                    self.stop(AnomalyKind::UdpBadLength, off, wire_l4, usize::from(len));
                }
                if self.config.decapsulate {
                    self.udp_tunnel(sp, dp, payload, off + 8);
                }
            }
            IpProto::ICMP | IpProto::ICMPV6 => {
                let v6 = pkt.proto == IpProto::ICMPV6;
                let (Some(&t), Some(&c), Some(ck)) = (d.first(), d.get(1), be16(d, 2)) else {
                    self.out.layers.push(pkt);
                    return self.stop(AnomalyKind::IcmpTruncated, off, 8, d.len());
                };
                if wire_l4 < 8 {
                    self.out.layers.push(pkt);
                    return self.stop(AnomalyKind::IcmpTruncated, off, 8, wire_l4);
                }
                let mut msg = IcmpMessage {
                    v6,
                    icmp_type: t,
                    code: c,
                    checksum: ck,
                    echo_id: be16(d, 4).unwrap_or(0),
                    quoted: None,
                };
                if msg.is_error() {
                    msg.quoted = quoted_packet(d.get(8..).unwrap_or(&[]), v6);
                }
                pkt.transport = Transport::Icmp(msg);
                pkt.payload = d.get(8..).unwrap_or(&[]);
                pkt.payload_len = (wire_l4 - 8) as u32;
                self.out.layers.push(pkt);
            }
            IpProto::IPV4 | IpProto::IPV6 if self.config.decapsulate => {
                let v = if pkt.proto == IpProto::IPV4 { 4 } else { 6 };
                self.out.layers.push(pkt);
                self.ip(d, off, Encap::IpInIp, v);
            }
            IpProto::GRE if self.config.decapsulate => {
                self.out.layers.push(pkt);
                self.gre(d, off);
            }
            _ => self.out.layers.push(pkt),
        }
    }

    /// GRE header (RFC 2784, 2890; version 1 is PPTP's enhanced GRE, RFC 2637).
    fn gre(&mut self, d: &'a [u8], off: usize) {
        let (Some(flags), Some(proto)) = (be16(d, 0), be16(d, 2)) else {
            return self.stop(AnomalyKind::GreMalformed, off, 4, d.len());
        };
        let version = flags & 0x7;
        let mut len = 4usize;
        let checksum_present = flags & 0x8000 != 0;
        let key_present = flags & 0x2000 != 0;
        let seq_present = flags & 0x1000 != 0;
        match version {
            0 => {
                if checksum_present {
                    len += 4;
                }
                if key_present {
                    len += 4;
                }
                if seq_present {
                    len += 4;
                }
            }
            1 => {
                // Enhanced GRE: key (payload length + call id) always present.
                len += 4;
                if seq_present {
                    len += 4;
                }
                if flags & 0x0080 != 0 {
                    len += 4; // acknowledgment number
                }
            }
            _ => return self.stop(AnomalyKind::GreMalformed, off, 1, usize::from(version)),
        }
        let Some(inner) = d.get(len..) else {
            return self.stop(AnomalyKind::GreMalformed, off, len, d.len());
        };
        let ioff = off + len;
        match proto {
            ether_type::IPV4 => self.ip(inner, ioff, Encap::Gre, 4),
            ether_type::IPV6 => self.ip(inner, ioff, Encap::Gre, 6),
            ether_type::TEB => self.inner_ethernet(inner, ioff),
            ether_type::PPP => {
                if inner.is_empty() {
                    return; // PPTP acknowledgment-only packet
                }
                let (p, skip) = if inner.len() >= 2 && inner[0] == 0xff && inner[1] == 0x03 {
                    (be16(inner, 2), 4)
                } else if inner.first().is_some_and(|b| b & 1 == 1) {
                    (inner.first().map(|b| u16::from(*b)), 1)
                } else {
                    (be16(inner, 0), 2)
                };
                match (p, inner.get(skip..)) {
                    (Some(0x0021), Some(rest)) => self.ip(rest, ioff + skip, Encap::Gre, 4),
                    (Some(0x0057), Some(rest)) => self.ip(rest, ioff + skip, Encap::Gre, 6),
                    _ => {}
                }
            }
            ether_type::ERSPAN_II => {
                // Without a sequence number this is ERSPAN type I: Ethernet directly.
                if seq_present {
                    match inner.get(8..) {
                        Some(rest) => self.inner_ethernet(rest, ioff + 8),
                        None => self.stop(AnomalyKind::GreMalformed, ioff, 8, inner.len()),
                    }
                } else {
                    self.inner_ethernet(inner, ioff)
                }
            }
            ether_type::ERSPAN_III => {
                // 12-byte header; an optional 8-byte platform sub-header if O is set.
                let Some(&b11) = inner.get(11) else {
                    return self.stop(AnomalyKind::GreMalformed, ioff, 12, inner.len());
                };
                let hl = if b11 & 0x01 != 0 { 20 } else { 12 };
                match inner.get(hl..) {
                    Some(rest) => self.inner_ethernet(rest, ioff + hl),
                    None => self.stop(AnomalyKind::GreMalformed, ioff, hl, inner.len()),
                }
            }
            ether_type::MPLS | ether_type::MPLS_MC => self.mpls(inner, ioff),
            // Aruba's GRE with 802.11 frames and other vendor payloads: not followed.
            _ => {}
        }
    }

    fn gre_payload(&mut self, d: &'a [u8], off: usize) {
        self.gre(d, off)
    }

    /// An Ethernet frame inside a tunnel: its IP layer is tagged with the tunnel kind
    /// of the enclosing layer by the caller's next `ip` call.
    fn inner_ethernet(&mut self, d: &'a [u8], off: usize) {
        let Some(et) = be16(d, 12) else {
            return self.stop(AnomalyKind::TunnelMalformed, off, 14, d.len());
        };
        let before = self.out.layers.len();
        self.ether_type(et, &d[14..], off + 14);
        self.mark_encap(before, Encap::Gre);
    }

    /// Sets the encapsulation of the first layer added after index `before` (inner
    /// Ethernet paths reach `ip` with `Encap::None`).
    fn mark_encap(&mut self, before: usize, encap: Encap) {
        if let Some(l) = self.out.layers.get_mut(before) {
            if l.encap == Encap::None {
                l.encap = encap;
            }
        }
    }

    fn udp_tunnel(&mut self, sp: u16, dp: u16, d: &'a [u8], off: usize) {
        let cfg = self.config;
        if !listed(self.tunnel_ports, sp) && !listed(self.tunnel_ports, dp) {
            if cfg.teredo_any_port {
                self.teredo(d, off, true);
            }
            return;
        }
        let on = |ports: &[u16]| ports.contains(&sp) || ports.contains(&dp);
        if on(&cfg.vxlan_ports) {
            // 8-byte header; flags byte with the I bit (0x08), then Ethernet.
            if d.len() >= 8 + 14 && d[0] & 0x08 != 0 {
                let before = self.out.layers.len();
                self.inner_ethernet(&d[8..], off + 8);
                self.mark_encap_force(before, Encap::Vxlan);
            }
        } else if on(&cfg.geneve_ports) {
            let (Some(&b0), Some(proto)) = (d.first(), be16(d, 2)) else {
                return;
            };
            if b0 >> 6 != 0 {
                return; // unknown Geneve version
            }
            let hl = 8 + usize::from(b0 & 0x3f) * 4;
            let Some(inner) = d.get(hl..) else {
                return self.stop(AnomalyKind::TunnelMalformed, off, hl, d.len());
            };
            let before = self.out.layers.len();
            match proto {
                ether_type::TEB => self.inner_ethernet(inner, off + hl),
                ether_type::IPV4 => self.ip(inner, off + hl, Encap::Geneve, 4),
                ether_type::IPV6 => self.ip(inner, off + hl, Encap::Geneve, 6),
                _ => return,
            }
            self.mark_encap_force(before, Encap::Geneve);
        } else if on(&cfg.gtpu_ports) {
            self.gtpu(d, off);
        } else if on(&cfg.teredo_ports) {
            self.teredo(d, off, false);
        } else if on(&cfg.gre_udp_ports) {
            let before = self.out.layers.len();
            self.gre(d, off);
            self.mark_encap_force(before, Encap::Gre);
        } else if on(&cfg.ayiya_ports) {
            // AYIYA: identity length and signature length in byte 0 (4-bit powers of
            // two, in bytes: 2^n), hash/auth nibbles, opcode, next header at byte 3.
            let (Some(&b0), Some(&b1), Some(&nh)) = (d.first(), d.get(1), d.get(3)) else {
                return;
            };
            let id_len = 1usize << (b0 >> 4);
            let sig_len = usize::from(b1 >> 4) * 4;
            let hl = 8 + id_len + sig_len;
            let Some(inner) = d.get(hl..) else {
                return self.stop(AnomalyKind::TunnelMalformed, off, hl, d.len());
            };
            match nh {
                4 => self.ip(inner, off + hl, Encap::Ayiya, 4),
                41 => self.ip(inner, off + hl, Encap::Ayiya, 6),
                _ => {}
            }
        } else if cfg.teredo_any_port {
            self.teredo(d, off, true);
        }
    }

    fn mark_encap_force(&mut self, before: usize, encap: Encap) {
        if let Some(l) = self.out.layers.get_mut(before) {
            l.encap = encap;
        }
    }

    fn gtpu(&mut self, d: &'a [u8], off: usize) {
        // GTPv1-U: flags (version 1, PT 1), message type 0xff = T-PDU, length, TEID,
        // then optional sequence/N-PDU/next-extension fields and extension headers.
        let (Some(&flags), Some(&msg)) = (d.first(), d.get(1)) else {
            return;
        };
        if flags >> 5 != 1 || flags & 0x10 == 0 || msg != 0xff {
            return; // not a GTPv1 T-PDU: signalling or something else
        }
        let mut hl = 8usize;
        if flags & 0x07 != 0 {
            hl += 4;
            let mut next_ext = d.get(11).copied().unwrap_or(0);
            let mut steps = 0;
            while next_ext != 0 && steps < 8 {
                steps += 1;
                let Some(&units) = d.get(hl) else {
                    return self.stop(AnomalyKind::TunnelMalformed, off, hl + 1, d.len());
                };
                let ext_len = usize::from(units) * 4;
                if ext_len == 0 {
                    return self.stop(AnomalyKind::TunnelMalformed, off, hl + 4, d.len());
                }
                next_ext = d.get(hl + ext_len - 1).copied().unwrap_or(0);
                hl += ext_len;
            }
        }
        let Some(inner) = d.get(hl..) else {
            return self.stop(AnomalyKind::TunnelMalformed, off, hl, d.len());
        };
        match inner.first().map(|b| b >> 4) {
            Some(4) => self.ip(inner, off + hl, Encap::GtpU, 4),
            Some(6) => self.ip(inner, off + hl, Encap::GtpU, 6),
            _ => {}
        }
    }

    /// Teredo (RFC 4380). With `strict` (a port not assigned to Teredo) the inner IPv6
    /// packet must also involve a Teredo (2001::/32) or link-local address.
    fn teredo(&mut self, d: &'a [u8], off: usize, strict: bool) {
        let Some(pos) = teredo_inner(d) else {
            return;
        };
        let inner = &d[pos..];
        if strict {
            let teredo_or_local = |a: &[u8]| {
                (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0)
                    || (a[0] == 0xfe && a[1] & 0xc0 == 0x80)
            };
            if !teredo_or_local(&inner[8..24]) && !teredo_or_local(&inner[24..40]) {
                return;
            }
        }
        self.ip(inner, off + pos, Encap::Teredo, 6);
    }
}

/// Whether port `p` is in a bit set of tunnel ports.
fn listed(ports: &[u64], p: u16) -> bool {
    ports[usize::from(p / 64)] >> (p % 64) & 1 != 0
}

/// Where the IPv6 packet of a Teredo datagram's payload starts: after the optional
/// authentication (0x0001) and origin indication (0x0000) headers, an IPv6 header
/// whose payload length matches what follows; `None` when it is not there.
fn teredo_inner(d: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    if be16(d, 0) == Some(0x0001) {
        let (&id_len, &au_len) = (d.get(2)?, d.get(3)?);
        pos += 4 + usize::from(id_len) + usize::from(au_len) + 8 + 1;
    }
    if be16(d, pos) == Some(0x0000) {
        pos += 8;
    }
    let inner = d.get(pos..)?;
    if inner.len() < 40 || inner[0] >> 4 != 6 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([inner[4], inner[5]]));
    // Otherwise not Teredo: the length does not match the UDP payload.
    (40 + plen == inner.len()).then_some(pos)
}

/// Final destination of an IPv6 routing header of type 0 or 2 with segments left.
fn routing_final_destination(ext: &[u8]) -> Option<IpAddr> {
    let (&rtype, &segleft) = (ext.get(2)?, ext.get(3)?);
    match rtype {
        0 if segleft > 0 => {
            let n = (ext.len() - 8) / 16;
            let last = ext.get(8 + (n.checked_sub(1)?) * 16..8 + n * 16)?;
            let a: [u8; 16] = last.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        2 if segleft > 0 => {
            let a: [u8; 16] = ext.get(8..24)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// The 5-tuple of the packet quoted by an ICMP error (the bytes after its 8-byte header).
fn quoted_packet(q: &[u8], v6: bool) -> Option<QuotedPacket> {
    let (src, dst, proto, hl) = if !v6 {
        let h = Ipv4HeaderSlice::from_slice(q).ok()?;
        (
            IpAddr::V4(Ipv4Addr::from(h.source())),
            IpAddr::V4(Ipv4Addr::from(h.destination())),
            IpProto(h.protocol().0),
            h.slice().len(),
        )
    } else {
        let h = Ipv6HeaderSlice::from_slice(q).ok()?;
        (
            IpAddr::V6(Ipv6Addr::from(h.source())),
            IpAddr::V6(Ipv6Addr::from(h.destination())),
            IpProto(h.next_header().0),
            40,
        )
    };
    let l4 = q.get(hl..).unwrap_or(&[]);
    let (src_port, dst_port) = match proto {
        IpProto::TCP | IpProto::UDP => (be16(l4, 0).unwrap_or(0), be16(l4, 2).unwrap_or(0)),
        IpProto::ICMP | IpProto::ICMPV6 => (
            l4.first().map_or(0, |b| u16::from(*b)),
            l4.get(1).map_or(0, |b| u16::from(*b)),
        ),
        _ => (0, 0),
    };
    Some(QuotedPacket {
        src,
        dst,
        proto,
        src_port,
        dst_port,
    })
}
