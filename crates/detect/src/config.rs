//! The detectors' configuration: every threshold, rules on and off, ports to leave
//! unchecked, and the seed's black / white / red lists. Read from TOML (`--config`);
//! every key has a documented default (`docs/config.example.toml`), unknown keys are
//! errors, and an error names the key and the line.

use std::path::Path;

use serde::Deserialize;
use tunnelwatch_model::{KeystrokeParams, Severity, SignatureRule};

use crate::net::Net;

/// Everything the detectors read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which alerts are kept.
    pub alerts: AlertsConfig,
    /// Rules switched off by name.
    pub rules: RulesConfig,
    /// The TCP attack & anomaly filter (seed 004).
    pub tcp_filter: TcpFilterConfig,
    /// SYN and flow floods per destination.
    pub flood: FloodConfig,
    /// Port scans from flow records alone (seed 002).
    pub port_scan: PortScanConfig,
    /// tcpstatflow's per-connection thresholds (seed 000).
    pub thresholds: ThresholdsConfig,
    /// HTTP and proxy checks (seed 000, part 2.5).
    pub http: HttpConfig,
    /// DNS tunnels from query facts.
    pub dns_tunnel: DnsTunnelConfig,
    /// DNS tunnels from flow metrics alone (seed 002).
    pub dns_flow: DnsFlowConfig,
    /// ICMP tunnels from echo payload sizes.
    pub icmp_tunnel: IcmpTunnelConfig,
    /// Uploads out of proportion.
    pub upload: UploadConfig,
    /// How the flow table counts keystrokes (applied by the sensor, not a detector).
    pub keystrokes: KeystrokeParams,
    /// Interactive sessions: keystrokes, reverse shells, typing inside other protocols.
    pub interactive: InteractiveConfig,
    /// Beacons, fetches too often, long connections.
    pub beacon: BeaconConfig,
    /// Content signatures (matched by the flow table, raised by `signature`).
    pub signatures: SignaturesConfig,
    /// Stepping stones: interactive sessions into and out of one host that move
    /// together.
    pub stepping_stone: SteppingStoneConfig,
    /// Black, white and red lists (seed 000's false-positive section).
    pub lists: ListsConfig,
    /// Host scoring: priors and likelihood ratios that combine a host's alerts
    /// (`docs/specs/scoring.md`).
    pub scoring: crate::scoring::ScoringConfig,
    /// Learnt profiles, the seed's three statistical methods and static hourly limits.
    pub baseline: crate::baseline::BaselineConfig,
}

/// Which alerts are kept.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Alerts below this severity are dropped (black-listed ones excepted).
    pub min_severity: Severity,
    /// At most this many flow `uid`s per alert (the first ones).
    pub max_uids: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            min_severity: Severity::Low,
            max_uids: 10,
        }
    }
}

/// Rules switched off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Rule names (the alerts' `detector` values) that never run.
    pub disable: Vec<String>,
}

/// The TCP attack & anomaly filter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TcpFilterConfig {
    /// Connections from or to these ports are not checked (seed: `UNCHECKED_PORTS`).
    pub unchecked_ports: Vec<u16>,
    /// Findings are queued per (source, destination, rule) and summarised once per this
    /// many seconds of packet time (seed: 120).
    pub summary_period: f64,
    /// How long after a period ends its summary waits for flows that started in it but
    /// end later (seconds; the flow table's longest wait for an unanswered connection).
    pub lateness: f64,
    /// A pure ACK repeated more than this many times in a row by both sides at once is
    /// an ACK storm.
    pub max_ack: u64,
    /// More than this many consecutive zero-window advertisements by one side is
    /// buffer exhaustion (5 take a stalled peer at least 6 s of persist-timer back-off;
    /// benign flows in the public corpora show runs of 1).
    pub max_zero_windows: u64,
    /// More than this many unused connections from one source to one destination in a
    /// period is a DoS (seed: 10).
    pub unused_dos: u64,
    /// An established connection with no payload either way that lasted at least this
    /// many seconds, or timed out, is unused (connect-and-idle).
    pub unused_idle: f64,
    /// More findings than this in one summary are not listed port by port (seed: 300).
    pub too_many_ports: u64,
    /// A port hit more than this many times in one summary means a client retrying a
    /// closed server, not a scan (seed: 2).
    pub retry_hits: u64,
    /// Distinct ports a scan pattern needs in one summary before it is reported.
    pub min_ports: MinPorts,
}

