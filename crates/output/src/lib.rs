//! Record sinks of tunnelwatch: flow records as JSON lines (the documented schema of
//! `docs/specs/flow-record.md`), as a Zeek `conn.log` (TSV with Zeek's header, readable
//! by zat, RITA and zeek-cut) and as a table for people, in the spirit of Argus' `ra`.
//!
//! Sinks write to any `std::io::Write`; they never read a clock — the Zeek header's
//! open/close times come from packet time — so output is byte-identical across runs.
#![deny(missing_docs)]

pub mod jsonl;
pub mod table;
pub mod zeek;
