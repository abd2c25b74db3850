//! Packet sources of tunnelwatch: capture files (pcap and pcapng, plain or gzip). The
//! only crate that performs I/O on captures; it hands out borrowed [`Packet`]s with
//! their link type, capture time and wire length, and [`CaptureError`]s that name the
//! file and byte offset of any damage.
#![deny(missing_docs)]

mod error;
mod file;

pub use error::CaptureError;
pub use file::{CaptureFile, Format, Packet, ReaderCounters, MAX_RECORD};
