//! The `tunnelwatch` command: configuration → components → run. The only crate that
//! uses `anyhow`, talks to the terminal and maps errors to exit codes.

mod engine;
mod read;
mod sinks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Records are built on the packet thread and freed on the writer thread; mimalloc keeps
// that cross-thread traffic cheap where glibc's arenas serialize on it.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Read(args) => read::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tunnelwatch: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
