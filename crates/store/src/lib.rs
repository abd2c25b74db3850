//! The embedded store of tunnelwatch: one SQLite file (WAL mode, no server) holding
//! flow records (final ones in compressed blocks of 2,048 with a Bloom filter of their
//! addresses, `blocks.rs`), alerts, learnt profiles, the captures they came from, and
//! the rollups (client, server:port, client→server:port per hour and all time, as
//! segments, [`rollup`]; per minute for the time view) that the views read so they
//! never scan raw flows.
//!
//! What it guarantees:
//! - **Versioned schema.** `PRAGMA user_version` holds the schema version; numbered
//!   migrations ([`schema`]) bring an older store up to date in one transaction each.
//!   A store from a newer tunnelwatch is refused before anything is written.
//! - **Atomic batches.** [`Store::insert_flows`] writes a batch of records and the
//!   rollup segments they cause in one transaction: a store killed at any point holds
//!   whole committed batches, and its rollups agree with its flows.
//! - **Idempotent re-reads.** A flow is unique by (capture identity, `uid`): reading a
//!   completed capture again changes nothing, an interrupted one resumes where it
//!   stopped; an interim record (`cause: status`) is superseded by a later record of
//!   the same `uid`. Only final records count in the rollups.
//! - **No SQL from user text.** Alert filters ([`filter`]) compile to SQL built only
//!   from fixed fragments, every typed value a bound parameter; flow filters are
//!   evaluated on stored rows and never become SQL.
//!
//! It leaves to others: producing records (the sensor), scheduling (the CLI runs the
//! store on its own thread), and presentation of the views ([`views`] returns trees;
//! text and JSON rendering live there too so the CLI stays thin).
#![deny(missing_docs)]

mod addr;
pub mod alert;
mod blocks;
mod capture;
mod codec;
mod error;
pub mod export;
mod fast;
pub mod filter;
pub mod hosts;
mod ingest;
pub mod profiles;
pub mod query;
pub mod rollup;
pub mod schema;
pub mod time;
pub mod views;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use addr::{addr_from_blob, addr_to_blob};
pub use capture::CaptureIdentity;
pub use error::StoreError;
pub use hosts::HostActivity;
pub use ingest::InsertStats;
pub use profiles::{ProfileRow, StoredProfiles};
/// The SQLite driver, for tools and tests that inspect a store directly.
pub use rusqlite as sqlite;
pub use tunnelwatch_model::{Alert, Category, Severity};

/// The file a store lives in when no `--db` is given.
pub const DEFAULT_PATH: &str = "tunnelwatch.db";

/// `PRAGMA application_id` of a tunnelwatch store ("twst"): a SQLite file of another
/// program is refused instead of being migrated.
pub const APPLICATION_ID: i32 = 0x7477_7374;

/// How long a writer waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(2000);

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create the file if missing, migrate the schema, accept writes.
    ReadWrite,
    /// Queries only: the file must exist and be at the current schema version.
    ReadOnly,
}

/// An open store.
pub struct Store {
    /// Checkpoints the WAL of a writer on its own thread (declared before `conn`: it
    /// stops and closes first, so the writer's close does the last checkpoint).
    checkpointer: Option<Checkpointer>,
    conn: Connection,
    path: PathBuf,
    /// The capture being written, once `insert_flows` has seen it.
    ingest: Option<ingest::Ingest>,
    /// One block builder per ingest thread (their buffers kept between batches).
    builders: Vec<blocks::BlockBuilder>,
    /// Rollup deltas of the transaction being written (kept for their room).
    deltas: rollup::Deltas,
}

