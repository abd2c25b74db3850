//! `tunnelwatch alerts [FILTER] [--min-severity LEVEL]`: stored alerts, as JSON lines or
//! one line each.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tunnelwatch_store::filter::{compile, Target};
use tunnelwatch_store::{Mode, Severity, Store};

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One readable line per alert.
    Table,
    /// JSON lines, the alert schema.
    Json,
}

/// Arguments of `alerts`.
#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// Filter (host, net, src/dst host, detector, category, severity, score, uid…).
    #[arg(value_name = "FILTER")]
    filter: Vec<String>,
    /// The store.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    db: PathBuf,
    /// Only alerts at or above this severity (low, medium, high).
    #[arg(long, value_name = "LEVEL", default_value = "low", value_parser = parse_severity)]
    min_severity: Severity,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// At most N alerts.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

/// Runs `alerts`.
pub fn run(a: AlertsArgs) -> Result<ExitCode> {
    let filter = crate::flows::filter_text(&a.filter);
    compile(&filter, Target::Alerts).map_err(|e| anyhow::anyhow!("{e}, in filter \"{filter}\""))?;
    let min = a.min_severity;
    let store = Store::open(&a.db, Mode::ReadOnly)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut failed: Option<io::Error> = None;
    store.alerts(&filter, min, a.limit, |al| {
        let res = match a.format {
            Format::Json => serde_json::to_writer(&mut out, &al)
                .map_err(io::Error::other)
                .and_then(|_| out.write_all(b"\n")),
            Format::Table => writeln!(
                out,
                "{} {:<8} {:<16} {:<14} {} -> {} {} (score {:.2}; uids {})",
                al.ts,
                al.severity.as_str(),
                al.detector,
                al.category,
                al.orig_h.map_or("-".into(), |h| h.to_string()),
                al.resp_h.map_or("-".into(), |h| h.to_string()),
                al.message,
                al.score,
                al.uids.join(",")
            ),
        };
        match res {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed.map_or_else(|| out.flush(), Err) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Parses `low`, `medium` or `high`.
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(&s.to_ascii_lowercase())
        .ok_or_else(|| format!("unknown severity '{s}' (expected low, medium or high)"))
}
