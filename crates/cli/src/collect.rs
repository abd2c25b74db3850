//! `tunnelwatch collect --log FILE|-`: firewall logs (ipmon, netfilter LOG) read to the
//! end, correlated into flow records (seed 003) and run through the same detectors as
//! packets. Every line no parser understands is counted and, with `--reject FILE`,
//! written there with its line number and the reason; nothing stops on a bad line.
//! Records and alerts go to the store as with `read` (the log file is the capture
//! identity, so collecting the same file twice does not duplicate flows).
//! NetFlow/IPFIX collection (`--netflow`) is not built yet (issue 8).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tunnelwatch_detect::Detection;
use tunnelwatch_logs::{parse_line, Format, LogFlowConfig, LogFlows};
use tunnelwatch_model::{Alert, FlowRecord, RecordSink};

use std::sync::mpsc::SyncSender;

use crate::alert_sink::AlertSink;
use crate::read::load_config;
use crate::sinks::{open_out, StoreBatch};
use crate::store_sink::StoreSink;

/// Log formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Decide per line.
    Auto,
    /// IPFilter's ipmon.
    Ipmon,
    /// Linux netfilter LOG target (iptables, nftables).
    Netfilter,
}

/// Arguments of `collect`.
#[derive(Args, Debug)]
pub struct CollectArgs {
    /// Firewall log to read to its end (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    log: String,
    /// The log's format.
    #[arg(long, value_enum, default_value = "auto")]
    format: LogFormat,
    /// Year of syslog stamps, which carry none (`Jul 26 04:04:32`).
    #[arg(long)]
    year: i32,
    /// Write lines that are not firewall log lines here (`LINE: reason: text`).
    #[arg(long, value_name = "FILE")]
    reject: Option<String>,
    /// Write flow records (JSON lines) here (`-` for standard output).
    #[arg(long, value_name = "FILE", default_value = "-")]
    flows: String,
    /// Write alerts (JSON lines) here (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    alerts: Option<String>,
    /// Detector settings (TOML), as for `read`.
    #[arg(
        long,
        value_name = "FILE",
        env = "TUNNELWATCH_CONFIG",
        default_value = "tunnelwatch.toml"
    )]
    config: PathBuf,
    /// Seconds a flow lingers after a FIN or RST line (seed 003: 30).
    #[arg(long, default_value_t = 30.0)]
    linger: f64,
    /// Seconds without a line after which a flow ends.
    #[arg(long, default_value_t = 300.0)]
    idle: f64,
    /// The store the flows are written to.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    db: PathBuf,
    /// Do not write to the store.
    #[arg(long = "no-store", env = "TUNNELWATCH_NO_STORE", value_parser = clap::builder::BoolishValueParser::new())]
    no_store: bool,
}

/// Records per batch handed to the store.
const STORE_BATCH: usize = 4096;

/// Records written as JSON lines and through the detectors.
struct Out {
    flows: Box<dyn Write + Send>,
    line: Vec<u8>,
    alerts: AlertSink,
    raised: Vec<Alert>,
    records: u64,
    error: Option<std::io::Error>,
    /// The store's queue, and what waits for the next batch (alerts after their flows).
    store: Option<SyncSender<StoreBatch>>,
    flows_batch: Vec<FlowRecord>,
    alerts_batch: Vec<Alert>,
}

impl Out {
    fn send_to_store(&mut self) {
        if let Some(tx) = &self.store {
            if !self.flows_batch.is_empty() {
                let _ = tx.send(StoreBatch::Flows(std::mem::take(&mut self.flows_batch)));
            }
            if !self.alerts_batch.is_empty() {
                let _ = tx.send(StoreBatch::Alerts(std::mem::take(&mut self.alerts_batch)));
            }
        }
    }
}

