//! Flow exports as a flow source (issue 8, seed 002): NetFlow v5, v9 and IPFIX datagrams
//! are decoded with templates kept per exporter ([`wire`]) into one-way records, and the
//! one-way records of a conversation are joined into the same bidirectional flow
//! records packets give ([`join`]), so the detectors that read records run on them
//! unchanged. Sans-IO and deterministic: the caller passes each datagram with its sender
//! and arrival time.
#![deny(missing_docs)]

pub mod join;
pub mod wire;

pub use join::{JoinConfig, Joiner};
pub use wire::{Decoder, Limits, SideDynamics, UniFlow, WireError, WireStats};
