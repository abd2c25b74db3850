//! The store sink of `tunnelwatch read`: the detection thread (the writer thread when
//! detection is off) hands each batch of records (after the text outputs and the
//! detectors have it) to this sink's own thread, which writes them to the
//! store in transactions.
//!
//! The store is opened, checked and the capture registered in [`StoreSink::start`],
//! before any packet is read or any output file created, so a locked, corrupt or too new
//! store stops `read` with nothing written. While records flow, the thread gathers
//! batches into one transaction until it holds 16 Ki records (at most [`MAX_TXN`]) or
//! half a second has passed, so commits are large when records come fast and still
//! frequent when they trickle; a kill loses at most the transaction being gathered.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tunnelwatch_model::{Alert, FlowRecord};

use crate::sinks::StoreBatch;
use tunnelwatch_store::{CaptureId, CaptureIdentity, Mode, Store, StoreError};

/// Most records in one store transaction.
pub const MAX_TXN: usize = 64 * 1024;
/// Fewest records a transaction waits for, unless [`GATHER`] passes first: each
/// transaction writes rollup segments, so many small ones cost more than few large.
const MIN_TXN: usize = 16 * 1024;
/// Longest a transaction waits for [`MIN_TXN`] records (wall time): a slow stream is
/// still committed twice a second.
const GATHER: std::time::Duration = std::time::Duration::from_millis(500);
/// Batches waiting for the store thread before the writer waits.
const IN_FLIGHT: usize = 64;

/// What the store thread did.
#[derive(Debug, Default)]
pub struct StoreReport {
    /// Records inserted or superseding interim ones.
    pub written: u64,
    /// Records already stored (a re-read).
    pub unchanged: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Alerts stored.
    pub alerts: u64,
}

/// The running store sink.
pub struct StoreSink {
    tx: SyncSender<StoreBatch>,
    handle: JoinHandle<(StoreReport, Option<StoreError>)>,
    path: PathBuf,
}

impl StoreSink {
    /// Opens the store at `db`, registers the capture set `inputs` (the readable ones,
    /// in order) and starts the thread.
    pub fn start(db: &Path, inputs: &[PathBuf]) -> Result<StoreSink> {
        let readable: Vec<PathBuf> = inputs.iter().filter(|p| p.is_file()).cloned().collect();
        Self::start_as(db, CaptureIdentity::of_files(&readable)?)
    }

    /// As [`StoreSink::start`] for an input that is not a file and never comes again
    /// (standard input, a live socket): its identity is `name` and the time it started,
    /// so a later collection neither takes its flows for a re-read nor deletes its
    /// alerts.
    pub fn start_stream(db: &Path, name: &str) -> Result<StoreSink> {
        let t = crate::netflow::wall_clock();
        let identity = CaptureIdentity::named(&format!(
            "{name} started {} ns, pid {}",
            t.as_nanos(),
            std::process::id()
        ));
        Self::start_as(db, identity)
    }

    fn start_as(db: &Path, identity: CaptureIdentity) -> Result<StoreSink> {
        let mut store = Store::open(db, Mode::ReadWrite)?;
        let cid = store.begin_capture(&identity)?;
        // Detection is deterministic: a re-read raises the same alerts again.
        store.delete_capture_alerts(cid)?;
        let (tx, rx) = sync_channel::<StoreBatch>(IN_FLIGHT);
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || run(store, cid, rx))
            .context("cannot start the store thread")?;
        Ok(StoreSink {
            tx,
            handle,
            path: db.to_path_buf(),
        })
    }

    /// Where the writer thread sends batches.
    pub fn sender(&self) -> SyncSender<StoreBatch> {
        self.tx.clone()
    }

    /// Waits for the thread after every sender is gone; the store's path, report and
    /// first error.
    pub fn finish(self) -> (PathBuf, StoreReport, Option<StoreError>) {
        drop(self.tx);
        let (report, err) = self.handle.join().unwrap_or_else(|_| {
            (
                StoreReport::default(),
                Some(StoreError::Invalid("the store thread panicked".into())),
            )
        });
        (self.path, report, err)
    }
}

fn run(
    mut store: Store,
    cid: CaptureId,
    rx: Receiver<StoreBatch>,
) -> (StoreReport, Option<StoreError>) {
    let mut report = StoreReport::default();
    let mut pending: Vec<FlowRecord> = Vec::with_capacity(MAX_TXN);
    let mut alerts: Vec<Alert> = Vec::new();
    let mut failed: Option<StoreError> = None;
    let take = |b: StoreBatch, pending: &mut Vec<FlowRecord>, alerts: &mut Vec<Alert>| match b {
        StoreBatch::Flows(f) => pending.extend(f),
        StoreBatch::Alerts(a) => alerts.extend(a),
    };
    while let Ok(first) = rx.recv() {
        if failed.is_some() {
            continue; // keep draining so the writer never blocks
        }
        take(first, &mut pending, &mut alerts);
        // Wall time only paces commits; it never changes what is stored.
        #[allow(clippy::disallowed_methods)]
        let deadline = std::time::Instant::now() + GATHER;
        while pending.len() < MAX_TXN {
            let b = match rx.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if pending.len() >= MIN_TXN => break,
                Err(TryRecvError::Empty) => {
                    #[allow(clippy::disallowed_methods)]
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(b) => b,
                        Err(_) => break,
                    }
                }
            };
            take(b, &mut pending, &mut alerts);
        }
        match store.insert_flows(cid, &pending) {
            Ok(s) => {
                report.written += s.written;
                report.unchanged += s.unchanged;
                report.commits += 1;
            }
            Err(e) => failed = Some(e),
        }
        pending.clear();
        // Alerts follow the flows they name, each batch in its own transaction.
        if failed.is_none() && !alerts.is_empty() {
            match store.insert_alerts(Some(cid), &alerts) {
                Ok(n) => report.alerts += n,
                Err(e) => failed = Some(e),
            }
            alerts.clear();
        }
    }
    if failed.is_none() {
        if let Err(e) = store.finish_capture(cid) {
            failed = Some(e);
        }
    }
    (report, failed)
}
