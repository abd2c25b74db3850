//! The flow record: one bidirectional connection (or an interim report on one), with
//! Zeek `conn.log`-compatible core fields and tunnelwatch's packet dynamics and
//! application facts in named sub-objects.
//!
//! Field names follow `../shared/DESIGN.md` and are specified with an example in
//! `docs/specs/flow-record.md`. Optional sub-objects are omitted when empty so that a
//! UDP record does not carry an empty `tcp` object.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::time::{nanos_to_secs_micros, Timestamp};
use crate::{Letters, SignatureHit};

/// Why a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// Final record: the connection closed (FIN/RST and linger) or the input ended.
    End,
    /// Interim record of a live flow (active timeout); a later record with the same
    /// `uid` supersedes it.
    Status,
    /// Final record: the flow was idle longer than its protocol's inactivity timeout.
    Timeout,
    /// Final record: the flow table was full and this flow was expired early.
    Evicted,
}

impl Cause {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::End => "end",
            Cause::Status => "status",
            Cause::Timeout => "timeout",
            Cause::Evicted => "evicted",
        }
    }
}

/// Zeek's `conn_state` summary of a connection (see `docs/specs/flow-record.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)] // the variants are Zeek's documented codes
pub enum ConnState {
    S0,
    S1,
    SF,
    REJ,
    S2,
    S3,
    RSTO,
    RSTR,
    RSTOS0,
    RSTRH,
    SH,
    SHR,
    OTH,
}

impl ConnState {
    /// The code as Zeek prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::REJ => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::RSTO => "RSTO",
            ConnState::RSTR => "RSTR",
            ConnState::RSTOS0 => "RSTOS0",
            ConnState::RSTRH => "RSTRH",
            ConnState::SH => "SH",
            ConnState::SHR => "SHR",
            ConnState::OTH => "OTH",
        }
    }
}

/// Streaming summary of a series of values: mean, minimum, maximum and population
/// standard deviation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Population standard deviation.
    pub stddev: f64,
}

/// Packet dynamics of one direction of a flow (originator → responder or back).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// Transport payload bytes actually carried by this direction's packets, counting
    /// retransmissions and bytes lost to the capture's snap length.
    pub payload_bytes: u64,
    /// Bytes of this direction's frames on the wire, link-layer headers included.
    pub link_bytes: u64,
    /// Union of the TCP flags seen, as letters in the order `CEUAPRSF`, plus `N` for the
    /// ECN-nonce bit and `r` for a reserved bit (empty for non-TCP flows).
    pub flags: Letters,
    /// TCP flags of this direction's first four packets, in the same letters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_flags: Vec<Letters>,
    /// Inter-arrival times between this direction's packets, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<Stats>,
    /// Transport payload sizes of this direction's packets, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Stats>,
    /// Gaps between packets longer than the idle threshold (`idle` periods).
    pub idle_periods: u64,
    /// Packets advertising a zero TCP receive window.
    pub zero_windows: u64,
    /// TCP packets carrying payload at or below the highest sequence number already
    /// seen (retransmissions).
    pub retransmissions: u64,
    /// Smallest IP TTL / hop limit seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_min: Option<u8>,
    /// Largest IP TTL / hop limit seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_max: Option<u8>,
    /// IP fragments reassembled into this direction's packets (a datagram in three
    /// fragments counts 3).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fragments: u64,
    /// Packets whose capture was cut short by the snap length (counted with their
    /// wire length).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated: u64,
    /// Keystrokes typed by this side: small payload bursts at a human pace, each echoed
    /// by the other side within a few bursts (Argus' `snstroke`/`dnstroke`, recalibrated;
    /// see `docs/specs/flow-record.md`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keystrokes: u64,
    /// Payload bursts of this side, for telling typing from other traffic (absent on
    /// flows too short to follow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursts: Option<Bursts>,
    /// When this side resumed sending after half a second or more of silence (epoch
    /// seconds; the first 32), on sides that typed: what stepping-stone detection
    /// correlates between an inbound and an outbound interactive session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub onsets: Vec<f64>,
}

