//! `tunnelwatch learn CAPTURE...`: a learning period over captures. The captures go
//! through the sensor as for `read`, every record through the baseline in learning
//! mode (every hour folded with full weight), and the profiles are written to the
//! store; nothing is raised and no flow is stored. `--reset` forgets the stored
//! profiles first — what to do after changing `baseline.slot_seconds` or `cycle`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::read::ReadArgs;

/// Arguments of `learn`: those of `read`, and `--reset`.
#[derive(Args, Debug)]
pub struct LearnArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// Forget the stored profiles first (after changing baseline.slot_seconds or cycle,
    /// or to learn again from clean traffic).
    #[arg(long)]
    reset: bool,
}

/// Runs `learn`.
pub fn run(mut args: LearnArgs) -> Result<ExitCode> {
    if args.read.no_store || args.read.no_detect {
        anyhow::bail!("learn writes profiles to the store: drop --no-store and --no-detect");
    }
    if args.reset {
        let n = crate::profiles::reset(&args.read.db)?;
        eprintln!("learn: {n} stored profiles forgotten");
    }
    args.read.learn = true;
    crate::read::run(args.read)
}
