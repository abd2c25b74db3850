//! `tunnelwatch read`: capture files → sensor → record sinks, a progress bar on a
//! terminal, and a summary at the end.
//!
//! A damaged capture stops that capture only: every packet before the damage has been
//! processed, every flow record produced is written, the error (with its byte offset)
//! is reported, and the exit code is 1. Unreadable inputs do not stop the others.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tunnelwatch_capture::CaptureFile;
use tunnelwatch_detect::baseline::Mode as BaselineMode;
use tunnelwatch_detect::Detection;
use tunnelwatch_flow::ChecksumMode;
use tunnelwatch_model::{Category, Timestamp};
use tunnelwatch_output::zeek;
use tunnelwatch_sensor::{RunStats, SensorConfig};

use crate::alert_sink::{AlertReport, AlertSink};
use crate::engine::Engine;
use crate::sinks::{open_out, open_records_out, RecordWriter, Sink, Written};
use crate::store_sink::StoreSink;

/// Output format on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// JSON lines (the flow-record schema).
    Json,
    /// A readable table.
    Table,
    /// Zeek conn.log TSV.
    Zeek,
}

/// Checksum policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Checksums {
    /// Verify IP/TCP/UDP/ICMP checksums; ignore packets that fail (as Zeek does).
    Verify,
    /// Do not verify (captures with NIC checksum offloading).
    Ignore,
}

/// Arguments of `read`.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Capture files (pcap or pcapng, optionally .gz); read in order as one stream.
    #[arg(required = true, value_name = "CAPTURE")]
    captures: Vec<PathBuf>,
    /// Write flow records as JSON lines to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    flows: Option<String>,
    /// Write a Zeek conn.log to FILE (`-` for standard output).
    #[arg(long = "zeek-conn", value_name = "FILE")]
    zeek_conn: Option<String>,
    /// Format of the records printed on standard output when neither --flows nor
    /// --zeek-conn writes there [default: table].
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// The store the flows are written to.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    pub(crate) db: PathBuf,
    /// Do not write to the store.
    #[arg(long = "no-store", env = "TUNNELWATCH_NO_STORE", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) no_store: bool,
    /// Checksum policy.
    #[arg(long, value_enum, default_value = "verify")]
    checksums: Checksums,
    /// Same as --checksums ignore (Zeek's -C).
    #[arg(short = 'C')]
    ignore_checksums: bool,
    /// Interim records for flows longer than this many seconds (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 1800.0)]
    active_timeout: f64,
    /// Do not reassemble IP fragments: first fragments are keyed and counted on their
    /// own, later fragments only counted (the behaviour of nDPI, NFStream, NetFlow).
    #[arg(long = "no-reassembly")]
    no_reassembly: bool,
    /// Most flows alive at once; beyond it the flow whose next timer is nearest (the
    /// stalest) ends early with `cause: evicted`.
    #[arg(long, value_name = "N", default_value_t = 4_000_000)]
    max_flows: usize,
    /// Most MiB of flow state (estimated per flow: table entry, TCP and application
    /// state, buffers); beyond it flows are evicted as for --max-flows. 0: no limit.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    max_memory: usize,
    /// Worker threads: flows are sharded by a symmetric hash of the outermost
    /// addresses; the records are those of one thread (in another order).
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// No progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Write alerts as JSON lines to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    alerts: Option<String>,
    /// Detector settings (TOML; every key documented in docs/config.example.toml). A
    /// missing file means the documented defaults.
    #[arg(
        long,
        value_name = "FILE",
        env = "TUNNELWATCH_CONFIG",
        default_value = "tunnelwatch.toml"
    )]
    config: PathBuf,
    /// Run no detectors (flow records only).
    #[arg(long = "no-detect")]
    pub(crate) no_detect: bool,
    /// Also export every flow record as IPFIX (RFC 7011) biflows (RFC 5103) over UDP to
    /// ADDR:PORT, e.g. nfdump's nfcapd (docs/specs/ipfix-export.md).
    #[arg(long = "ipfix-export", value_name = "ADDR:PORT")]
    ipfix_export: Option<String>,
    /// Observation Domain ID of the IPFIX messages.
    #[arg(long = "ipfix-domain", value_name = "N", default_value_t = 0)]
    ipfix_domain: u32,
    /// Learn the baseline profiles online for the first HOURS of packet time (no
    /// baseline alerts then), and detect against them afterwards.
    #[arg(long = "learning-period", value_name = "HOURS")]
    learning_period: Option<f64>,
    /// Set by `tunnelwatch learn`: profiles only, nothing raised or stored but them.
    #[arg(skip)]
    pub(crate) learn: bool,
}

