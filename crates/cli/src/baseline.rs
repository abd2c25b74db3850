//! `tunnelwatch baseline [FILTER] [--since T] [--until T]`: a learning period over a
//! time window of flows already in the store. The stored final records in the window
//! that FILTER selects (all when empty; e.g. `net 10.0.0.0/8`, see
//! docs/specs/store.md) go through the baseline in learning mode in the order they
//! ended, and the profiles are written back; nothing is raised.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tunnelwatch_detect::baseline::{Baseline, Mode};
use tunnelwatch_detect::Detector;
use tunnelwatch_model::FlowRecord;
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::Store;

use crate::read::load_config;

/// Arguments of `baseline`.
#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// Filter selecting the stored flows to learn from (docs/specs/store.md).
    #[arg(value_name = "FILTER")]
    filter: Vec<String>,
    /// The store.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    db: PathBuf,
    /// Detector settings (TOML): `[baseline]`.
    #[arg(
        long,
        value_name = "FILE",
        env = "TUNNELWATCH_CONFIG",
        default_value = "tunnelwatch.toml"
    )]
    config: PathBuf,
    /// Flows whose first packet is at or after this time (epoch seconds or
    /// `YYYY-MM-DD[THH[:MM[:SS]]]`, UTC).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Flows whose first packet is before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Forget the stored profiles first.
    #[arg(long)]
    reset: bool,
}

/// Runs `baseline`.
pub fn run(a: BaselineArgs) -> Result<ExitCode> {
    let q = FlowQuery {
        filter: crate::flows::filter_text(&a.filter),
        limit: None,
        final_only: true,
    };
    tunnelwatch_store::filter::compile(&q.filter, tunnelwatch_store::filter::Target::Flows)
        .map_err(|e| anyhow::anyhow!("{e}, in filter \"{}\"", q.filter))?;
    let bound = |v: &Option<String>, what: &str| -> Result<Option<i64>> {
        v.as_deref()
            .map(tunnelwatch_store::time::parse_time)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))
    };
    let (since, until) = (bound(&a.since, "--since")?, bound(&a.until, "--until")?);
    let config = load_config(&a.config)?;
    let cfg = config.baseline.clone();
    if a.reset {
        let n = crate::profiles::reset(&a.db)?;
        eprintln!("baseline: {n} stored profiles forgotten");
    }
    let mut b = Baseline::new(&config);
    b.set_profiles(crate::profiles::load(&a.db, &cfg)?);
    b.set_mode(Mode::Learn);
    // The store gives records by first packet; hours are made of records by their
    // last packet, in the order flows ended.
    let mut recs: Vec<FlowRecord> = Vec::new();
    let store = Store::open(&a.db, tunnelwatch_store::Mode::ReadOnly)?;
    store.flows(&q, |r| {
        let us = r.ts.as_micros();
        if since.is_none_or(|s| us >= s) && until.is_none_or(|u| us < u) {
            recs.push(r);
        }
        true
    })?;
    drop(store);
    recs.sort_by_key(|r| r.last_ts);
    let mut none = Vec::new();
    for r in &recs {
        b.record(r, &mut none);
    }
    b.finish(&mut none);
    let p = b.take_profiles();
    let n = crate::profiles::save(&a.db, &cfg, &p)?;
    eprintln!(
        "baseline: {} stored flows learnt, {} profiles in {} ({} slots observed)",
        recs.len(),
        n,
        a.db.display(),
        p.slots.len()
    );
    Ok(ExitCode::SUCCESS)
}
