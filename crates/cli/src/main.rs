//! The `tunnelwatch` command: configuration → components → run. The only crate that
//! uses `anyhow`, talks to the terminal and maps errors to exit codes.

mod alert_sink;
mod alerts;
mod baseline;
mod collect;
mod direct;
mod engine;
mod evaluate;
mod export;
mod flows;
mod learn;
mod netflow;
mod profiles;
mod read;
mod sinks;
mod store_sink;
mod views;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Records are built on the packet thread and freed on the writer thread; mimalloc keeps
// that cross-thread traffic cheap where glibc's arenas serialize on it. Its transparent
// huge pages are off (`no_thp` in Cargo.toml): zeroing 2 MiB pages on first touch cost
// ~1.3 CPU s of system time on the 4.2M-packet corpus (`read` ~10 % slower with them).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Find covert channels, tunnels, beacons, scans and TCP attacks in network traffic.
#[derive(Parser, Debug)]
#[command(name = "tunnelwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read capture files (pcap, pcapng, optionally gzip-compressed): packets → flows.
    Read(read::ReadArgs),
    /// The seed's client, server and time views of the store, with Top/Bottom N.
    Views(views::ViewsArgs),
    /// Query stored flows with a filter (`host 10.1.1.9 and port 3128`).
    Flows(flows::FlowsArgs),
    /// Query stored alerts.
    Alerts(alerts::AlertsArgs),
    /// Export stored flows (CSV, Parquet).
    Export(export::ExportArgs),
    /// Collect flows from NetFlow v5/v9/IPFIX exports or firewall logs (ipmon,
    /// netfilter LOG): records or lines → flows → alerts.
    Collect(collect::CollectArgs),
    /// Learn baseline profiles from flows already in the store (a time window, a
    /// network: any filter).
    Baseline(baseline::BaselineArgs),
    /// Learn baseline profiles from captures (a learning period: nothing raised, the
    /// profiles go to the store).
    Learn(learn::LearnArgs),
    /// Measure detection against ground truth (the lab's truth file) or list the
    /// alerts raised on benign captures.
    Evaluate(evaluate::EvaluateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Read(args) => read::run(args),
        Command::Views(args) => views::run(args),
        Command::Flows(args) => flows::run(args),
        Command::Alerts(args) => alerts::run(args),
        Command::Export(args) => export::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Collect(args) => collect::run(args),
        Command::Learn(args) => learn::run(args),
        Command::Baseline(args) => baseline::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tunnelwatch: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
