//! Record sinks of tunnelwatch: flow records as JSON lines (the documented schema of
//! `docs/specs/flow-record.md`), as a Zeek `conn.log` (TSV with Zeek's header, readable
//! by zat, RITA and zeek-cut), as a table for people, in the spirit of Argus' `ra`, and
//! as IPFIX biflow messages for flow collectors (`ipfix`, encoding only: the socket is
//! the caller's).
//!
//! The text sinks write to any `std::io::Write`. No sink reads a clock — the Zeek
//! header's open/close times and the IPFIX export time come from packet time — so
//! output is byte-identical across runs.
#![deny(missing_docs)]

pub mod ipfix;
pub mod jsonl;
pub mod table;
pub mod zeek;
