//! Export of stored flows for notebooks and other engines: CSV (RFC 4180) or Parquet of
//! the core flow fields, one row per record, in first-packet order.
//!
//! The columns are the flat fields of `docs/specs/flow-record.md` ([`COLUMNS`]); the
//! nested dynamics and application facts stay in the store and in `flows --format
//! json`. Parquet is written with the `parquet` crate's column writers (no Arrow, whose
//! build costs minutes): strings as UTF-8 `BYTE_ARRAY`, times as
//! `TIMESTAMP(MICROS, UTC)`, ports as unsigned 16-bit integers, counters as `INT64`,
//! Snappy-compressed, in row groups of [`ROW_GROUP`] rows — what DuckDB, ClickHouse,
//! Spark and pandas read directly.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::parser::parse_message_type;
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
    let n = store.flows(q, |r| match writeln!(out, "{}", csv_row(&r)) {
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

/// Rows per Parquet row group.
pub const ROW_GROUP: usize = 65_536;

/// The Parquet schema of [`COLUMNS`].
const PARQUET_SCHEMA: &str = "message flow {
    required binary uid (STRING);
    required binary community_id (STRING);
    required int64 ts (TIMESTAMP(MICROS,true));
    required int64 last_ts (TIMESTAMP(MICROS,true));
    required double duration;
    required binary proto (STRING);
    required binary orig_h (STRING);
    required int32 orig_p (INTEGER(16,false));
    required binary resp_h (STRING);
    required int32 resp_p (INTEGER(16,false));
    optional binary service (STRING);
    required int64 orig_pkts;
    required int64 resp_pkts;
    required int64 orig_bytes;
    required int64 resp_bytes;
    required int64 orig_ip_bytes;
    required int64 resp_ip_bytes;
    required binary conn_state (STRING);
    required binary history (STRING);
    required binary cause (STRING);
    required int64 missed_bytes;
}";

/// One row group being gathered, column by column.
#[derive(Default)]
struct Columns {
    /// uid, community_id, proto, orig_h, resp_h, conn_state, history, cause.
    text: [Vec<ByteArray>; 8],
    service: Vec<ByteArray>,
    service_def: Vec<i16>,
    times: [Vec<i64>; 2],
    duration: Vec<f64>,
    ports: [Vec<i32>; 2],
    counts: [Vec<i64>; 7],
}

impl Columns {
    fn push(&mut self, r: &FlowRecord) {
        let b = |s: &str| ByteArray::from(s.as_bytes().to_vec());
        let text = [
            b(&r.uid),
            b(&r.community_id),
            b(&r.proto),
            b(&r.orig_h.to_string()),
            b(&r.resp_h.to_string()),
            b(r.conn_state.as_str()),
            b(&r.history),
            b(r.cause.as_str()),
        ];
        for (col, v) in self.text.iter_mut().zip(text) {
            col.push(v);
        }
        match &r.service {
            Some(s) => {
                self.service.push(b(s));
                self.service_def.push(1);
            }
            None => self.service_def.push(0),
        }
        self.times[0].push(r.ts.as_micros());
        self.times[1].push(r.last_ts.as_micros());
        self.duration.push(r.duration);
        self.ports[0].push(i32::from(r.orig_p));
        self.ports[1].push(i32::from(r.resp_p));
        let counts = [
            r.orig_pkts,
            r.resp_pkts,
            r.orig_bytes,
            r.resp_bytes,
            r.orig_ip_bytes,
            r.resp_ip_bytes,
            r.missed_bytes,
        ];
        for (col, v) in self.counts.iter_mut().zip(counts) {
            col.push(i64::try_from(v).unwrap_or(i64::MAX));
        }
    }

    fn len(&self) -> usize {
        self.duration.len()
    }

    /// Writes the gathered rows as one row group and empties the columns.
    fn write<W: Write + Send>(
        &mut self,
        w: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let mut rg = w.next_row_group()?;
        let mut i = 0;
        while let Some(mut col) = rg.next_column()? {
            write_column(&mut col, i, self)?;
            col.close()?;
            i += 1;
        }
        rg.close()?;
        *self = Columns::default();
        Ok(())
    }
}

/// Writes column `i` of [`PARQUET_SCHEMA`] from `c`.
fn write_column(
    col: &mut SerializedColumnWriter<'_>,
    i: usize,
    c: &Columns,
) -> parquet::errors::Result<()> {
    let text = |col: &mut SerializedColumnWriter<'_>, v: &[ByteArray]| {
        col.typed::<ByteArrayType>()
            .write_batch(v, None, None)
            .map(|_| ())
    };
    let int = |col: &mut SerializedColumnWriter<'_>, v: &[i64]| {
        col.typed::<Int64Type>()
            .write_batch(v, None, None)
            .map(|_| ())
    };
    match i {
        0 | 1 => text(col, &c.text[i]),
        2 => int(col, &c.times[0]),
        3 => int(col, &c.times[1]),
        4 => col
            .typed::<DoubleType>()
            .write_batch(&c.duration, None, None)
            .map(|_| ()),
        5 | 6 => text(col, &c.text[i - 3]),
        7 | 9 => col
            .typed::<Int32Type>()
            .write_batch(&c.ports[usize::from(i == 9)], None, None)
            .map(|_| ()),
        8 => text(col, &c.text[4]),
        10 => col
            .typed::<ByteArrayType>()
            .write_batch(&c.service, Some(&c.service_def), None)
            .map(|_| ()),
        11..=16 => int(col, &c.counts[i - 11]),
        17..=19 => text(col, &c.text[i - 12]),
        _ => int(col, &c.counts[6]),
    }
}

/// Writes the flows matching `q` as a Parquet file; returns the rows written.
pub fn write_parquet<W: Write + Send>(
    store: &Store,
    q: &FlowQuery,
    out: W,
) -> Result<u64, StoreError> {
    let bad = |e: parquet::errors::ParquetError| StoreError::Io {
        path: "export output".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let schema = Arc::new(parse_message_type(PARQUET_SCHEMA).map_err(bad)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("tunnelwatch {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut w = SerializedFileWriter::new(out, schema, props).map_err(bad)?;
    let mut cols = Columns::default();
    let mut failed = None;
    let n = store.flows(q, |r| {
        cols.push(&r);
        if cols.len() >= ROW_GROUP {
            if let Err(e) = cols.write(&mut w) {
                failed = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(bad(e));
    }
    if cols.len() > 0 {
        cols.write(&mut w).map_err(bad)?;
    }
    w.close().map_err(bad)?;
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
