//! Firewall logs as a flow source (seed 003): ipmon and Linux netfilter `LOG` lines are
//! parsed into events ([`parse`]) and correlated into the same flow records packets give
//! ([`correlate`]), so the detectors that read records — scans, floods, thresholds,
//! beacons, DNS from flow metrics — run on them unchanged. Lines no parser understands
//! are returned with the reason, for the caller to count and keep, never dropped
//! silently. Sans-IO and deterministic: time comes from the lines.
#![deny(missing_docs)]

pub mod correlate;
pub mod parse;

pub use correlate::{LogFlowConfig, LogFlows};
pub use parse::{parse_line, Format, LogEvent, Unparsed};
