//! Flow-table settings. Defaults follow Zeek's (`init-bare.zeek`) so that records agree
//! with Zeek's `conn.log` out of the box; every value is documented in
//! `docs/specs/flow-record.md`.

/// How transport checksums are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Verify IPv4 header and TCP/UDP/ICMP checksums when the packet was captured whole;
    /// a bad one is recorded (`C`/`c` in the history) and the packet is otherwise
    /// ignored, as the receiving host would (Zeek's default).
    #[default]
    Verify,
    /// Do not verify (captures taken on a host with checksum offloading; Zeek's `-C`).
    Ignore,
}

use std::sync::Arc;

use tunnelwatch_model::KeystrokeParams;

use crate::sigs::Signatures;

/// Settings of the flow table. Times are in nanoseconds of packet time.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Checksum policy.
    pub checksums: ChecksumMode,
    /// Idle time after which an established TCP connection ends (Zeek: 5 min).
    pub tcp_inactivity: i64,
    /// Idle time for TCP connections still in their handshake (Zeek applies its UDP
    /// timeout here: 1 min).
    pub tcp_handshake_inactivity: i64,
    /// Idle time for UDP flows (Zeek: 1 min).
    pub udp_inactivity: i64,
    /// UDP DNS flows (responder port 53, 137, 5353 or 5355) end after this much quiet,
    /// checked every this often (Zeek's `dns_session_timeout`: 10 s); 0 disables.
    pub dns_session_timeout: i64,
    /// Idle time for ICMP flows (Zeek: 1 min).
    pub icmp_inactivity: i64,
    /// Idle time for other IP protocols (Zeek: 1 min).
    pub other_inactivity: i64,
    /// First check for a quiet, closed TCP connection after its start (Zeek: 5 s).
    pub tcp_syn_timeout: i64,
    /// Interval of those checks (Zeek: 6 s).
    pub tcp_session_timer: i64,
    /// Quiet time before a closed or half-open connection may end (Zeek: 5 s).
    pub tcp_connection_linger: i64,
    /// Time an unanswered SYN waits before the attempt ends (Zeek: 5 s).
    pub tcp_attempt_delay: i64,
    /// Linger after both sides closed or a reset, before the record is final (Zeek: 5 s).
    pub tcp_close_delay: i64,
    /// Interim records of long flows every this often (`cause: status`); 0 disables.
    pub active_timeout: i64,
    /// A gap between two packets of one direction longer than this counts as an idle
    /// period (CICFlowMeter's activity timeout: 5 s).
    pub idle_threshold: i64,
    /// Most live flows kept; beyond it the flow closest to its own expiry is ended early
    /// with `cause: evicted`.
    pub max_flows: usize,
    /// Most bytes of flow state kept (estimated from each flow's structures, boxes and
    /// buffers); beyond it flows are evicted as for `max_flows`. 0: no limit.
    pub max_memory: usize,
    /// Ports that are likely servers, for choosing the responder when no SYN was seen
    /// (Zeek's `likely_server_ports`). Index by port; bit 0 TCP, bit 1 UDP.
    pub likely_server_ports: Box<[u8; 65536]>,
    /// Parse application facts (HTTP, TLS, SSH, DNS) from the first payloads.
    pub app_facts: bool,
    /// How keystrokes are told from other traffic (the `[keystrokes]` settings).
    pub keystrokes: KeystrokeParams,
    /// Content signatures matched against the first bytes of each direction.
    pub signatures: Arc<Signatures>,
}

const SEC: i64 = 1_000_000_000;

/// Whether a UDP responder port is one of Zeek's DNS ports (DNS, NetBIOS name service,
/// mDNS, LLMNR): such flows get DNS parsing and the short DNS session timeout.
pub fn is_dns_port(port: u16) -> bool {
    matches!(port, 53 | 137 | 5353 | 5355)
}

/// Zeek's default `likely_server_ports` (ports registered by its default analyzers).
pub const DEFAULT_SERVER_PORTS_TCP: &[u16] = &[
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 465, 502, 514, 563, 585, 587,
    614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222,
    5223, 5269, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
];
/// Zeek's default `likely_server_ports` for UDP.
pub const DEFAULT_SERVER_PORTS_UDP: &[u16] = &[
    53, 67, 88, 123, 137, 161, 162, 389, 443, 514, 1812, 2123, 2152, 3389, 3544, 4011, 4789, 5060,
    5072, 5353, 5355, 6081, 20000,
];

impl Default for FlowConfig {
    fn default() -> Self {
        let mut ports = Box::new([0u8; 65536]);
        for &p in DEFAULT_SERVER_PORTS_TCP {
            ports[usize::from(p)] |= 1;
        }
        for &p in DEFAULT_SERVER_PORTS_UDP {
            ports[usize::from(p)] |= 2;
        }
        FlowConfig {
            checksums: ChecksumMode::Verify,
            tcp_inactivity: 300 * SEC,
            tcp_handshake_inactivity: 60 * SEC,
            udp_inactivity: 60 * SEC,
            dns_session_timeout: 10 * SEC,
            icmp_inactivity: 60 * SEC,
            other_inactivity: 60 * SEC,
            tcp_syn_timeout: 5 * SEC,
            tcp_session_timer: 6 * SEC,
            tcp_connection_linger: 5 * SEC,
            tcp_attempt_delay: 5 * SEC,
            tcp_close_delay: 5 * SEC,
            active_timeout: 1800 * SEC,
            idle_threshold: 5 * SEC,
            max_flows: 4_000_000,
            max_memory: 4 << 30,
            likely_server_ports: ports,
            app_facts: true,
            keystrokes: KeystrokeParams::default(),
            signatures: Arc::default(),
        }
    }
}

impl FlowConfig {
    /// True when `port` is a likely server port for TCP (`tcp`) or UDP.
    pub fn is_likely_server(&self, port: u16, tcp: bool) -> bool {
        self.likely_server_ports[usize::from(port)] & if tcp { 1 } else { 2 } != 0
    }

    /// Adds a likely server port.
    pub fn add_server_port(&mut self, port: u16, tcp: bool) {
        self.likely_server_ports[usize::from(port)] |= if tcp { 1 } else { 2 };
    }
}
