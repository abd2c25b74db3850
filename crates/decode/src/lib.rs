//! Zero-copy packet decoding for tunnelwatch: link layers, VLAN/MPLS/PPPoE tags, IPv4
//! and IPv6 (with options, extension headers and fragments), TCP/UDP/ICMP, tunnels
//! (GRE, ERSPAN, IP-in-IP/6in4, VXLAN, Geneve, Teredo, GTP-U, AYIYA), and the light
//! application facts detectors need (HTTP, TLS, SSH, DNS) in [`app`].
//!
//! The crate is sans-IO: it reads byte slices and writes into caller-owned views. It
//! never panics on any input and allocates nothing on the per-packet path; malformed
//! traffic becomes an [`Anomaly`] with its numbers, counted by [`AnomalyKind`].
#![deny(missing_docs)]

pub mod anomaly;
pub mod app;
pub mod checksum;
mod decoder;
mod packet;
pub mod peek;
pub mod tcp_options;

pub use anomaly::{Anomaly, AnomalyCounts, AnomalyKind};
pub use decoder::{Decoder, DecoderConfig};
pub use packet::{
    Decoded, Encap, Fragment, IcmpMessage, IpPacket, LinkType, QuotedPacket, TcpFlags, TcpSegment,
    Transport, UdpDatagram, MAX_LAYERS,
};
