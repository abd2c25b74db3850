//! `tunnelwatch flows [FILTER]`: stored flows through the filter language, as the
//! readable table or as JSON lines with the schema of `read --flows`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tunnelwatch_output::table;
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::{Mode, Store};

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// The readable table of `read`.
    Table,
    /// JSON lines, the flow-record schema.
    Json,
}

/// Arguments of `flows`.
#[derive(Args, Debug)]
pub struct FlowsArgs {
    /// Filter, e.g. `host 10.1.1.9 and port 3128 and bytes > 1000` (quote `>` and `<`
    /// for the shell). See docs/specs/store.md.
    #[arg(value_name = "FILTER")]
    filter: Vec<String>,
    /// The store.
    #[arg(long, value_name = "PATH", env = "TUNNELWATCH_DB", default_value = tunnelwatch_store::DEFAULT_PATH)]
    db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// At most N records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Leave out interim records (flows still open when their capture ended early).
    #[arg(long = "final")]
    final_only: bool,
}

/// The filter words joined as typed (column numbers in errors refer to this text).
pub fn filter_text(words: &[String]) -> String {
    words.join(" ")
}

/// Runs `flows`.
pub fn run(a: FlowsArgs) -> Result<ExitCode> {
    let q = FlowQuery {
        filter: filter_text(&a.filter),
        limit: a.limit,
        final_only: a.final_only,
    };
    // Compile first so a bad filter is reported even without a store.
    tunnelwatch_store::filter::compile(&q.filter, tunnelwatch_store::filter::Target::Flows)
        .map_err(|e| anyhow::anyhow!("{e}, in filter \"{}\"", q.filter))?;
    let store = Store::open(&a.db, Mode::ReadOnly)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut failed: Option<io::Error> = None;
    if matches!(a.format, Format::Table) {
        table::write_header(&mut out)?;
    }
    let mut write = |res: io::Result<()>| match res {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    };
    match a.format {
        // The text `read --flows` writes for the stored record, byte for byte.
        Format::Json => store.flow_texts(&q, |json| {
            write(
                out.write_all(json.as_bytes())
                    .and_then(|_| out.write_all(b"\n")),
            )
        })?,
        Format::Table => store.flows(&q, |r| write(table::write_record(&mut out, &r)))?,
    };
    match failed.map_or_else(|| out.flush(), Err) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