impl Default for TcpFilterConfig {
    fn default() -> Self {
        TcpFilterConfig {
            unchecked_ports: Vec::new(),
            summary_period: 120.0,
            lateness: 360.0,
            max_ack: 10,
            max_zero_windows: 4,
            unused_dos: 10,
            unused_idle: 5.0,
            too_many_ports: 300,
            retry_hits: 2,
            min_ports: MinPorts::default(),
        }
    }
}

/// Distinct destination ports per scan pattern before a summary is reported. Crafted
/// flag combinations (XMAS, NULL) are never benign; patterns that broken or closed
/// connections also produce need a few ports.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MinPorts {
    /// FIN+URG+PSH, then RST.
    pub xmas_scan: u64,
    /// No flags, then RST.
    pub null_scan: u64,
    /// FIN, then RST.
    pub fin_scan: u64,
    /// ACK, then RST.
    pub ack_scan: u64,
    /// SYN, then RST (closed port).
    pub half_open_closed: u64,
    /// SYN, SYN/ACK, then RST or FIN (open port).
    pub half_open_open: u64,
    /// SYN, SYN/ACK, then nothing.
    pub synack_unanswered: u64,
    /// SYN(s) and no answer at all.
    pub syn_no_answer: u64,
    /// SYN, SYN/ACK, ACK, then RST with no data (a connect() scan on an open port).
    pub connect_scan: u64,
    /// Established, no data, idle (below the DoS count).
    pub unused_connection: u64,
}

impl Default for MinPorts {
    fn default() -> Self {
        MinPorts {
            xmas_scan: 1,
            null_scan: 1,
            fin_scan: 3,
            ack_scan: 3,
            half_open_closed: 5,
            half_open_open: 3,
            synack_unanswered: 5,
            syn_no_answer: 5,
            connect_scan: 5,
            unused_connection: 3,
        }
    }
}

impl MinPorts {
    /// The minimum for a pattern rule.
    pub fn of(&self, rule: &str) -> u64 {
        match rule {
            "xmas_scan" => self.xmas_scan,
            "null_scan" => self.null_scan,
            "fin_scan" => self.fin_scan,
            "ack_scan" => self.ack_scan,
            "half_open_closed" => self.half_open_closed,
            "half_open_open" => self.half_open_open,
            "synack_unanswered" => self.synack_unanswered,
            "syn_no_answer" => self.syn_no_answer,
            "connect_scan" => self.connect_scan,
            "unused_connection" => self.unused_connection,
            _ => 1,
        }
    }
}

/// Floods per destination host.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    /// Window length in seconds (windows are aligned to multiples of it).
    pub window: f64,
    /// Connection attempts that never completed a handshake (SYN only, refused or
    /// unanswered SYN/ACK) to one port of one host in one window, or from at least
    /// half this many sources to the host, at which `syn_flood` fires (a scan touches
    /// each port once or twice from one source, so it stays below).
    pub syn_attempts: u64,
    /// Flows of any kind to one host in one window at which `flow_flood` fires.
    pub flows: u64,
    /// Destinations tracked at once; beyond it new ones are counted as untracked.
    pub max_destinations: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            window: 10.0,
            syn_attempts: 200,
            flows: 5000,
            max_destinations: 100_000,
        }
    }
}

/// Port scans from flows alone.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortScanConfig {
    /// Window length in seconds.
    pub window: f64,
    /// Distinct (destination, port) pairs without a reply from one source in one
    /// window at which `port_scan` fires.
    pub unanswered: u64,
    /// Sources tracked at once.
    pub max_sources: usize,
}

impl Default for PortScanConfig {
    fn default() -> Self {
        PortScanConfig {
            window: 60.0,
            unanswered: 25,
            max_sources: 100_000,
        }
    }
}