/// Payload bursts of one direction: packets of one side less than the coalescing gap
/// apart form one burst (a keystroke split by a tunnel's framing is one burst).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bursts {
    /// Bursts counted (from the flow's third packet on).
    pub count: u64,
    /// Bursts no larger than a keystroke can be.
    pub small: u64,
    /// Small bursts that came at a typing pace after the previous small burst (no echo
    /// needed: a one-way typed stream, such as the upload half of an HTTP tunnel).
    pub typed: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// TCP-specific timing and options of a connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpFacts {
    /// Seconds from the originator's first SYN to the responder's SYN/ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_synack: Option<f64>,
    /// Seconds from the SYN/ACK to the originator's first ACK (Argus `ackdat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synack_ack: Option<f64>,
    /// Seconds from the first FIN or RST to the last packet of the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<f64>,
    /// MSS option of the originator's SYN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_mss: Option<u16>,
    /// MSS option of the responder's SYN/ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_mss: Option<u16>,
    /// Window-scale option of the originator's SYN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_wscale: Option<u8>,
    /// Window-scale option of the responder's SYN/ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_wscale: Option<u8>,
    /// The first four packets in wire order: `>` from the originator, `<` from the
    /// responder, then their flags' letters (`[">S", "<RA"]`): what the TCP filter's scan
    /// patterns read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_packets: Vec<Letters>,
    /// Header oddities of the originator's packets.
    #[serde(default, skip_serializing_if = "TcpHeaderFacts::is_empty")]
    pub orig_header: TcpHeaderFacts,
    /// Header oddities of the responder's packets.
    #[serde(default, skip_serializing_if = "TcpHeaderFacts::is_empty")]
    pub resp_header: TcpHeaderFacts,
    /// ACK storms: the most times both sides at once had repeated the same pure ACK
    /// (repeats after the first sending, under a second apart; the smaller of the two
    /// sides' counts).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ack_storm_run: u64,
    /// Which side sent the first payload byte: `orig` or `resp` (a server speaking
    /// first on a client-first protocol is a reverse shell's sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_data: Option<String>,
}

/// What was odd about the TCP headers one side sent (all counts of packets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpHeaderFacts {
    /// Packets with any of the three reserved bits of byte 12 set.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved_bits: u64,
    /// Packets with the URG flag and a zero urgent pointer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub urg_without_pointer: u64,
    /// Packets with a non-zero urgent pointer and no URG flag.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pointer_without_urg: u64,
    /// Packets whose options hold an unknown kind, a truncated option or a bad length.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bad_options: u64,
    /// The first bad option seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_option: Option<TcpOptionFault>,
    /// The longest run of consecutive zero-window advertisements (RST excluded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zero_window_run: u64,
}

impl TcpHeaderFacts {
    /// True when nothing odd was seen.
    pub fn is_empty(&self) -> bool {
        *self == TcpHeaderFacts::default()
    }
}

/// A TCP option that a correct stack does not send (`offset` counts from the first
/// option byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum TcpOptionFault {
    /// A kind without an IANA assignment.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Offset in the option bytes.
        offset: u8,
    },
    /// The header ends after the kind byte: no length.
    Truncated {
        /// Option kind.
        kind: u8,
        /// Offset in the option bytes.
        offset: u8,
    },
    /// A length below 2 or running past the header.
    BadLength {
        /// Option kind.
        kind: u8,
        /// Offset in the option bytes.
        offset: u8,
        /// The length byte.
        len: u8,
    },
}

/// ICMP facts: for ICMP flows, the echo identifiers seen; for any flow, the ICMP
/// errors (unreachable, time exceeded, …) that quoted one of its packets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IcmpFacts {
    /// ICMP error messages that quoted a packet of this flow.
    pub errors: u64,
    /// Type of the last such error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_type: Option<u8>,
    /// Code of the last such error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_code: Option<u8>,
    /// Address that sent the last such error (a router for time-exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_from: Option<IpAddr>,
    /// Distinct echo identifiers seen in an echo flow (capped at 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub echo_ids: Vec<u16>,
    /// Mean Shannon entropy (bits per byte) of the differences between successive bytes
    /// of the first echo payloads of at least 256 bytes: ping's counting and repeating
    /// patterns score near 0, encrypted or compressed data near 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_entropy: Option<f64>,
    /// How many payloads that mean is over (at most 16).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entropy_samples: u64,
}

/// The first HTTP request and response of a connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpFacts {
    /// Request method, as sent (any token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Request version, e.g. `1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Response status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Response version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_version: Option<String>,
    /// After a CONNECT: what the client's first payload through the tunnel was (`tls`,
    /// `ssh`, `http` or `other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_connect: Option<String>,
}

