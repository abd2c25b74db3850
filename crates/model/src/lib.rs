//! The shared vocabulary of tunnelwatch: packet timestamps, IP protocol numbers, flow
//! records, alerts and the names of their fields.
//!
//! Every other crate speaks in these types. They are plain data with `serde`
//! serialisation; nothing here reads a clock, touches a socket or allocates on a hot
//! path. The JSON field names of [`FlowRecord`] are a contract documented in
//! `docs/specs/flow-record.md`: renaming one is a breaking change.
#![deny(missing_docs)]

mod alert;
mod keys;
mod letters;
mod record;
mod signature;
mod text;
mod time;

pub use alert::{Alert, Category, Severity};
pub use keys::KeystrokeParams;
pub use letters::Letters;
pub use record::{
    AppFacts, Bursts, Cause, ConnState, DirectionStats, DnsFacts, Dynamics, ExportFacts,
    FlowRecord, HttpFacts, IcmpFacts, SshFacts, Stats, TcpFacts, TcpHeaderFacts, TcpOptionFault,
    TlsFacts,
};
pub use signature::{SignatureHit, SignatureRule};
pub use text::IpText;
pub use time::Timestamp;

/// Where finished flow records go. Producers (the flow table, the sensor) push each
/// record as it is built, so a consumer can stream them out in bounded batches; a
/// `Vec` collects them.
pub trait RecordSink {
    /// Takes one record.
    fn emit(&mut self, record: FlowRecord);
}

impl RecordSink for Vec<FlowRecord> {
    fn emit(&mut self, record: FlowRecord) {
        self.push(record);
    }
}

/// An IP protocol number (the IPv4 `protocol` / IPv6 `next header` field).
///
/// An open newtype: unknown values are values, not errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IpProto(pub u8);

impl IpProto {
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: IpProto = IpProto(1);
    /// IPv4 encapsulated in IP (RFC 2003).
    pub const IPV4: IpProto = IpProto(4);
    /// TCP (RFC 9293).
    pub const TCP: IpProto = IpProto(6);
    /// UDP (RFC 768).
    pub const UDP: IpProto = IpProto(17);
    /// IPv6 encapsulated in IP (RFC 4213, "6in4").
    pub const IPV6: IpProto = IpProto(41);
    /// Generic Routing Encapsulation (RFC 2784).
    pub const GRE: IpProto = IpProto(47);
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: IpProto = IpProto(58);
    /// SCTP (RFC 9260).
    pub const SCTP: IpProto = IpProto(132);

    /// True for ICMP and ICMPv6.
    pub fn is_icmp(self) -> bool {
        self == Self::ICMP || self == Self::ICMPV6
    }

    /// The transport name used in flow records, as Zeek's `proto` column spells it:
    /// `tcp`, `udp`, `icmp` (for both ICMP versions) or `unknown_transport`.
    pub fn transport_name(self) -> &'static str {
        match self {
            Self::TCP => "tcp",
            Self::UDP => "udp",
            Self::ICMP | Self::ICMPV6 => "icmp",
            _ => "unknown_transport",
        }
    }
}

/// tunnelwatch's own IPFIX information elements: what `read --ipfix-export` sends
/// beyond the IANA elements, and what `collect --netflow` reads back
/// (`docs/specs/ipfix-export.md`). A contract between exporter and collector.
pub mod ipfix {
    /// Private enterprise number of the elements. 32473 is RFC 5612's number for
    /// documentation and examples; a registered PEN replaces it before these elements
    /// leave a lab (collectors key decoders on it).
    pub const PEN: u32 = 32473;
    /// Set on an element's number for the responder's (reverse) value.
    pub const REVERSE_BIT: u16 = 0x4000;
    /// Transport payload bytes (`dynamics.*.payload_bytes`), 8 bytes.
    pub const PAYLOAD_BYTES: u16 = 1;
    /// Mean inter-arrival time, microseconds, 8 bytes.
    pub const IAT_MEAN_US: u16 = 2;
    /// Standard deviation of inter-arrival times, microseconds, 8 bytes.
    pub const IAT_STDDEV_US: u16 = 3;
    /// Largest payload of one packet, bytes, 4 bytes.
    pub const MAX_PAYLOAD: u16 = 4;
    /// Keystrokes (`dynamics.*.keystrokes`), 8 bytes.
    pub const KEYSTROKES: u16 = 5;
    /// Retransmissions (`dynamics.*.retransmissions`), 8 bytes.
    pub const RETRANSMISSIONS: u16 = 6;
}