/// Per-connection thresholds (0 switches one off).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// Seconds a connection may last (tcpstatflow `-y`).
    pub duration: f64,
    /// Bytes (both directions, payload) a connection may carry.
    pub bytes: u64,
    /// Packets (both directions) a connection may carry.
    pub packets: u64,
    /// Only these protocols (`tcp`, `udp`, `icmp`); empty = all.
    pub protocols: Vec<String>,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        ThresholdsConfig {
            duration: 3600.0,
            bytes: 1 << 30,
            packets: 1_000_000,
            protocols: Vec::new(),
        }
    }
}

/// HTTP and proxy checks.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Ports a CONNECT may ask for.
    pub connect_ports: Vec<u16>,
    /// Ports where HTTP is expected (web servers and proxies).
    pub http_ports: Vec<u16>,
    /// Ports where TLS is expected.
    pub tls_ports: Vec<u16>,
    /// Ports where SSH is expected.
    pub ssh_ports: Vec<u16>,
    /// Methods to accept besides RFC 9110's, PATCH and WebDAV's.
    pub methods: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_ports: vec![443],
            http_ports: vec![80, 3128, 8000, 8008, 8080, 8888],
            tls_ports: vec![443, 8443],
            ssh_ports: vec![22],
            methods: Vec::new(),
        }
    }
}

/// DNS tunnels: per client and registered domain, over a window.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsTunnelConfig {
    /// Window length in seconds.
    pub window: f64,
    /// Queries under one domain from one client in a window before it is judged.
    pub min_queries: u64,
    /// Mean query-name length (characters) that counts as long.
    pub mean_name_len: f64,
    /// Mean subdomain entropy (bits per character) that counts as random.
    pub entropy: f64,
    /// Share of TXT/NULL/CNAME/MX/ANY/private queries that counts as data-carrying.
    pub unusual_share: f64,
    /// Share of distinct names that counts as mostly unique.
    pub distinct_share: f64,
    /// How many of those four must agree.
    pub min_agreeing: usize,
    /// (window, client, domain) keys tracked at once.
    pub max_keys: usize,
}

impl Default for DnsTunnelConfig {
    fn default() -> Self {
        DnsTunnelConfig {
            window: 300.0,
            min_queries: 50,
            mean_name_len: 40.0,
            entropy: 3.5,
            unusual_share: 0.5,
            distinct_share: 0.8,
            min_agreeing: 3,
            max_keys: 100_000,
        }
    }
}

/// ICMP tunnels: echo flows whose requests and replies do not mirror each other.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpTunnelConfig {
    /// Packets (both directions) before a flow is judged.
    pub min_packets: u64,
    /// Relative gap between the mean request and mean reply payload that counts as
    /// asymmetric (a reply mirrors its request: 0 for ping).
    pub asymmetry: f64,
    /// Payload-size standard deviation (bytes) that counts as varying (ping: 0).
    pub size_stddev: f64,
    /// Payload size (bytes) that counts as large (ping: 56, Windows: 32).
    pub large: f64,
    /// Mean entropy (bits per byte, of successive byte differences) of the echo
    /// payloads of 256+ bytes that counts as random data (ping's patterns: near 0;
    /// random: about 7.2 at 256 bytes, 7.8 at 1 KiB).
    pub entropy: f64,
}

impl Default for IcmpTunnelConfig {
    fn default() -> Self {
        IcmpTunnelConfig {
            min_packets: 10,
            asymmetry: 0.25,
            size_stddev: 8.0,
            large: 512.0,
            entropy: 6.5,
        }
    }
}

/// DNS tunnels from flow metrics: packets and seconds per DNS flow above the profile's
/// mean + k·σ, both.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsFlowConfig {
    /// Standard deviations above the mean that make a metric anomalous (seed 002: k).
    pub k: f64,
    /// The prior profile: packets per DNS flow, mean and standard deviation...
    pub prior_packets: f64,
    /// ...
    pub prior_packets_sd: f64,
    /// ...seconds per DNS flow, mean and standard deviation...
    pub prior_seconds: f64,
    /// ...
    pub prior_seconds_sd: f64,
    /// ...and how many flows the prior weighs against the learnt ones.
    pub prior_flows: f64,
    /// Fewer packets than this are a retried lookup, not a tunnel.
    pub min_packets: u64,
    /// Resolvers whose port 443 carries DNS over HTTPS.
    pub doh_servers: Vec<std::net::IpAddr>,
}

