//! The bidirectional flow table of tunnelwatch: decoded packets in, flow records out.
//!
//! [`FlowTable`] keys packets by a direction-free 5-tuple, keeps per-direction counters
//! and dynamics, tracks TCP exactly as Zeek does (so `conn_state` and `history` agree
//! with Zeek's `conn.log`), learns application facts from the first payloads, counts keystrokes, credits
//! ICMP errors to the flows they quote, and ends flows on close,
//! inactivity or memory pressure. It is sans-IO and deterministic: time comes from the
//! packets, and the same input gives the same records byte for byte.
#![deny(missing_docs)]

pub mod app;
pub mod config;
pub mod history;
pub mod key;
pub mod keys;
pub mod sigs;
mod slab;
pub mod stats;
pub mod table;
pub mod tcp;
mod timers;
pub mod unions;
pub mod watch;

pub use config::{ChecksumMode, FlowConfig};
pub use table::{Ended, FlowSink, FlowTable, Frame, LayerRef, TableStats};