/// The detector settings at `path`; a missing file gives the defaults (said on
/// standard error unless it is the default name).
pub fn load_config(path: &std::path::Path) -> Result<tunnelwatch_detect::Config> {
    match tunnelwatch_detect::Config::load(path)? {
        Some(c) => Ok(c),
        None => {
            if path != std::path::Path::new("tunnelwatch.toml") {
                eprintln!(
                    "tunnelwatch: config file {} not found: using the documented defaults",
                    path.display()
                );
            }
            Ok(tunnelwatch_detect::Config::default())
        }
    }
}

/// What the flow table takes from the detector configuration: how keystrokes are
/// counted and which content signatures are matched (the shipped ones also with
/// `--no-detect`, so records are the same either way).
pub fn flow_settings(
    flow: &mut tunnelwatch_flow::FlowConfig,
    c: &tunnelwatch_detect::Config,
) -> Result<()> {
    flow.keystrokes = c.keystrokes.clone();
    flow.signatures = std::sync::Arc::new(
        tunnelwatch_flow::sigs::Signatures::compile(&c.signatures.rules)
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    Ok(())
}

/// Runs `read`.
pub fn run(args: ReadArgs) -> Result<ExitCode> {
    let to_stdout = |o: &Option<String>| o.as_deref() == Some("-");
    if to_stdout(&args.alerts) && (to_stdout(&args.flows) || to_stdout(&args.zeek_conn)) {
        anyhow::bail!(
            "--alerts - and another output both want standard output: send one to a file"
        );
    }
    if args
        .learning_period
        .is_some_and(|h| !(h.is_finite() && h > 0.0))
    {
        anyhow::bail!("--learning-period must be a positive number of hours");
    }
    // The config before anything is opened or written: a bad one stops here.
    let detect_config = if args.no_detect {
        None
    } else {
        let mut c = load_config(&args.config)?;
        if args.learn {
            // Learning raises nothing: only the baseline runs, and it only learns.
            c.rules.disable = tunnelwatch_detect::RULES
                .iter()
                .map(|(r, _)| r.to_string())
                .filter(|r| !r.starts_with("baseline_"))
                .collect();
        }
        Some(c)
    };
    let baseline_cfg = detect_config.as_ref().map(|c| c.baseline.clone());
    // Profiles learnt before, from the store (refused when learnt with other slots).
    let uses_profiles = detect_config.is_some() && (!args.no_store || args.learn);
    let profiles = match &detect_config {
        Some(c) if uses_profiles => Some(crate::profiles::load(&args.db, &c.baseline)?),
        _ => None,
    };
    // The store first: a locked, corrupt or too new store stops here, nothing written.
    let store = if args.no_store || args.learn {
        None
    } else {
        Some(StoreSink::start(&args.db, &args.captures)?)
    };
    let mode = if args.ignore_checksums || args.checksums == Checksums::Ignore {
        ChecksumMode::Ignore
    } else {
        ChecksumMode::Verify
    };
    let mut config = SensorConfig::default().with_checksums(mode);
    config.flow.active_timeout = (args.active_timeout.max(0.0) * 1e9) as i64;
    config.reassemble = !args.no_reassembly;
    config.flow.max_flows = args.max_flows.max(1);
    config.flow.max_memory = args.max_memory.saturating_mul(1 << 20);
    flow_settings(
        &mut config.flow,
        detect_config
            .as_ref()
            .unwrap_or(&tunnelwatch_detect::Config::default()),
    )?;

    let mut sinks: Vec<Sink> = Vec::new();
    let mut stdout_used = false;
    if let Some(t) = &args.flows {
        stdout_used |= t == "-";
        sinks.push(Sink::json(open_records_out(t)?));
    }
    if let Some(t) = &args.zeek_conn {
        stdout_used |= t == "-";
        sinks.push(Sink::Zeek {
            out: open_records_out(t)?,
            header: false,
        });
    }
    if let Some(target) = &args.ipfix_export {
        sinks.push(Sink::ipfix(target, args.ipfix_domain)?);
    }
    let alerting = match (detect_config, &args.alerts) {
        (None, Some(_)) => anyhow::bail!("--alerts needs the detectors (drop --no-detect)"),
        (None, None) => None,
        (Some(c), target) => {
            let out = match target {
                Some(t) => {
                    stdout_used |= t == "-";
                    Some(open_out(t)?)
                }
                None => None,
            };
            let mut d = Detection::new(c);
            if let Some(p) = profiles {
                d.baseline().set_profiles(p);
            }
            d.baseline().set_keep_profiles(uses_profiles);
            d.baseline().set_mode(if args.learn {
                BaselineMode::Learn
            } else if let Some(h) = args.learning_period {
                BaselineMode::LearnFor(h * 3600.0)
            } else {
                BaselineMode::Detect
            });
            Some(AlertSink::new(d, out))
        }
    };
    if !stdout_used && !args.learn && (args.format.is_some() || sinks.is_empty()) {
        let out = open_out("-")?;
        sinks.push(match args.format.unwrap_or(OutputFormat::Table) {
            OutputFormat::Json => Sink::json(out),
            OutputFormat::Zeek => Sink::Zeek { out, header: false },
            OutputFormat::Table => Sink::Table { out, header: false },
        });
    }

    let total_bytes: u64 = args
        .captures
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = if !args.no_progress && io::stderr().is_terminal() {
        let b = ProgressBar::new(total_bytes);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };

    let writer = RecordWriter::spawn(sinks, store.as_ref().map(StoreSink::sender), alerting)?;
    let mut engine = Engine::new(config, args.threads.clamp(1, 256), &writer)?;
    let mut index = 0u64;
    let mut open: Option<Timestamp> = None;
    let mut errors: Vec<String> = Vec::new();
    let mut done_bytes = 0u64;
    let mut reader_odd = tunnelwatch_capture::ReaderCounters::default();

    for path in &args.captures {
        let mut cap = match CaptureFile::open(path) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        if let Some(b) = &bar {
            b.set_message(path.display().to_string());
        }
        loop {
            match cap.next_packet() {
                Ok(Some(p)) => {
                    let first = open.map_or(p.ts, |o| o.min(p.ts));
                    open = Some(first);
                    engine.packet(index, &p, first);
                    index += 1;
                    if index % 8192 == 0 {
                        if let Some(b) = &bar {
                            b.set_position(done_bytes + cap.input_bytes_read());
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    errors.push(e.to_string());
                    break;
                }
            }
        }
        done_bytes += cap.input_len().unwrap_or_else(|| cap.input_bytes_read());
        reader_odd.merge(cap.counters());
    }
    let stats = engine.finish();
    let open = stats.counters.first_ts.unwrap_or_default();
    let close = stats.counters.last_ts.unwrap_or_default();
    let Written {
        records: written,
        error: io_error,
        alerts,
        ipfix,
    } = writer.finish(open, close);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    summary(&stats, &reader_odd, args.captures.len(), written);
    if let Some(x) = ipfix {
        eprintln!(
            "  ipfix export to {}: {} records in {} datagrams{}",
            x.target,
            x.records,
            x.sent + x.send_errors,
            match &x.first_error {
                Some(e) => format!(", {} of them not sent (first error: {e})", x.send_errors),
                None => String::new(),
            }
        );
        if x.untracked > 0 {
            eprintln!(
                "  ipfix: {} interim records of more flows than remembered: their flows' next records repeat their counts",
                x.untracked
            );
        }
    }
    let mut alerts = alerts;
    let learnt = alerts.as_mut().map(|a| std::mem::take(&mut a.profiles));
    let alert_error = alerts.and_then(|a| {
        if !args.learn {
            alert_summary(&a);
        }
        a.error
    });
    if let Some(store) = store {
        let (path, report, err) = store.finish();
        eprintln!(
            "  store {}: {} records written, {} already stored, {} alerts, {} commits",
            path.display(),
            report.written,
            report.unchanged,
            report.alerts,
            report.commits
        );
        if let Some(e) = err {
            return Err(e).context("writing to the store");
        }
    }
    if let (Some(p), true, Some(c)) = (&learnt, uses_profiles, &baseline_cfg) {
        let n = crate::profiles::save(&args.db, c, p)?;
        eprintln!(
            "  baseline: {} profiles in {} ({} slots observed)",
            n,
            args.db.display(),
            p.slots.len()
        );
    }
    for (e, what) in [
        (io_error, "writing records"),
        (alert_error, "writing alerts"),
    ] {
        if let Some(e) = e {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(e).context(what);
            }
        }
    }
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &errors {
            eprintln!("tunnelwatch: error: {e}");
        }
        eprintln!(
            "tunnelwatch: {} input error(s); everything read before the damage was processed and written",
            errors.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// The alerts line of the summary: counts by category and severity, and what the
/// lists dropped.
fn alert_summary(a: &AlertReport) {
    let mut by_cat: std::collections::BTreeMap<Category, Vec<String>> = Default::default();
    let mut total = 0;
    for ((c, s), n) in a.counts.iter().rev() {
        by_cat.entry(*c).or_default().push(format!("{n} {s}"));
        total += n;
    }
    let groups: Vec<String> = by_cat
        .iter()
        .map(|(c, v)| format!("{c}: {}", v.join(", ")))
        .collect();
    let s = &a.stats;
    let mut dropped = Vec::new();
    for (n, why) in [
        (s.whitelisted, "white list"),
        (s.redlisted, "red list"),
        (s.below_min, "below min_severity"),
    ] {
        if n > 0 {
            dropped.push(format!("{n} by the {why}"));
        }
    }
    eprintln!(
        "  alerts: {}{}{}",
        if total == 0 {
            "none".to_string()
        } else {
            format!("{total} ({})", groups.join("; "))
        },
        if dropped.is_empty() {
            String::new()
        } else {
            format!("; dropped {}", dropped.join(", "))
        },
        if s.untracked > 0 {
            format!(
                "; {} findings not tracked (detector state full)",
                s.untracked
            )
        } else {
            String::new()
        }
    );
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn summary(
    stats: &RunStats,
    odd: &tunnelwatch_capture::ReaderCounters,
    inputs: usize,
    written: u64,
) {
    let c = &stats.counters;
    let t = &stats.table;
    let mut e = io::stderr().lock();
    let _ = writeln!(
        e,
        "tunnelwatch read: {} capture(s), {} packets, {} on the wire ({} captured), {} flows, {} records ({} interim)",
        inputs,
        c.packets,
        human_bytes(c.wire_bytes),
        human_bytes(c.captured_bytes),
        t.flows,
        written,
        t.interim_records
    );
    if let (Some(a), Some(b)) = (c.first_ts, c.last_ts) {
        let _ = writeln!(
            e,
            "  time span: {} .. {} UTC ({:.3} s)",
            zeek::zeek_stamp(a),
            zeek::zeek_stamp(b),
            b.nanos_since(a) as f64 / 1e9
        );
    }
    let anomalies: Vec<String> = c
        .anomalies
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(
        e,
        "  decode anomalies: {}",
        if anomalies.is_empty() {
            "none".to_string()
        } else {
            anomalies.join(", ")
        }
    );
    if !c.unknown_link_types.is_empty() {
        let v: Vec<String> = c
            .unknown_link_types
            .iter()
            .map(|(l, n)| format!("linktype {l}: {n}"))
            .collect();
        let _ = writeln!(
            e,
            "  frames of unknown link types (not decoded): {}",
            v.join(", ")
        );
    }
    let non_ip: u64 = c.non_ip.values().sum();
    if non_ip > 0 {
        let v: Vec<String> = c
            .non_ip
            .iter()
            .map(|(t, n)| format!("{t:#06x}: {n}"))
            .collect();
        let _ = writeln!(e, "  non-IP frames: {non_ip} ({})", v.join(", "));
    }
    let mut other = Vec::new();
    if c.truncated_frames > 0 {
        other.push(format!(
            "{} snap-length truncated frames (counted at wire length)",
            c.truncated_frames
        ));
    }
    if t.time_backwards > 0 {
        other.push(format!(
            "{} packets with time going backwards",
            t.time_backwards
        ));
    }
    if t.bad_ip_checksums + t.bad_checksums > 0 {
        other.push(format!(
            "{} packets with bad checksums ignored (use -C for offloaded captures)",
            t.bad_ip_checksums + t.bad_checksums
        ));
    }
    if t.evicted > 0 {
        other.push(format!("{} flows evicted early (table full)", t.evicted));
    }
    if t.flows > 0 {
        other.push(format!(
            "peak {} live flows, {} of flow state",
            t.peak_flows,
            human_bytes(t.peak_memory)
        ));
    }
    let r = &stats.reassembly;
    if r.fragments > 0 {
        other.push(format!(
            "{} IP fragments: {} datagrams reassembled, {} incomplete ({} fragments), {} overlapping, {} invalid",
            r.fragments, r.datagrams, r.incomplete, r.incomplete_fragments, r.overlaps, r.invalid
        ));
    }
    if t.icmp_errors_attributed > 0 {
        other.push(format!(
            "{} ICMP errors attributed to the flows they quote",
            t.icmp_errors_attributed
        ));
    }
    let oddities = [
        (odd.empty_records, "empty records"),
        (odd.over_snaplen, "records over the snap length"),
        (odd.unknown_interface, "packets from undescribed interfaces"),
        (
            odd.caplen_over_origlen,
            "captured length above the original length",
        ),
        (
            odd.implausible_origlen,
            "implausible original lengths (captured length used)",
        ),
        (
            odd.ts_out_of_range,
            "timestamps beyond 2262 (taken modulo 2^32 s)",
        ),
        (odd.skipped_blocks, "pcapng blocks without packets skipped"),
    ];
    let odd_text: Vec<String> = oddities
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !odd_text.is_empty() {
        other.push(format!("capture oddities: {}", odd_text.join(", ")));
    }
    for o in other {
        let _ = writeln!(e, "  {o}");
    }
}
