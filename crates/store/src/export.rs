//! Export of stored flows for notebooks and other engines: CSV (RFC 4180) of the core
//! flow fields, one row per record, in first-packet order.
//!
//! The columns are the flat fields of `docs/specs/flow-record.md` ([`COLUMNS`]); the
//! nested dynamics and application facts stay in the store and in `flows --format
//! json`.

use std::io::Write;

use tunnelwatch_model::FlowRecord;

use crate::query::FlowQuery;
use crate::{Store, StoreError};

/// The exported columns, in order.
pub const COLUMNS: [&str; 21] = [
    "uid",
    "community_id",
    "ts",
    "last_ts",
    "duration",
    "proto",
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "service",
    "orig_pkts",
    "resp_pkts",
    "orig_bytes",
    "resp_bytes",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "conn_state",
    "history",
    "cause",
    "missed_bytes",
];

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One CSV line (without the newline) of a record.
pub fn csv_row(r: &FlowRecord) -> String {
    let vals: [String; 21] = [
        r.uid.clone(),
        r.community_id.clone(),
        r.ts.to_string(),
        r.last_ts.to_string(),
        format!("{:.6}", r.duration),
        r.proto.clone(),
        r.orig_h.to_string(),
        r.orig_p.to_string(),
        r.resp_h.to_string(),
        r.resp_p.to_string(),
        r.service.clone().unwrap_or_default(),
        r.orig_pkts.to_string(),
        r.resp_pkts.to_string(),
        r.orig_bytes.to_string(),
        r.resp_bytes.to_string(),
        r.orig_ip_bytes.to_string(),
        r.resp_ip_bytes.to_string(),
        r.conn_state.as_str().to_string(),
        r.history.clone(),
        r.cause.as_str().to_string(),
        r.missed_bytes.to_string(),
    ];
    let mut line = String::with_capacity(256);
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, v);
    }
    line
}

/// Writes the flows matching `q` as CSV with a header line; returns the rows written.
pub fn write_csv(store: &Store, q: &FlowQuery, out: &mut dyn Write) -> Result<u64, StoreError> {
    let io = |source| StoreError::Io {
        path: "export output".into(),
        source,
    };
    writeln!(out, "{}", COLUMNS.join(",")).map_err(io)?;
    let mut failed = None;
    let n = store.flows(q, |_, r| match writeln!(out, "{}", csv_row(&r)) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed {
        return Err(io(e));
    }
    out.flush().map_err(io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        let mut s = String::new();
        csv_field(&mut s, "http,ssl");
        s.push(',');
        csv_field(&mut s, "a\"b");
        s.push(',');
        csv_field(&mut s, "plain");
        assert_eq!(s, "\"http,ssl\",\"a\"\"b\",plain");
    }
}
