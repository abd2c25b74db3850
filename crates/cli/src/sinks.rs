//! Record sinks and the writer thread that feeds them.
//!
//! Building records from ended flows, running the detectors over them, serializing
//! records and alerts (JSON, Zeek TSV, the table) and the write system calls run on a
//! thread of their own, so the packet path never waits
//! on strings, formatting or the disk.
//! Records travel in batches over a bounded channel (back-pressure instead of unbounded
//! memory); each producer's records are written in the order it sent them, and its
//! emptied batches come back to it, so the packet path allocates nothing per flow.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tunnelwatch_flow::{Ended, FlowSink};
use tunnelwatch_model::{Alert, FlowRecord, Timestamp};
use tunnelwatch_output::{jsonl, table, zeek};

use crate::alert_sink::{AlertReport, AlertSink};

/// Records per batch sent to the writer.
const BATCH: usize = 1024;
/// Batches in flight before the sender waits.
const IN_FLIGHT: usize = 64;

/// One output and its format.
pub enum Sink {
    /// JSON lines.
    Json {
        /// Destination.
        out: Box<dyn Write + Send>,
        /// The line being built (reused).
        line: Vec<u8>,
    },
    /// Zeek conn.log TSV; the header is written before the first record.
    Zeek {
        /// Destination.
        out: Box<dyn Write + Send>,
        /// Header written.
        header: bool,
    },
    /// The readable table.
    Table {
        /// Destination.
        out: Box<dyn Write + Send>,
        /// Header written.
        header: bool,
    },
}

impl Sink {
    /// JSON lines to `out`.
    pub fn json(out: Box<dyn Write + Send>) -> Self {
        Sink::Json {
            out,
            line: Vec::with_capacity(4096),
        }
    }

    fn write(&mut self, r: &FlowRecord, open: Timestamp) -> io::Result<()> {
        match self {
            Sink::Json { out, line } => jsonl::write_record(out, line, r),
            Sink::Zeek { out, header } => {
                if !*header {
                    zeek::write_header(out, open)?;
                    *header = true;
                }
                zeek::write_record(out, r)
            }
            Sink::Table { out, header } => {
                if !*header {
                    table::write_header(out)?;
                    *header = true;
                }
                table::write_record(out, r)
            }
        }
    }

    fn finish(&mut self, open: Timestamp, close: Timestamp) -> io::Result<()> {
        match self {
            Sink::Json { out, .. } => out.flush(),
            Sink::Zeek { out, header } => {
                if !*header {
                    zeek::write_header(out, open)?;
                }
                zeek::write_footer(out, close)?;
                out.flush()
            }
            Sink::Table { out, .. } => out.flush(),
        }
    }
}

/// Opens `target` for writing (`-` is standard output).
pub fn open_out(target: &str) -> Result<Box<dyn Write + Send>> {
    if target == "-" {
        Ok(Box::new(BufWriter::with_capacity(1 << 16, io::stdout())))
    } else {
        let f =
            File::create(target).with_context(|| format!("cannot create output file {target}"))?;
        Ok(Box::new(BufWriter::with_capacity(1 << 16, f)))
    }
}

enum Msg {
    /// A batch, and where to return it once emptied.
    Records(Timestamp, Vec<Ended>, Sender<Vec<Ended>>),
    Finish(Timestamp, Timestamp),
}

/// What the writer did: records written and the first write error, if any.
pub struct Written {
    /// Records written (each to every sink).
    pub records: u64,
    /// The first error met; writing stops at it.
    pub error: Option<io::Error>,
    /// What detection raised, when it ran.
    pub alerts: Option<AlertReport>,
}

/// What the store thread receives.
pub enum StoreBatch {
    /// Flow records.
    Flows(Vec<FlowRecord>),
    /// Alerts.
    Alerts(Vec<Alert>),
}

/// The writer thread.
pub struct RecordWriter {
    tx: SyncSender<Msg>,
    handle: JoinHandle<Written>,
}