/// TLS handshake facts from the ClientHello and ServerHello.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsFacts {
    /// Highest version the client offered (supported_versions aware), e.g. `TLSv1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Server Name Indication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// ALPN protocols offered by the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// JA3 fingerprint string of the ClientHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja3: Option<String>,
    /// MD5 of the JA3 string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja3_hash: Option<String>,
    /// JA4 fingerprint of the ClientHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// Version the server selected, from the ServerHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Cipher suite the server selected, as a hex code point (e.g. `0x1301`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cipher: Option<String>,
}

/// SSH identification strings (RFC 4253 §4.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SshFacts {
    /// The originator's banner, e.g. `SSH-2.0-OpenSSH_9.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The responder's banner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// The first DNS query and its answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsFacts {
    /// Query name of the first question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Query type code of the first question (1 = A, 16 = TXT, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<u16>,
    /// Response code of the first response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u8>,
    /// Answer records in the first response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<u16>,
    /// Queries in the flow (every message, not only the first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queries: u64,
    /// Responses in the flow.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub responses: u64,
    /// Distinct query names (exact up to 1,024; beyond, names not seen among the first
    /// 1,024 are counted as new).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub distinct_names: u64,
    /// Bytes of all query names (dotted), for the mean name length.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub name_bytes: u64,
    /// Queries for TXT, NULL, CNAME, MX, ANY or private-use types (what DNS tunnels
    /// ask for to get room in the answer).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unusual_qtypes: u64,
    /// Responses with NXDOMAIN.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nxdomain: u64,
    /// Mean Shannon entropy, bits per character, of the query names left of their last
    /// two labels (0 when no name had more than two labels).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub subdomain_entropy: f64,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// Application facts learnt from the first payload bytes of each direction.
///
/// HTTP and TLS facts are boxed: a flow has one protocol at most, and most flows with
/// payload are DNS, whose state would otherwise carry 368 empty bytes for them (160
/// bytes instead of 512).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppFacts {
    /// HTTP request/response heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpFacts>>,
    /// TLS ClientHello/ServerHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<TlsFacts>>,
    /// SSH banners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshFacts>,
    /// DNS question and answer summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsFacts>,
}

impl AppFacts {
    /// Bytes held on the heap (the boxed facts and the strings' lengths), for memory
    /// accounting.
    pub fn heap_len(&self) -> usize {
        fn t(s: &Option<String>) -> usize {
            s.as_ref().map_or(0, String::len)
        }
        let http = self.http.as_ref().map_or(0, |h| {
            std::mem::size_of::<HttpFacts>()
                + t(&h.method)
                + t(&h.uri)
                + t(&h.version)
                + t(&h.host)
                + t(&h.user_agent)
                + t(&h.resp_version)
        });
        let tls = self.tls.as_ref().map_or(0, |x| {
            std::mem::size_of::<TlsFacts>()
                + t(&x.version)
                + t(&x.sni)
                + t(&x.ja3)
                + t(&x.ja3_hash)
                + t(&x.ja4)
                + t(&x.server_version)
                + t(&x.server_cipher)
                + x.alpn.iter().map(String::len).sum::<usize>()
        });
        let ssh = self.ssh.as_ref().map_or(0, |x| t(&x.client) + t(&x.server));
        let dns = self.dns.as_ref().map_or(0, |x| t(&x.query));
        http + tls + ssh + dns
    }

    /// True when no application facts were learnt.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.tls.is_none() && self.ssh.is_none() && self.dns.is_none()
    }

    /// The `service` names confirmed by these facts, Zeek-style (`http`, `ssl`, `ssh`,
    /// `dns`), comma-joined, or `None`.
    pub fn service(&self) -> Option<String> {
        let mut names: Vec<&str> = Vec::new();
        if self.dns.is_some() {
            names.push("dns");
        }
        if self.http.is_some() {
            names.push("http");
        }
        if self.ssh.is_some() {
            names.push("ssh");
        }
        if self.tls.is_some() {
            names.push("ssl");
        }
        if names.is_empty() {
            None
        } else {
            Some(names.join(","))
        }
    }
}

/// Per-direction dynamics of a flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    /// Originator → responder.
    pub orig: DirectionStats,
    /// Responder → originator.
    pub resp: DirectionStats,
}