impl Default for DnsFlowConfig {
    fn default() -> Self {
        DnsFlowConfig {
            k: 3.0,
            prior_packets: 2.0,
            prior_packets_sd: 2.0,
            prior_seconds: 0.1,
            prior_seconds_sd: 0.5,
            prior_flows: 30.0,
            min_packets: 10,
            doh_servers: crate::dns_flow::default_doh_servers(),
        }
    }
}

/// Uploads out of proportion.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Bytes the client must have sent.
    pub min_bytes: u64,
    /// Producer/consumer ratio `(out − in) / (out + in)` at or above which it counts.
    pub min_pcr: f64,
    /// Per client → server:port pair: windows of this many seconds...
    pub pair_window: f64,
    /// ...in which the pair's flows together sent at least this many bytes.
    pub pair_min_bytes: u64,
    /// Most (pair, window) keys kept.
    pub max_pairs: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            min_bytes: 1 << 20,
            min_pcr: 0.8,
            pair_window: 3600.0,
            pair_min_bytes: 10 << 20,
            max_pairs: 100_000,
        }
    }
}

/// Interactive sessions (seed 001's keystrokes; seed 000's "small but frequent").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InteractiveConfig {
    /// Keystrokes one side must have typed before a flow is interactive...
    pub min_keystrokes: u64,
    /// ...and their least share of that side's bursts (a typist's side sends little but
    /// keys; chatty protocols whose small messages sometimes look like typing do not).
    pub key_share: f64,
    /// Without echo (a one-way typed TCP stream, such as an HTTP tunnel's upload
    /// request): small bursts at a typing pace needed...
    pub min_typed: u64,
    /// ...their least share of that side's bursts...
    pub typed_share: f64,
    /// ...and the other side sent at most this share as many bursts (one-way).
    pub one_way_share: f64,
    /// A line-mode shell: the listener (responder, speaking first) sent at least this
    /// many bursts...
    pub min_commands: u64,
    /// ...of which at least this share were small (command lines, not data).
    pub command_share: f64,
}

impl Default for InteractiveConfig {
    fn default() -> Self {
        InteractiveConfig {
            min_keystrokes: 10,
            key_share: 0.3,
            min_typed: 20,
            typed_share: 0.5,
            one_way_share: 0.1,
            min_commands: 5,
            command_share: 0.8,
        }
    }
}

/// Beacons (RITA v5's score plus a jitter- and sleep-proof period term), fetches too
/// often, long connections.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconConfig {
    /// Connections a series needs before it is scored (RITA: 4).
    pub min_connections: u64,
    /// A median interval shorter than this (seconds) is a burst, not a beacon.
    pub min_interval: f64,
    /// A series scoring at least this is a beacon: low while it spans less than
    /// `medium_span` seconds, medium after...
    pub min_score: f64,
    /// See `min_score`.
    pub medium_span: f64,
    /// ...and at least this with at least `high_connections` connections, high.
    pub high_score: f64,
    /// See `high_score`.
    pub high_connections: u64,
    /// `period`: intervals within this fraction of the median interval count as on time.
    pub jitter: f64,
    /// Intervals longer than this many median intervals are sleeps, set aside.
    pub sleep_factor: f64,
    /// Weights of the sub-scores (normalised by their sum).
    pub weights: BeaconWeights,
    /// `repeated_fetch`: one client fetching one URL this many times...
    pub min_fetches: u64,
    /// ...within this many seconds.
    pub fetch_window: f64,
    /// Most series (and client/server pairs for long connections) kept.
    pub max_series: usize,
    /// Most connections kept per series (the latest).
    pub max_points: usize,
}