impl RecordWriter {
    /// Starts the thread that owns `sinks` and `alerting`; each batch, once written to
    /// the sinks and seen by the detectors, is handed to `forward` (the store sink) with
    /// its alerts when there is one.
    pub fn spawn(
        mut sinks: Vec<Sink>,
        forward: Option<SyncSender<StoreBatch>>,
        mut alerting: Option<AlertSink>,
    ) -> Result<Self> {
        let (tx, rx) = sync_channel::<Msg>(IN_FLIGHT);
        let handle = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut w = Written {
                    records: 0,
                    error: None,
                    alerts: None,
                };
                let mut raised: Vec<Alert> = Vec::new();
                for msg in rx {
                    match msg {
                        Msg::Records(open, mut flows, back) => {
                            w.records += flows.len() as u64;
                            // After an error, keep draining so senders never block.
                            // The store gets the built records of the batch too.
                            let mut built =
                                forward.as_ref().map(|_| Vec::with_capacity(flows.len()));
                            for flow in flows.drain(..) {
                                if w.error.is_some() && built.is_none() && alerting.is_none() {
                                    continue;
                                }
                                let r = flow.into_record();
                                if let Some(a) = alerting.as_mut() {
                                    a.record(&r, &mut raised);
                                }
                                if w.error.is_none() {
                                    for s in sinks.iter_mut() {
                                        if let Err(e) = s.write(&r, open) {
                                            w.error = Some(e);
                                            break;
                                        }
                                    }
                                }
                                if let Some(b) = built.as_mut() {
                                    b.push(r);
                                }
                            }
                            if let (Some(f), Some(b)) = (&forward, built) {
                                // Fails only if the store thread is gone; it reports why.
                                let _ = f.send(StoreBatch::Flows(b));
                            }
                            send_alerts(&forward, &mut raised);
                            // The producer may be gone already; then the batch is freed.
                            let _ = back.send(flows);
                        }
                        Msg::Finish(open, close) => {
                            if let Some(a) = alerting.as_mut() {
                                a.finish(&mut raised);
                                send_alerts(&forward, &mut raised);
                            }
                            for s in sinks.iter_mut() {
                                if let Err(e) = s.finish(open, close) {
                                    w.error.get_or_insert(e);
                                }
                            }
                        }
                    }
                }
                w.alerts = alerting.map(AlertSink::report);
                w
            })
            .context("cannot start the writer thread")?;
        Ok(RecordWriter { tx, handle })
    }

    /// A batching handle for one producer thread.
    pub fn sender(&self) -> RecordSender {
        let (back, returned) = channel();
        RecordSender {
            batch: Vec::with_capacity(BATCH),
            open: Timestamp::default(),
            tx: self.tx.clone(),
            back,
            returned,
        }
    }

    /// Flushes every sink (with the Zeek footer) and waits for the thread. Every
    /// sender must have been flushed before.
    pub fn finish(self, open: Timestamp, close: Timestamp) -> Written {
        let _ = self.tx.send(Msg::Finish(open, close));
        drop(self.tx);
        self.handle.join().unwrap_or_else(|_| Written {
            records: 0,
            error: Some(io::Error::other("the writer thread panicked")),
            alerts: None,
        })
    }
}

/// Hands the alerts raised so far to the store, when there is one.
fn send_alerts(forward: &Option<SyncSender<StoreBatch>>, raised: &mut Vec<Alert>) {
    if raised.is_empty() {
        return;
    }
    let batch = std::mem::take(raised);
    if let Some(f) = forward {
        let _ = f.send(StoreBatch::Alerts(batch));
    }
}

/// Collects one producer's records into batches for the writer.
pub struct RecordSender {
    batch: Vec<Ended>,
    /// The first packet time of the run so far (the Zeek header's `#open`).
    pub open: Timestamp,
    tx: SyncSender<Msg>,
    back: Sender<Vec<Ended>>,
    returned: Receiver<Vec<Ended>>,
}

impl RecordSender {
    /// Sends what is batched.
    pub fn flush(&mut self) {
        if !self.batch.is_empty() {
            let next = self
                .returned
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BATCH));
            let full = std::mem::replace(&mut self.batch, next);
            // Fails only if the writer is gone, which `RecordWriter::finish` reports.
            let _ = self
                .tx
                .send(Msg::Records(self.open, full, self.back.clone()));
        }
    }
}

impl FlowSink for RecordSender {
    fn ended(&mut self, flow: Ended) {
        self.batch.push(flow);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }
}