/// One bidirectional flow record (see `docs/specs/flow-record.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Stable identifier of the connection; interim and final records share it.
    pub uid: String,
    /// Community ID v1 of the 5-tuple (`1:` + base64 of a SHA-1).
    pub community_id: String,
    /// Time of the first packet.
    pub ts: Timestamp,
    /// Time of the last packet that counted towards the duration.
    pub last_ts: Timestamp,
    /// `last_ts - ts` in seconds.
    pub duration: f64,
    /// Transport name: `tcp`, `udp`, `icmp` or `unknown_transport`.
    pub proto: String,
    /// IP protocol number from the header.
    pub ip_proto: u8,
    /// Originator address.
    pub orig_h: IpAddr,
    /// Originator port (ICMP: message type).
    pub orig_p: u16,
    /// Responder address.
    pub resp_h: IpAddr,
    /// Responder port (ICMP: counterpart type, or code for one-way messages).
    pub resp_p: u16,
    /// Application protocols confirmed from payload, comma-joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Packets sent by the originator.
    pub orig_pkts: u64,
    /// Packets sent by the responder.
    pub resp_pkts: u64,
    /// Payload bytes sent by the originator (TCP: from sequence numbers, as Zeek).
    pub orig_bytes: u64,
    /// Payload bytes sent by the responder.
    pub resp_bytes: u64,
    /// IP-level bytes sent by the originator (sum of IP total lengths).
    pub orig_ip_bytes: u64,
    /// IP-level bytes sent by the responder.
    pub resp_ip_bytes: u64,
    /// Zeek-compatible connection state.
    pub conn_state: ConnState,
    /// Zeek-compatible history string.
    pub history: String,
    /// Why this record was written.
    pub cause: Cause,
    /// Bytes the TCP stream is missing (content gaps), as Zeek's `missed_bytes`.
    pub missed_bytes: u64,
    /// Outer VLAN tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Inner VLAN tag (QinQ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_vlan: Option<u16>,
    /// `uid`s of the tunnel connections this flow was carried in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tunnel_parents: Vec<String>,
    /// Content signatures that matched (`docs/specs/signatures.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureHit>,
    /// Packet dynamics per direction.
    pub dynamics: Dynamics,
    /// TCP timing and options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpFacts>,
    /// ICMP facts (echo identifiers, quoted ICMP errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFacts>,
    /// Application facts (boxed: most records have none, and a record is moved a few
    /// times on its way to the outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<Box<AppFacts>>,
    /// Where a record built from flow exports came from, and how its directions were
    /// joined (absent for records built from packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportFacts>,
}

/// Facts of a record built from NetFlow/IPFIX export records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportFacts {
    /// `netflow_v5`, `netflow_v9` or `ipfix`.
    pub source: String,
    /// The exporter's address.
    pub exporter: IpAddr,
    /// v9 source id or IPFIX observation domain.
    pub domain: u32,
    /// Export records joined into this flow.
    pub records: u32,
    /// One packet in `sampling` was counted; counters are scaled by it (1: unsampled).
    pub sampling: u32,
    /// `paired` (two one-way records joined), `biflow` (an RFC 5103 record) or
    /// `one_way` (only one direction was exported).
    pub join: String,
    /// How sure the pairing is, 0–1 (absent for `one_way`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_confidence: Option<f64>,
    /// The exporter's flowEndReason (1 idle, 2 active timeout, 3 end, 4 forced, 5
    /// lack of resources), if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<u8>,
}

impl FlowRecord {
    /// Duration in seconds at microsecond precision.
    pub fn duration_of(ts: Timestamp, last_ts: Timestamp) -> f64 {
        nanos_to_secs_micros(last_ts.nanos_since(ts).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_and_state_serialise_as_documented() {
        assert_eq!(
            serde_json::to_string(&Cause::Evicted).unwrap(),
            "\"evicted\""
        );
        assert_eq!(
            serde_json::to_string(&ConnState::RSTOS0).unwrap(),
            "\"RSTOS0\""
        );
    }

    #[test]
    fn service_joins_in_stable_order() {
        let app = AppFacts {
            http: Some(Box::default()),
            tls: Some(Box::default()),
            ..AppFacts::default()
        };
        assert_eq!(app.service().as_deref(), Some("http,ssl"));
        assert_eq!(AppFacts::default().service(), None);
    }
}
