//! `tunnelwatch export --format csv|parquet --output FILE [FILTER]`: stored flows for
//! notebooks and columnar engines.
//!
//! The filter is compiled and the store opened before the output file is created, so a
//! bad filter or store leaves no file behind; the file is written under a temporary
//! name and renamed when complete.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tunnelwatch_store::filter::{compile, Target};
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::{export, Mode, Store};

/// Export format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// Parquet (Snappy), for DuckDB, ClickHouse, Spark, pandas.
    Parquet,
}

/// Arguments of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Filter (as for `flows`).
    #[arg(value_name = "FILTER")]
    filter: Vec<String>,
    /// The store.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Output file.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: PathBuf,
}

/// Runs `export`.
pub fn run(a: ExportArgs) -> Result<ExitCode> {
    let q = FlowQuery {
        filter: crate::flows::filter_text(&a.filter),
        limit: None,
        final_only: false,
    };
    compile(&q.filter, Target::Flows)
        .map_err(|e| anyhow::anyhow!("{e}, in filter \"{}\"", q.filter))?;
    let store = Store::open(&a.db, Mode::ReadOnly)?;
    let mut tmp = a.output.clone().into_os_string();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(f);
    let res = match a.format {
        Format::Csv => export::write_csv(&store, &q, &mut w),
        Format::Parquet => export::write_parquet(&store, &q, &mut w),
    };
    drop(w);
    match res {
        Ok(n) => {
            std::fs::rename(&tmp, &a.output).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), a.output.display())
            })?;
            eprintln!("tunnelwatch export: {n} flows to {}", a.output.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.into())
        }
    }
}