impl RecordSink for Out {
    fn emit(&mut self, r: FlowRecord) {
        self.records += 1;
        if self.error.is_none() {
            if let Err(e) =
                tunnelwatch_output::jsonl::write_record(&mut self.flows, &mut self.line, &r)
            {
                self.error = Some(e);
            }
        }
        self.alerts.record(&r, &mut self.raised);
        if self.store.is_some() {
            self.alerts_batch.append(&mut self.raised);
            self.flows_batch.push(r);
            if self.flows_batch.len() >= STORE_BATCH {
                self.send_to_store();
            }
        }
        self.raised.clear();
    }
}

/// Runs `collect`.
pub fn run(args: CollectArgs) -> Result<ExitCode> {
    if args.alerts.as_deref() == Some("-") && args.flows == "-" {
        anyhow::bail!("--alerts - and --flows - both want standard output: send one to a file");
    }
    if !(args.linger.is_finite() && args.linger >= 0.0 && args.idle.is_finite() && args.idle > 0.0)
    {
        anyhow::bail!("--linger must be zero or more seconds and --idle more than zero");
    }
    let config = load_config(&args.config)?;
    // The store first: a locked, corrupt or too new store stops here, nothing written.
    let store = if args.no_store {
        None
    } else {
        Some(StoreSink::start(&args.db, &[PathBuf::from(&args.log)])?)
    };
    let input: Box<dyn BufRead> = if args.log == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(&args.log)
                .with_context(|| format!("cannot open log {}", args.log))?,
        ))
    };
    let mut reject = args.reject.as_deref().map(open_out).transpose()?;
    let format = match args.format {
        LogFormat::Auto => Format::Auto,
        LogFormat::Ipmon => Format::Ipmon,
        LogFormat::Netfilter => Format::Netfilter,
    };
    let mut out = Out {
        flows: open_out(&args.flows)?,
        line: Vec::with_capacity(2048),
        alerts: AlertSink::new(
            Detection::new(config),
            args.alerts.as_deref().map(open_out).transpose()?,
        ),
        raised: Vec::new(),
        records: 0,
        error: None,
        store: store.as_ref().map(StoreSink::sender),
        flows_batch: Vec::new(),
        alerts_batch: Vec::new(),
    };
    let mut table = LogFlows::new(LogFlowConfig {
        linger: args.linger,
        idle: args.idle,
    });
    let (mut lines, mut rejected) = (0u64, 0u64);
    for (n, line) in input.split(b'\n').enumerate() {
        let raw = line.with_context(|| format!("reading {} at line {}", args.log, n + 1))?;
        lines += 1;
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text, format, args.year) {
            Ok(e) => table.event(&e, &mut out),
            Err(why) => {
                rejected += 1;
                if let Some(r) = reject.as_mut() {
                    writeln!(r, "{}: {}: {}", n + 1, why.0, text)
                        .with_context(|| "writing the reject file")?;
                }
            }
        }
    }
    table.finish(&mut out);
    out.alerts.finish(&mut out.raised);
    if out.store.is_some() {
        out.alerts_batch.append(&mut out.raised);
        out.send_to_store();
        out.store = None;
    }
    out.flows.flush()?;
    if let Some(r) = reject.as_mut() {
        r.flush()?;
    }
    if let Some(e) = out.error.take() {
        return Err(e).context("writing flow records");
    }
    let report = out.alerts.report();
    if let Some(e) = report.error {
        return Err(e).context("writing alerts");
    }
    if let Some(store) = store {
        let (path, r, err) = store.finish();
        eprintln!(
            "collect: store {}: {} records written, {} already stored, {} alerts",
            path.display(),
            r.written,
            r.unchanged,
            r.alerts
        );
        if let Some(e) = err {
            return Err(e).context("writing to the store");
        }
    }
    let alerts: u64 = report.counts.values().sum();
    eprintln!(
        "collect: {} lines, {} flow records, {} alerts; {} lines not understood{}",
        lines,
        out.records,
        alerts,
        rejected,
        if rejected > 0 && args.reject.is_none() {
            " (--reject FILE keeps them)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