/// A thread with its own connection that runs a passive WAL checkpoint whenever poked:
/// it copies committed pages into the file while the writer goes on (SQLite lets one
/// checkpointer run beside one writer), so commits only append to the WAL.
struct Checkpointer {
    poke: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn spawn(conn: Connection) -> Option<Checkpointer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                for () in rx {
                    // A busy or failed checkpoint is retried at the next poke; the WAL
                    // keeps every commit meanwhile.
                    let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
                }
            })
            .ok()?;
        Some(Checkpointer {
            poke: Some(tx),
            thread: Some(thread),
        })
    }

    fn poke(&self) {
        if let Some(p) = &self.poke {
            // Full: a checkpoint is pending and will include this commit.
            let _ = p.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.poke.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The id of a capture (or of a set of captures read as one stream) in this store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureId(pub i64);

/// Threads that build flow blocks in one batch: the available cores, at most 4.
fn ingest_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl Store {
    /// Opens (and for [`Mode::ReadWrite`] creates and migrates) the store at `path`.
    ///
    /// Nothing is written before the file is known to be a tunnelwatch store (or an
    /// empty file) of a schema version this build understands.
    pub fn open(path: &Path, mode: Mode) -> Result<Store, StoreError> {
        let p = path.to_path_buf();
        if mode == Mode::ReadOnly && !path.exists() {
            return Err(StoreError::Missing { path: p });
        }
        let flags = match mode {
            Mode::ReadWrite => {
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
            }
            Mode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        };
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::from_sql(&p, "opening", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| StoreError::from_sql(&p, "opening", e))?;
        let mut store = Store {
            checkpointer: None,
            conn,
            path: p,
            ingest: None,
            builders: (0..ingest_threads())
                .map(|_| blocks::BlockBuilder::default())
                .collect(),
            deltas: rollup::Deltas::default(),
        };
        schema::check_and_migrate(&mut store.conn, &store.path, mode)?;
        if mode == Mode::ReadWrite {
            store.tune()?;
        }
        Ok(store)
    }

    fn tune(&mut self) -> Result<(), StoreError> {
        // NORMAL is durable at every WAL checkpoint and atomic at every commit: a
        // killed process loses at most the last uncommitted batch, never consistency.
        // The writer's pages are mostly new ones: a page cache beyond 64 MB only kept
        // them (a 1 GB cache grew `read` by up to a gigabyte and slowed ingest).
        self.conn
            .execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA cache_size = -65536;",
            )
            .map_err(|e| self.sql("tuning", e))?;
        // Checkpoints (copying the WAL into the file, and its fsync) are done by a
        // thread of their own after each batch of flows, not inside the commit: ingest
        // goes on meanwhile. SQLite's own checkpoint inside a commit stays as a backstop
        // (writes that do not poke the thread, a thread that cannot keep up), at 256 MiB
        // of WAL instead of its default 1,000 pages; without the thread, the default.
        if let Ok(c) = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            if let Some(cp) = Checkpointer::spawn(c) {
                let page: i64 = self
                    .conn
                    .query_row("PRAGMA page_size", [], |r| r.get(0))
                    .map_err(|e| self.sql("tuning", e))?;
                self.conn
                    .pragma_update(None, "wal_autocheckpoint", (256 << 20) / page.max(512))
                    .map_err(|e| self.sql("tuning", e))?;
                self.checkpointer = Some(cp);
            }
        }
        Ok(())
    }

    /// Asks for a WAL checkpoint (after a commit); one already pending covers it.
    pub(crate) fn checkpoint_soon(&self) {
        if let Some(cp) = &self.checkpointer {
            cp.poke();
        }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for tests and tools that inspect the schema.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn sql(&self, what: &'static str, e: rusqlite::Error) -> StoreError {
        StoreError::from_sql(&self.path, what, e)
    }

    /// Counts of what the store holds: (final flows, interim flows, alerts, captures).
    pub fn counts(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let q = |sql: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(|e| self.sql("counting", e))
        };
        Ok((
            q("SELECT coalesce(sum(records), 0) FROM flow_blocks")?,
            q("SELECT count(*) FROM flows_interim")?,
            q("SELECT count(*) FROM alerts")?,
            q("SELECT count(*) FROM captures")?,
        ))
    }

    /// Runs SQLite's `PRAGMA integrity_check`; `Ok(())` when the file is sound.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let v: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.sql("checking integrity", e))?;
        if v == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: v,
            })
        }
    }
}

/// A small final or interim TCP record for the store's unit tests.
#[cfg(test)]
pub(crate) fn test_flow(
    uid: &str,
    orig: &str,
    resp: &str,
    port: u16,
    start_s: i64,
    fin: bool,
) -> tunnelwatch_model::FlowRecord {
    use tunnelwatch_model::{Cause, ConnState, Dynamics, FlowRecord, Timestamp};
    let ts = Timestamp(start_s * 1_000_000_000);
    FlowRecord {
        uid: uid.into(),
        community_id: format!("1:{uid}"),
        ts,
        last_ts: ts,
        duration: 0.0,
        proto: "tcp".into(),
        ip_proto: 6,
        orig_h: orig.parse().expect("test address"),
        orig_p: 40000,
        resp_h: resp.parse().expect("test address"),
        resp_p: port,
        service: None,
        orig_pkts: 1,
        resp_pkts: 1,
        orig_bytes: 0,
        resp_bytes: 0,
        orig_ip_bytes: 40,
        resp_ip_bytes: 40,
        conn_state: ConnState::SF,
        history: "ShAFf".into(),
        cause: if fin { Cause::End } else { Cause::Status },
        missed_bytes: 0,
        vlan: None,
        inner_vlan: None,
        tunnel_parents: Vec::new(),
        signatures: Vec::new(),
        dynamics: Dynamics::default(),
        tcp: None,
        icmp: None,
        app: None,
        export: None,
    }
}
