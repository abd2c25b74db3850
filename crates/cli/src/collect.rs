//! `tunnelwatch collect`: flow sources without packets, through the same detectors.
//!
//! `--log FILE|-`: firewall logs (ipmon, netfilter LOG) read to the end and correlated
//! into flow records (seed 003). Every line no parser understands is counted and, with
//! `--reject FILE`, written there with its line number and the reason; nothing stops
//! on a bad line.
//!
//! `--netflow ADDR:PORT`: NetFlow v5/v9 and IPFIX datagrams received over UDP until
//! SIGINT or SIGTERM, then every open flow is written and the command exits 0.
//! `--netflow-capture FILE...`: the same from capture files of exported datagrams (the
//! capture's clock is the collector's clock, so a replay gives the same flows every
//! time). One-way records are joined into bidirectional flows (`tunnelwatch-netflow`);
//! malformed datagrams are counted and named, never fatal.
//!
//! Records and alerts go to the store as with `read` (the log file or capture is the
//! capture identity, so collecting the same input twice does not duplicate flows).

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
    #[arg(long, value_name = "FILE", requires = "year", required_unless_present_any = ["netflow", "netflow_capture"], conflicts_with_all = ["netflow", "netflow_capture"])]
    pub(crate) log: Option<String>,
    /// Receive NetFlow v5/v9 and IPFIX over UDP on this address until SIGINT/SIGTERM.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "netflow_capture")]
    pub(crate) netflow: Option<std::net::SocketAddr>,
    /// Read NetFlow/IPFIX datagrams from capture files (pcap, pcapng) instead.
    #[arg(long = "netflow-capture", value_name = "FILE", num_args = 1..)]
    pub(crate) netflow_capture: Vec<PathBuf>,
    /// Seconds a joined flow waits for more export records before it ends.
    #[arg(long = "flow-idle", default_value_t = 300.0)]
    pub(crate) flow_idle: f64,
    /// Open flows at most (logs and exports): beyond, the flow due first ends early.
    #[arg(long = "max-flows", default_value_t = 1_000_000)]
    pub(crate) max_flows: usize,
    /// The log's format.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) format: LogFormat,
    /// Year of syslog stamps, which carry none (`Jul 26 04:04:32`); needed with `--log`.
    #[arg(long)]
    pub(crate) year: Option<i32>,
    /// Write lines that are not firewall log lines here (`LINE: reason: text`).
    #[arg(long, value_name = "FILE")]
    pub(crate) reject: Option<String>,
    /// Write flow records (JSON lines) here (`-` for standard output).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub(crate) flows: String,
    /// Write alerts (JSON lines) here (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub(crate) alerts: Option<String>,
    /// Detector settings (TOML), as for `read`.
    #[arg(
        long,
        value_name = "FILE",
        env = "TUNNELWATCH_CONFIG",
        default_value = "tunnelwatch.toml"
    )]
    pub(crate) config: PathBuf,
    /// Seconds a flow lingers after a FIN or RST line (seed 003: 30).
    #[arg(long, default_value_t = 30.0)]
    pub(crate) linger: f64,
    /// Seconds without a line after which a flow ends.
    #[arg(long, default_value_t = 300.0)]
    pub(crate) idle: f64,
    /// The store the flows are written to.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    pub(crate) db: PathBuf,
    /// Do not write to the store.
    #[arg(long = "no-store", env = "TUNNELWATCH_NO_STORE", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) no_store: bool,
}

/// Records per batch handed to the store.
const STORE_BATCH: usize = 4096;

/// Records written as JSON lines and through the detectors.
pub(crate) struct Out {
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
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let times = args.linger.is_finite()
        && args.linger >= 0.0
        && positive(args.idle)
        && positive(args.flow_idle);
    if !times || args.max_flows == 0 {
        anyhow::bail!(
            "--linger must be zero or more seconds, --idle and --flow-idle more than zero, --max-flows at least 1"
        );
    }
    let config = load_config(&args.config)?;
    // The store first: a locked, corrupt or too new store stops here, nothing written.
    // Files are captures (a second collection of one adds nothing); standard input
    // and a live socket are streams, each collection its own.
    let store = match (&args.log, &args.netflow) {
        _ if args.no_store => None,
        (Some(log), _) if log != "-" => Some(StoreSink::start(&args.db, &[PathBuf::from(log)])?),
        (Some(_), _) => Some(StoreSink::start_stream(
            &args.db,
            "log from standard input",
        )?),
        (None, Some(addr)) => Some(StoreSink::start_stream(
            &args.db,
            &format!("netflow on {addr}"),
        )?),
        (None, None) => Some(StoreSink::start(&args.db, &args.netflow_capture)?),
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
    let summary = match &args.log {
        Some(log) => collect_log(&args, log, &mut out)?,
        None => crate::netflow::collect(&args, &mut out)?,
    };
    out.alerts.finish(&mut out.raised);
    if out.store.is_some() {
        out.alerts_batch.append(&mut out.raised);
        out.send_to_store();
        out.store = None;
    }
    out.flows.flush()?;
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
        "collect: {}, {} flow records, {} alerts; {}",
        summary.0, out.records, alerts, summary.1
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a firewall log to its end; returns what was read and what was refused, for
/// the summary line.
fn collect_log(args: &CollectArgs, log: &str, out: &mut Out) -> Result<(String, String)> {
    let input: Box<dyn BufRead> = if log == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(log).with_context(|| format!("cannot open log {log}"))?,
        ))
    };
    let mut reject = args.reject.as_deref().map(open_out).transpose()?;
    let format = match args.format {
        LogFormat::Auto => Format::Auto,
        LogFormat::Ipmon => Format::Ipmon,
        LogFormat::Netfilter => Format::Netfilter,
    };
    let year = args.year.context("--log needs --year")?;
    let mut table = LogFlows::new(LogFlowConfig {
        linger: args.linger,
        idle: args.idle,
        max_flows: args.max_flows,
    });
    let (mut lines, mut rejected) = (0u64, 0u64);
    for (n, line) in input.split(b'\n').enumerate() {
        let raw = line.with_context(|| format!("reading {log} at line {}", n + 1))?;
        lines += 1;
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text, format, year) {
            Ok(e) => table.event(&e, out),
            Err(why) => {
                rejected += 1;
                if let Some(r) = reject.as_mut() {
                    writeln!(r, "{}: {}: {}", n + 1, why.0, text)
                        .with_context(|| "writing the reject file")?;
                }
            }
        }
    }
    table.finish(out);
    if let Some(r) = reject.as_mut() {
        r.flush()?;
    }
    Ok((
        format!("{lines} lines"),
        format!(
            "{} flows ended early at --max-flows; {rejected} lines not understood{}",
            table.evicted(),
            if rejected > 0 && args.reject.is_none() {
                " (--reject FILE keeps them)"
            } else {
                ""
            }
        ),
    ))
}
