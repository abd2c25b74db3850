//! Light application-layer facts from the first payload bytes of a flow direction.
//!
//! Each submodule owns one protocol and exposes pure functions over a byte slice: no
//! state, no clock, no I/O. They recognise a protocol from the first bytes the flow
//! table has buffered (a segment or a few) and pull out the handful of facts the
//! detectors use: the HTTP request line, `Host` and `User-Agent`; the TLS ClientHello's
//! SNI, ALPN, version and JA3/JA4 fingerprints and the ServerHello's choice; the SSH
//! identification string; the DNS question and answer count.
//!
//! Guarantees, for every function here: no input panics (each has a property test over
//! arbitrary bytes), input cut short by the end of a segment or the snap length is
//! normal and yields what was complete, and anything that does not look like the
//! protocol is `None`, not an error: deciding what a miss means is the caller's
//! business. Allocation is limited to the strings and lists of the result.
//!
//! What is left to others: choosing which parser to try on which flow (ports, payload
//! sniffing), buffering segments (see [`tls::handshake_bytes_needed`]), TCP reassembly,
//! and storing the facts in the flow record.

pub mod dns;
pub mod http;
pub mod ssh;
pub mod tls;