/// Weights of the beacon sub-scores.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconWeights {
    /// Intervals: Bowley skew and MAD (RITA's `ts`).
    pub ts: f64,
    /// Client bytes per connection: skew and MAD (RITA's `ds`).
    pub ds: f64,
    /// Connections spread over the window (RITA's histogram score).
    pub hist: f64,
    /// Coverage of the window (RITA's duration score).
    pub dur: f64,
    /// Share of intervals on time within the jitter, sleeps set aside.
    pub period: f64,
}

impl Default for BeaconWeights {
    fn default() -> Self {
        BeaconWeights {
            ts: 0.25,
            ds: 0.15,
            hist: 0.15,
            dur: 0.2,
            period: 0.25,
        }
    }
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            min_connections: 10,
            min_interval: 1.0,
            min_score: 0.85,
            medium_span: 600.0,
            high_score: 0.95,
            high_connections: 30,
            jitter: 0.3,
            sleep_factor: 3.0,
            weights: BeaconWeights::default(),
            min_fetches: 20,
            fetch_window: 60.0,
            max_series: 100_000,
            max_points: 256,
        }
    }
}

/// Stepping stones (Zhang & Paxson's ON-period correlation).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SteppingStoneConfig {
    /// ON periods of the two sessions match when they start this close (seconds).
    pub delta: f64,
    /// Matches needed...
    pub min_matches: usize,
    /// ...and their least share of the shorter session's ON periods.
    pub min_share: f64,
    /// Sessions are kept this long after last seen (seconds).
    pub window: f64,
    /// Most sessions kept.
    pub max_sessions: usize,
}

impl Default for SteppingStoneConfig {
    fn default() -> Self {
        SteppingStoneConfig {
            delta: 0.08,
            min_matches: 4,
            min_share: 0.6,
            window: 3600.0,
            max_sessions: 4096,
        }
    }
}

/// Content signatures: the shipped rules (`crates/detect/signatures.toml`) and rule
/// files in the same format (`docs/specs/signatures.md`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignaturesConfig {
    /// Use the shipped rules.
    pub builtin: bool,
    /// More rule files (relative paths are relative to the configuration file).
    pub files: Vec<String>,
    /// The rules in force: the shipped ones (if `builtin`) then each file's, in order.
    #[serde(skip)]
    pub rules: Vec<SignatureRule>,
}

/// The shipped signatures.
pub const BUILTIN_SIGNATURES: &str = include_str!("../signatures.toml");

/// A rule file: `[[signature]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    signature: Vec<SignatureRule>,
}

/// Reads rule-file text (`origin` names it in errors) and checks every rule.
pub fn parse_signatures(text: &str, origin: &str) -> Result<Vec<SignatureRule>, ConfigError> {
    let f: RuleFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        path: origin.to_string(),
        line: line_of(text, e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_string(),
    })?;
    for r in &f.signature {
        if let Err(why) = r.bytes() {
            let at = text.find(&format!("\"{}\"", r.name)).unwrap_or(0);
            return Err(ConfigError::Invalid {
                path: origin.to_string(),
                line: line_of(text, at),
                message: format!("signature {}: {why}", r.name),
            });
        }
    }
    Ok(f.signature)
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

impl Default for SignaturesConfig {
    fn default() -> Self {
        SignaturesConfig {
            builtin: true,
            files: Vec::new(),
            // The shipped file is checked by a test; it cannot fail here.
            rules: parse_signatures(BUILTIN_SIGNATURES, "signatures.toml").unwrap_or_default(),
        }
    }
}

/// The seed's colour lists.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListsConfig {
    /// Always reported: alerts matching are kept whatever else says, raised to at least
    /// medium, and every flow matching raises a `black_list` alert.
    pub black: Vec<ListEntry>,
    /// Never reported: alerts matching are dropped.
    pub white: Vec<ListEntry>,
    /// Reported only at or above the entry's `min_severity` (default high).
    pub red: Vec<ListEntry>,
}

