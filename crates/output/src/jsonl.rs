//! JSON lines: one flow record per line, fields as in `docs/specs/flow-record.md`.

use std::io::{self, Write};

use tunnelwatch_model::FlowRecord;

/// Writes one record as a JSON line. The line is built in `line` (cleared first, kept
/// for reuse) and written with one call, so a boxed or unbuffered `out` costs one
/// dynamic call per record rather than one per token.
pub fn write_record(out: &mut impl Write, line: &mut Vec<u8>, rec: &FlowRecord) -> io::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, rec).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_json() {
        let rec = crate::zeek::tests::sample();
        let mut buf = Vec::new();
        let mut line = b"stale".to_vec();
        write_record(&mut buf, &mut line, &rec).unwrap();
        assert_eq!(buf, line);
        assert!(buf.ends_with(b"\n"));
        let back: FlowRecord = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, rec);
    }
}
