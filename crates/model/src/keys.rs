//! The parameters of keystroke detection (Argus' SSH keystroke algorithm, seed 001,
//! recalibrated for today's tools). The flow table applies them per packet and writes
//! the counts on the record; the `[keystrokes]` section of the configuration sets them.
//! Why each default is what it is: `docs/specs/flow-record.md`, "Keystrokes".

use serde::{Deserialize, Serialize};

/// How the flow table tells typed keys from other traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeystrokeParams {
    /// Payload packets of one side closer together than this (ms) form one burst.
    pub coalesce_ms: f64,
    /// Smallest burst that can be a key (bytes). Argus: 32 (shipped), 48 (paper).
    pub key_min: u32,
    /// Largest burst that can be a key. Argus: 128.
    pub key_max: u32,
    /// Smallest echo (bytes). Argus: 24.
    pub echo_min: u32,
    /// Largest echo. Argus: 256.
    pub echo_max: u32,
    /// An echo differs from its key by at most this many bytes (a pty echoes the byte
    /// typed, SSH and TLS wrap both the same way; request/response protocols — FTP,
    /// S7comm, Modbus — answer with messages of other sizes).
    pub echo_slack: u32,
    /// The echo is one of the other side's next this-many bursts. Argus: 3.
    pub echo_within: u32,
    /// Smallest gap between two keys of one typist (ms). Argus: 50.
    pub min_gap_ms: f64,
    /// Largest gap between two small bursts that still counts as typing rhythm for the
    /// one-way `typed` count (ms).
    pub typed_max_gap_ms: f64,
    /// The typist's gap over the echoes' gap must lie in `[ratio_min, ratio_max]`.
    /// Argus: 0.816–1.122.
    pub ratio_min: f64,
    /// See `ratio_min`.
    pub ratio_max: f64,
    /// At most this many of the typist's bursts between two keys of one run. Argus: 5
    /// (shipped), 3 (paper).
    pub max_run_gap: u32,
    /// Packets of the flow before keys count (Argus: 22, the SSH handshake).
    pub skip_packets: u32,
    /// A gap within this percentage of the moving average of the gaps before it is a
    /// machine's clock (ping, heartbeats, polling), not a person: such a key or small
    /// burst does not count.
    pub regular_pct: f64,
    /// Keys (and typed bursts) whose gaps have a coefficient of variation under this are
    /// not reported: a clock with jitter, such as adaptive ping, not a person.
    pub min_cv: f64,
    /// On flows known to be SSH, keys and echoes must be a multiple of 4 bytes (SSH
    /// pads its packets; Argus applies this to every flow it watches).
    pub ssh_mod4: bool,
}

impl Default for KeystrokeParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl KeystrokeParams {
    /// The documented defaults.
    pub const DEFAULT: KeystrokeParams = KeystrokeParams {
        coalesce_ms: 2.0,
        key_min: 1,
        key_max: 128,
        echo_min: 1,
        echo_max: 256,
        echo_slack: 8,
        echo_within: 3,
        min_gap_ms: 50.0,
        typed_max_gap_ms: 1000.0,
        ratio_min: 0.816,
        ratio_max: 1.122,
        max_run_gap: 5,
        skip_packets: 22,
        regular_pct: 5.0,
        min_cv: 0.15,
        ssh_mod4: true,
    };
}
