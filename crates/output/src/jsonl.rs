//! JSON lines: one flow record per line, fields as in `docs/specs/flow-record.md`.

use std::io::{self, Write};

use tunnelwatch_model::FlowRecord;

/// Writes one record as a JSON line.
pub fn write_record(out: &mut impl Write, rec: &FlowRecord) -> io::Result<()> {
    serde_json::to_writer(&mut *out, rec).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_json() {
        let rec = crate::zeek::tests::sample();
        let mut buf = Vec::new();
        write_record(&mut buf, &rec).unwrap();
        assert!(buf.ends_with(b"\n"));
        let back: FlowRecord = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, rec);
    }
}