/// One list entry: every field given must match.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// The client / source (`orig_h`) is in this network.
    pub client: Option<Net>,
    /// The server / target (`resp_h`) is in this network.
    pub server: Option<Net>,
    /// Either side is in this network.
    pub net: Option<Net>,
    /// The server port.
    pub port: Option<u16>,
    /// The rule (`detector`).
    pub detector: Option<String>,
    /// Red lists: the lowest severity still reported.
    pub min_severity: Option<Severity>,
    /// Why the entry exists (shown in alerts).
    pub note: Option<String>,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value.
    #[error("config file {path}, line {line}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl Config {
    /// Reads `path`; a missing file gives the documented defaults (`Ok(None)` tells the
    /// caller it was missing).
    pub fn load(path: &Path) -> Result<Option<Config>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut c = Config::parse(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for f in c.signatures.files.clone() {
            let file = dir.join(&f);
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.display().to_string(),
                source,
            })?;
            let more = parse_signatures(&text, &file.display().to_string())?;
            c.signatures.rules.extend(more);
        }
        c.check_signatures(&path.display().to_string())?;
        Ok(Some(c))
    }

    /// Rule names unique and few enough for the flow table.
    fn check_signatures(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            line: 1,
            message,
        };
        let rules = &self.signatures.rules;
        if rules.len() > 64 {
            return Err(bad(format!(
                "signatures: {} rules, at most 64",
                rules.len()
            )));
        }
        let mut names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("signatures: the name {} is used twice", w[0])));
        }
        Ok(())
    }

    /// Parses TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            ConfigError::Invalid {
                path: origin.to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        c.check(text, origin)?;
        if !c.signatures.builtin {
            c.signatures.rules.clear();
        }
        Ok(c)
    }

    /// Values that parse but make no sense.
    fn check(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| {
            let name = key.rsplit('.').next().unwrap_or(key);
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(name))
                .map_or(1, |i| i + 1);
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                line,
                message: format!("{key}: {why}"),
            })
        };
        for (key, v) in [
            ("tcp_filter.summary_period", self.tcp_filter.summary_period),
            ("flood.window", self.flood.window),
            ("port_scan.window", self.port_scan.window),
            ("dns_tunnel.window", self.dns_tunnel.window),
            ("beacon.fetch_window", self.beacon.fetch_window),
            ("upload.pair_window", self.upload.pair_window),
            ("beacon.sleep_factor", self.beacon.sleep_factor),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, "must be a positive number of seconds");
            }
        }
        let b = &self.baseline;
        if b.slot_seconds == 0 || 86_400 % b.slot_seconds != 0 {
            return bad(
                "baseline.slot_seconds",
                "must divide a day (3600, 900, 14400, …)",
            );
        }
        if !(b.adapt > 0.0 && b.adapt <= 1.0) {
            return bad("baseline.adapt", "must be above 0 and at most 1");
        }
        if !(b.guess_share > 0.0 && b.guess_share < 1.0) {
            return bad("baseline.guess_share", "must be between 0 and 1");
        }
        if b.agree == 0 || b.agree > crate::baseline::METRICS.len() {
            return bad("baseline.agree", "must be 1 to 7 metrics");
        }
        for (key, v) in [
            ("baseline.k", b.k),
            ("baseline.min_history", b.min_history),
            ("baseline.lateness", b.lateness),
            ("baseline.burst_window", b.burst_window),
            ("baseline.medium_margin", b.medium_margin),
            ("baseline.high_margin", b.high_margin),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, "must be zero or more");
            }
        }
        if b.floors.iter().any(|f| !(f.is_finite() && *f >= 0.0)) {
            return bad("baseline.floors", "must be zero or more");
        }
        let k = &self.keystrokes;
        for (key, v) in [
            ("keystrokes.coalesce_ms", k.coalesce_ms),
            ("keystrokes.min_gap_ms", k.min_gap_ms),
            ("keystrokes.typed_max_gap_ms", k.typed_max_gap_ms),
            ("keystrokes.ratio_min", k.ratio_min),
            ("keystrokes.ratio_max", k.ratio_max),
            ("keystrokes.regular_pct", k.regular_pct),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, "must be zero or a positive number");
            }
        }
        for (key, lo, hi) in [
            ("keystrokes.key_min", k.key_min as f64, k.key_max as f64),
            ("keystrokes.echo_min", k.echo_min as f64, k.echo_max as f64),
            ("keystrokes.ratio_min", k.ratio_min, k.ratio_max),
        ] {
            if lo > hi {
                return bad(key, "must not be above its maximum");
            }
        }
        if !(self.tcp_filter.lateness.is_finite() && self.tcp_filter.lateness >= 0.0) {
            return bad("tcp_filter.lateness", "must be zero or more seconds");
        }
        for p in &self.thresholds.protocols {
            if !matches!(p.as_str(), "tcp" | "udp" | "icmp") {
                return bad("thresholds.protocols", "each must be tcp, udp or icmp");
            }
        }
        for r in &self.rules.disable {
            if !crate::RULES.iter().any(|(n, _)| n == r) {
                return bad(
                    "rules.disable",
                    &format!("unknown rule '{r}' (see docs/specs/detector.md)"),
                );
            }
        }
        Ok(())
    }

    /// True unless the rule is switched off.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.rules.disable.iter().any(|r| r == rule)
    }

    /// The names of the rules that run.
    pub fn enabled_rules(&self) -> Vec<&'static str> {
        crate::RULES
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| self.enabled(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_files_load_beside_the_config_and_bad_rules_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("tw-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("tw.toml");
        std::fs::write(&conf, "[signatures]\nfiles = [\"mine.toml\"]\n").unwrap();
        std::fs::write(
            dir.join("mine.toml"),
            "[[signature]]\nname = \"beacon_ua\"\npattern = \"Mozilla/4.0 (compatible; MSIE 6.0;\"\nnocase = true\nmessage = \"an old implant's user agent\"\n",
        )
        .unwrap();
        let c = Config::load(&conf).unwrap().unwrap();
        let n = Config::default().signatures.rules.len();
        assert_eq!(c.signatures.rules.len(), n + 1);
        assert_eq!(c.signatures.rules[n].name, "beacon_ua");
        // A bad rule: the file and the rule's line.
        std::fs::write(
            dir.join("mine.toml"),
            "\n[[signature]]\nname = \"odd\"\nhex = \"abc\"\nmessage = \"m\"\n",
        )
        .unwrap();
        let e = Config::load(&conf).unwrap_err().to_string();
        assert!(
            e.contains("mine.toml, line 3") && e.contains("odd number"),
            "{e}"
        );
        // A name used twice (the shipped ssh_banner again).
        std::fs::write(
            dir.join("mine.toml"),
            "[[signature]]\nname = \"ssh_banner\"\npattern = \"x\"\nmessage = \"m\"\n",
        )
        .unwrap();
        let e = Config::load(&conf).unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_empty_text_gives_defaults() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn config_unknown_key_is_an_error_naming_key_and_line() {
        let e = Config::parse("[tcp_filter]\nmax_ack = 5\nmax_acks = 6\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml, line 3"), "{e}");
        assert!(e.contains("max_acks"), "{e}");
    }

    #[test]
    fn config_wrong_type_names_the_line() {
        let e = Config::parse("[flood]\n\nsyn_attempts = \"many\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn config_unknown_rule_and_bad_window_are_errors() {
        let e = Config::parse("[rules]\ndisable = [\"nope\"]\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("nope"), "{e}");
        let e = Config::parse("[flood]\nwindow = 0\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("flood.window"), "{e}");
    }

    #[test]
    fn config_lists_parse_networks_and_severities() {
        let c = Config::parse(
            "[[lists.red]]\nclient = \"10.0.0.0/8\"\nmin_severity = \"high\"\n\
             [[lists.white]]\nserver = \"2001:db8::1\"\nport = 443\n",
            "c",
        )
        .unwrap();
        assert_eq!(c.lists.red[0].min_severity, Some(Severity::High));
        assert_eq!(c.lists.white[0].port, Some(443));
        let e = Config::parse("[[lists.black]]\nclient = \"10.0.0.0/33\"\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
