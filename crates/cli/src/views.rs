//! `tunnelwatch views clients|servers|time`: the seed's three-level trees from the
//! store's rollups, as text (`o` / `$` / `#` levels) or JSON. The client view also
//! gives each client's host score (`docs/specs/scoring.md`), computed from the stored
//! alerts when the view is asked for.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use tunnelwatch_detect::scoring::{sigmoid, Scorer};
use tunnelwatch_store::time::parse_time;
use tunnelwatch_store::views::{render_text, Kind, RankBy, View, ViewOptions};
use tunnelwatch_store::{Mode, Severity, Store};

/// Which view.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Which {
    /// client → server:port → connection.
    Clients,
    /// server:port → client → connection.
    Servers,
    /// period (day-hour) → minute → connection.
    Time,
}

/// Rank key.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum By {
    /// First packet time, newest first (the seed's "sort by time creation").
    First,
    /// Connections.
    Conns,
    /// Bytes sent by the client.
    #[value(name = "out_bytes", alias = "out-bytes")]
    OutBytes,
    /// Bytes received by the client.
    #[value(name = "in_bytes", alias = "in-bytes")]
    InBytes,
    /// Packets both ways.
    Pkts,
    /// Channel uptime (first to last packet).
    Uptime,
    /// Connection uptime (sum of durations).
    Duration,
}

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// The seed's text tree.
    Text,
    /// One JSON document.
    Json,
}

/// Arguments of `views`.
#[derive(Args, Debug)]
pub struct ViewsArgs {
    /// Which view.
    #[arg(value_enum)]
    which: Which,
    /// The store.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Only the N first nodes at each level, ranked by --by (descending).
    #[arg(long, value_name = "N", conflicts_with = "bottom")]
    top: Option<u64>,
    /// Only the N last nodes at each level, ranked by --by (ascending).
    #[arg(long, value_name = "N")]
    bottom: Option<u64>,
    /// Rank key [default: first, or conns with --top/--bottom].
    #[arg(long, value_enum)]
    by: Option<By>,
    /// Period: 1h, 4h or 1d. Client/server views with --slots: one tree per slot of
    /// the day; time view: the first-level bucket.
    #[arg(long, default_value = "1h")]
    period: String,
    /// Client/server views: one tree per modulo-day period slot (the seed's
    /// t_period_infos).
    #[arg(long)]
    slots: bool,
    /// Flows whose first packet is at or after this time (epoch seconds or
    /// `YYYY-MM-DD[THH[:MM[:SS]]]`, UTC; rounded down to the hour).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Flows whose first packet is before this time (rounded up to the hour).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Levels shown: 1, 2 or 3 (connections).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    depth: u8,
    /// Most connections listed under one second-level node.
    #[arg(long, value_name = "N", default_value_t = 50)]
    conns: u64,
    /// Client view: the `[scoring]` and `[lists]` settings of the clients' scores (the TOML
    /// file of `read --config`). A missing file means the documented defaults.
    #[arg(
        long,
        value_name = "FILE",
        env = "TUNNELWATCH_CONFIG",
        default_value = "tunnelwatch.toml"
    )]
    config: PathBuf,
}

fn period_hours(p: &str) -> Result<u32> {
    match p {
        "1h" => Ok(1),
        "4h" => Ok(4),
        "1d" | "24h" => Ok(24),
        other => Err(anyhow!("--period {other}: expected 1h, 4h or 1d")),
    }
}

/// Runs `views`.
pub fn run(a: ViewsArgs) -> Result<ExitCode> {
    let limit = a.top.or(a.bottom);
    let by = match a.by {
        Some(b) => b,
        None if limit.is_some() => By::Conns,
        None => By::First,
    };
    let o = ViewOptions {
        kind: match a.which {
            Which::Clients => Kind::Clients,
            Which::Servers => Kind::Servers,
            Which::Time => Kind::Time,
        },
        by: match by {
            By::First => RankBy::First,
            By::Conns => RankBy::Conns,
            By::OutBytes => RankBy::OutBytes,
            By::InBytes => RankBy::InBytes,
            By::Pkts => RankBy::Pkts,
            By::Uptime => RankBy::Uptime,
            By::Duration => RankBy::Duration,
        },
        limit,
        bottom: a.bottom.is_some(),
        period_hours: period_hours(&a.period)?,
        slots: a.slots,
        since_us: a
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| anyhow!("--since: {e}"))?,
        until_us: a
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| anyhow!("--until: {e}"))?,
        depth: a.depth,
        conns_per_node: a.conns,
    };
    let config = match a.which {
        Which::Clients => Some(crate::read::load_config(&a.config)?),
        _ => None,
    };
    let store = Store::open(&a.db, Mode::ReadOnly)?;
    let mut view = store.view(&o)?;
    if let Some(c) = &config {
        add_scores(&store, c, &mut view)?;
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Text => out.write_all(render_text(&view).as_bytes())?,
        Format::Json => {
            serde_json::to_writer(&mut out, &view)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Each client node's score: its posterior from all stored alerts, or its prior when no
/// alert counts for it; none for a host the white list names.
fn add_scores(store: &Store, config: &tunnelwatch_detect::Config, view: &mut View) -> Result<()> {
    let scores = crate::alerts::score_hosts(store, config, "", Severity::Low)?;
    let scored: BTreeMap<IpAddr, f64> = scores
        .hosts
        .iter()
        .map(|h| (h.host, h.probability))
        .collect();
    let priors = Scorer::new(config);
    for n in view.trees.iter_mut().flat_map(|t| t.nodes.iter_mut()) {
        if let Some(h) = n.host {
            n.score = scored
                .get(&h)
                .copied()
                .or_else(|| priors.prior_log_odds(h).map(sigmoid));
        }
    }
    Ok(())
}
