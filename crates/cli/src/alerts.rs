//! `tunnelwatch alerts [FILTER] [--min-severity LEVEL]`: stored alerts, as JSON lines or
//! one line each; with `--hosts`, the hosts ranked by their score
//! (`docs/specs/scoring.md`): the alerts are the evidence, the store's flows give the
//! modifiers (clients per destination, when each host was first seen).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::Args;
use tunnelwatch_detect::scoring::{HostFacts, HostScore, Scorer, Scores};
use tunnelwatch_detect::Config;
use tunnelwatch_store::filter::{compile, Target};
use tunnelwatch_store::{Mode, Severity, Store};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One readable line per alert (per host with `--hosts`).
    Table,
    /// JSON lines: the alert schema (with `--hosts`, one object per host).
    Json,
}

impl Format {
    /// Parses `--format`; the error is one line naming the accepted values.
    fn parse(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            _ => Err(anyhow!("--format {s}: expected table or json")),
        }
    }
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
    /// Output format: table or json.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    format: String,
    /// At most N alerts.
    #[arg(long, value_name = "N", conflicts_with = "hosts")]
    limit: Option<u64>,
    /// Rank hosts by the probability that they are involved in an incident, from the
    /// alerts matching FILTER and --min-severity (docs/specs/scoring.md).
    #[arg(long)]
    hosts: bool,
    /// With --hosts: only the N highest-ranked hosts.
    #[arg(long, value_name = "N", requires = "hosts")]
    top: Option<usize>,
    /// With --hosts: the `[scoring]` and `[lists]` settings (the TOML file of `read
    /// --config`). A missing file means the documented defaults.
    #[arg(
        long,
        value_name = "FILE",
        env = "TUNNELWATCH_CONFIG",
        default_value = "tunnelwatch.toml"
    )]
    config: PathBuf,
}

/// Runs `alerts`.
pub fn run(a: AlertsArgs) -> Result<ExitCode> {
    let format = Format::parse(&a.format)?;
    let filter = crate::flows::filter_text(&a.filter);
    compile(&filter, Target::Alerts).map_err(|e| anyhow!("{e}, in filter \"{filter}\""))?;
    if a.hosts {
        let config = crate::read::load_config(&a.config)?;
        let store = Store::open(&a.db, Mode::ReadOnly)?;
        let scores = score_hosts(&store, &config, &filter, a.min_severity)?;
        return print_hosts(&scores, a.top, format);
    }
    let min = a.min_severity;
    let store = Store::open(&a.db, Mode::ReadOnly)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut failed: Option<io::Error> = None;
    store.alerts(&filter, min, a.limit, |al| {
        let res = match format {
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
    finish(failed.map_or_else(|| out.flush(), Err))
}

/// A write error other than a closed pipe (`| head`) is an error.
fn finish(r: io::Result<()>) -> Result<ExitCode> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Scores the hosts of the stored alerts matching `filter` at or above `min`, with the
/// modifiers measured on the store's flows.
pub fn score_hosts(store: &Store, config: &Config, filter: &str, min: Severity) -> Result<Scores> {
    let mut scorer = Scorer::new(config);
    store.alerts(filter, min, None, |a| {
        scorer.add(&a);
        true
    })?;
    let act = store.host_activity(&scorer.hosts(), &scorer.destinations())?;
    let at = |us: i64| tunnelwatch_model::Timestamp(us.saturating_mul(1000));
    let facts = HostFacts {
        clients: act.clients,
        destination_clients: act.destination_clients,
        first_seen: act
            .first_seen_us
            .into_iter()
            .map(|(h, us)| (h, at(us)))
            .collect(),
        watch_start: act.first_flow_us.map(at),
    };
    Ok(scorer.finish(&facts))
}

fn print_hosts(scores: &Scores, top: Option<usize>, format: Format) -> Result<ExitCode> {
    let shown = &scores.hosts[..top.unwrap_or(usize::MAX).min(scores.hosts.len())];
    let mut out = io::BufWriter::new(io::stdout().lock());
    let r = match format {
        Format::Json => write_hosts_json(&mut out, shown),
        Format::Table => write_hosts_table(&mut out, shown),
    };
    finish(r.and_then(|_| out.flush()))
}

fn write_hosts_json(out: &mut impl Write, hosts: &[HostScore]) -> io::Result<()> {
    for (i, h) in hosts.iter().enumerate() {
        let mut v = serde_json::to_value(h).map_err(io::Error::other)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("rank".into(), (i + 1).into());
        }
        serde_json::to_writer(&mut *out, &v).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Rank, host, probability (`!` at or above the threshold), log-odds, alerts counted,
/// and the three rules that added most.
fn write_hosts_table(out: &mut impl Write, hosts: &[HostScore]) -> io::Result<()> {
    let width = hosts
        .iter()
        .map(|h| h.host.to_string().len())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "{:>4}  {:<width$}  {:>12}  {:>8}  {:>6}  top rules (severity ×alerts +log-LR, modifiers)",
        "rank", "host", "probability", "log-odds", "alerts"
    )?;
    for (i, h) in hosts.iter().enumerate() {
        let rules: Vec<String> = h
            .contributions
            .iter()
            .take(3)
            .map(|c| {
                let mut s = format!(
                    "{} ({} ×{} {:+.2}",
                    c.rule,
                    c.severity.as_str(),
                    c.count,
                    c.log_lr
                );
                if c.rare_destination > 0 {
                    s.push_str(", rare destination");
                }
                if c.new_host > 0 {
                    s.push_str(", new host");
                }
                s.push(')');
                s
            })
            .collect();
        let more = h.contributions.len().saturating_sub(3);
        writeln!(
            out,
            "{:>4}  {:<width$}  {:>11.6}{}  {:>8.3}  {:>6}  {}{}{}",
            i + 1,
            h.host.to_string(),
            h.probability,
            if h.alarm { "!" } else { " " },
            h.log_odds,
            h.alerts,
            rules.join(", "),
            if h.black_listed { " [black list]" } else { "" },
            if more > 0 {
                format!(" … {more} more")
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// Parses `low`, `medium` or `high`.
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(&s.to_ascii_lowercase())
        .ok_or_else(|| format!("unknown severity '{s}' (expected low, medium or high)"))
}
