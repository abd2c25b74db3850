//! A look at a frame's outer IP addresses without decoding it: what `read --threads`
//! needs to pick the shard of a frame, on the one thread that reads the input.
//!
//! Only the common case is read here: Ethernet (with up to two VLAN tags) or raw IP,
//! carrying IPv4 or IPv6 whose next header is TCP or UDP. Anything else — other link
//! types, MPLS, PPPoE, IPv6 extension headers, ICMP (whose errors quote a flow that may
//! live on another shard), a header that does not hold together — returns `None`, and
//! the caller decodes the frame in full. [`crate::Decoder::peek_pair`] also defers a
//! UDP datagram that may carry a tunnel; when it returns addresses they are those of
//! the only layer [`crate::Decoder`] reports for the same frame (property tests and the
//! fuzz target `decode` check it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::LinkType;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const VLAN_TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const TCP: u8 = 6;
const UDP: u8 = 17;

/// What a peek sees of a plain TCP or UDP frame.
pub(crate) struct Outer<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// A UDP datagram's ports and payload (bounded by the IP length, as the decoder
    /// bounds it; `None` when the IP length and the captured bytes disagree).
    pub udp: Option<(u16, u16, Option<&'a [u8]>)>,
}

/// The source and destination of the outermost IP layer of a plain TCP or UDP frame,
/// with the UDP datagram, or `None` when the frame needs a full decode (see the module
/// doc).
pub(crate) fn outer(link: LinkType, frame: &[u8]) -> Option<Outer<'_>> {
    let (ip, ethertype) = match link {
        LinkType::ETHERNET => {
            let mut at = 12;
            let mut ethertype = be16(frame, at)?;
            for _ in 0..2 {
                if !VLAN_TAGS.contains(&ethertype) {
                    break;
                }
                at += 4;
                ethertype = be16(frame, at)?;
            }
            (frame.get(at + 2..)?, Some(ethertype))
        }
        LinkType::RAW | LinkType::RAW_DLT12 | LinkType::RAW_DLT14 => (frame, None),
        _ => return None,
    };
    match (ip.first()? >> 4, ethertype) {
        (4, None | Some(ETHERTYPE_IPV4)) => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let h: &[u8; 20] = ip.first_chunk()?;
            if ihl < 20 || ip.len() < ihl || !matches!(h[9], TCP | UDP) {
                return None;
            }
            let src: [u8; 4] = h[12..16].try_into().ok()?;
            let dst: [u8; 4] = h[16..20].try_into().ok()?;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            Some(Outer {
                src: Ipv4Addr::from(src).into(),
                dst: Ipv4Addr::from(dst).into(),
                udp: (h[9] == UDP).then(|| udp(ip, ihl, total)),
            })
        }
        (6, None | Some(ETHERTYPE_IPV6)) => {
            let h: &[u8; 40] = ip.first_chunk()?;
            if !matches!(h[6], TCP | UDP) {
                return None;
            }
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            let total = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
            Some(Outer {
                src: Ipv6Addr::from(src).into(),
                dst: Ipv6Addr::from(dst).into(),
                udp: (h[6] == UDP).then(|| udp(ip, 40, total)),
            })
        }
        _ => None,
    }
}

/// A UDP header at `hl` of an IP packet of `total` bytes: its ports (zero when cut)
/// and its payload, `None` when the IP length and the captured bytes disagree.
fn udp(ip: &[u8], hl: usize, total: usize) -> (u16, u16, Option<&[u8]>) {
    let port = |at| be16(ip, hl + at).unwrap_or(0);
    let payload = ip.get(..total).and_then(|p| p.get(hl + 8..));
    (port(0), port(2), payload)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(at..)?.first_chunk()?))
}
