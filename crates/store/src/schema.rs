//! The store's schema and its numbered migrations.
//!
//! `PRAGMA user_version` is the schema version; `PRAGMA application_id` marks the file
//! as a tunnelwatch store. [`MIGRATIONS`]`[i]` takes a store from version `i` to `i + 1`
//! and runs in one transaction with the version bump, so a store is always at one
//! whole version. A migration is never edited once released: changes are new entries.
//! The tables are specified in `docs/specs/store.md`.

use std::path::Path;

use rusqlite::Connection;

use crate::{Mode, StoreError, APPLICATION_ID};

/// Version 1: captures, flows, alerts, profiles and the rollups.
const V1: &str = r#"
CREATE TABLE captures (
    id          INTEGER PRIMARY KEY,
    identity    TEXT NOT NULL UNIQUE,   -- hash of (size, first MiB, last MiB) of each input, in order
    paths       TEXT NOT NULL,          -- JSON array of the paths as given
    bytes       INTEGER NOT NULL,
    first_read  INTEGER,                -- packet time (µs) of the first record stored, for display
    records     INTEGER NOT NULL DEFAULT 0,
    complete    INTEGER NOT NULL DEFAULT 0  -- 1 once a read of it finished
);

CREATE TABLE flows (
    id            INTEGER PRIMARY KEY,
    capture_id    INTEGER NOT NULL REFERENCES captures(id),
    uid           TEXT NOT NULL,
    community_id  TEXT NOT NULL,
    ts            INTEGER NOT NULL,      -- µs since the epoch (first packet)
    last_ts       INTEGER NOT NULL,      -- µs
    duration      REAL NOT NULL,         -- s
    proto         TEXT NOT NULL,
    orig_h        BLOB NOT NULL,         -- 16 bytes, IPv4 mapped
    orig_p        INTEGER NOT NULL,
    resp_h        BLOB NOT NULL,
    resp_p        INTEGER NOT NULL,
    service       TEXT,
    orig_pkts     INTEGER NOT NULL,
    resp_pkts     INTEGER NOT NULL,
    orig_bytes    INTEGER NOT NULL,
    resp_bytes    INTEGER NOT NULL,
    orig_ip_bytes INTEGER NOT NULL,
    resp_ip_bytes INTEGER NOT NULL,
    conn_state    TEXT NOT NULL,
    history       TEXT NOT NULL,
    cause         TEXT NOT NULL,
    final         INTEGER NOT NULL,      -- 0 for an interim record (cause = status)
    record        BLOB NOT NULL          -- the whole record, JSON as `read --flows` writes it,
                                         -- LZ4-compressed (block format, u32 LE size first)
);
-- (capture, ts, uid) rather than (capture, uid): a record's ts is its flow's start, the
-- same for its interim and final records, and records arrive roughly in ts order, so
-- this index grows at its right edge instead of at random places.
CREATE UNIQUE INDEX flows_capture_uid ON flows (capture_id, ts, uid);
CREATE INDEX flows_ts ON flows (ts);
CREATE INDEX flows_orig ON flows (orig_h, ts);
CREATE INDEX flows_resp ON flows (resp_h, ts);

CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    capture_id    INTEGER REFERENCES captures(id),
    ts            INTEGER NOT NULL,      -- µs
    uids          TEXT NOT NULL,         -- JSON array
    community_id  TEXT,
    orig_h        BLOB,
    resp_h        BLOB,
    detector      TEXT NOT NULL,
    category      TEXT NOT NULL,
    severity      INTEGER NOT NULL,      -- 1 low, 2 medium, 3 high
    score         REAL NOT NULL,
    message       TEXT NOT NULL,
    evidence      TEXT NOT NULL,         -- JSON object
    record        TEXT NOT NULL          -- the whole alert, JSON
);
CREATE INDEX alerts_ts ON alerts (ts);
CREATE INDEX alerts_orig ON alerts (orig_h);
CREATE INDEX alerts_resp ON alerts (resp_h);

-- Learnt profiles (the learning-period issue fills this): one row per
-- (client, server, port, period slot), the statistics as JSON.
CREATE TABLE profiles (
    id           INTEGER PRIMARY KEY,
    client       BLOB NOT NULL,
    server       BLOB,
    port         INTEGER,
    period_secs  INTEGER NOT NULL,
    slot         INTEGER NOT NULL,
    stats        TEXT NOT NULL,
    updated_ts   INTEGER NOT NULL,
    UNIQUE (client, server, port, period_secs, slot)
);

-- Rollups of final records, maintained in the transaction that inserts them.
-- hour = floor(ts / 3600 s), minute = floor(ts / 60 s) of the record's first packet.
-- out = sent by the client (originator), in = received by it.
CREATE TABLE roll_pair (
    hour INTEGER NOT NULL, client BLOB NOT NULL, server BLOB NOT NULL, port INTEGER NOT NULL,
    conns INTEGER NOT NULL, pkts_out INTEGER NOT NULL, pkts_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL, bytes_in INTEGER NOT NULL, dur_us INTEGER NOT NULL,
    first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,
    PRIMARY KEY (hour, client, server, port)
) WITHOUT ROWID;
CREATE INDEX roll_pair_client ON roll_pair (client, hour);
CREATE INDEX roll_pair_server ON roll_pair (server, port, hour);

CREATE TABLE roll_client (
    hour INTEGER NOT NULL, client BLOB NOT NULL,
    conns INTEGER NOT NULL, pkts_out INTEGER NOT NULL, pkts_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL, bytes_in INTEGER NOT NULL, dur_us INTEGER NOT NULL,
    first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,
    PRIMARY KEY (hour, client)
) WITHOUT ROWID;

CREATE TABLE roll_server (
    hour INTEGER NOT NULL, server BLOB NOT NULL, port INTEGER NOT NULL,
    conns INTEGER NOT NULL, pkts_out INTEGER NOT NULL, pkts_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL, bytes_in INTEGER NOT NULL, dur_us INTEGER NOT NULL,
    first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,
    PRIMARY KEY (hour, server, port)
) WITHOUT ROWID;

CREATE TABLE roll_minute (
    minute INTEGER NOT NULL PRIMARY KEY,
    conns INTEGER NOT NULL, pkts_out INTEGER NOT NULL, pkts_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL, bytes_in INTEGER NOT NULL, dur_us INTEGER NOT NULL,
    first_us INTEGER NOT NULL, last_us INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 2: final flow records in blocks of up to 2,048 (one row, a Bloom filter of
/// its addresses, LZ4-compressed meta rows and JSON: `blocks.rs`), interim records one
/// row each, rollups as segments (`rollup.rs`); the version-1 `flows` rows and
/// per-hour rollup tables are moved into them and dropped.
const V2: &str = r#"
CREATE TABLE flow_blocks (
    id          INTEGER PRIMARY KEY,
    capture_id  INTEGER NOT NULL REFERENCES captures(id),
    records     INTEGER NOT NULL,
    min_ts      INTEGER NOT NULL,      -- first-packet times (µs) of the block's records
    max_ts      INTEGER NOT NULL,
    hosts       BLOB NOT NULL,         -- Bloom filter of orig_h and resp_h
    keys        BLOB NOT NULL,         -- LZ4: each record's ts, orig_h, resp_h, resp_p
    meta        BLOB NOT NULL,         -- LZ4 frames: the records' queryable fields
    data        BLOB NOT NULL          -- LZ4 frames: the records (JSON in v2, stored form from v3)
);
CREATE INDEX flow_blocks_capture ON flow_blocks (capture_id);

CREATE TABLE flows_interim (
    capture_id  INTEGER NOT NULL REFERENCES captures(id),
    uid         TEXT NOT NULL,
    ts          INTEGER NOT NULL,      -- µs
    last_ts     INTEGER NOT NULL,      -- µs
    meta        BLOB NOT NULL,         -- one meta row, uncompressed
    record      BLOB NOT NULL,         -- LZ4 (u32 LE size first): the record (as in data)
    PRIMARY KEY (capture_id, uid)
) WITHOUT ROWID;

-- Rollups of final records as segments (`rollup.rs`): per kind (1 client→server:port,
-- 2 client, 3 server:port), one hour (floor(ts / 1 h) of the first packet) or all time
-- (hour NULL); entries sorted by key, LZ4. Replaces roll_pair, roll_client, roll_server.
CREATE TABLE rollup_segments (
    id          INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    hour        INTEGER,
    entries     INTEGER NOT NULL,
    data        BLOB NOT NULL
);
CREATE INDEX rollup_segments_kind_hour ON rollup_segments (kind, hour);
"#;

/// Version 3: records written from now on are kept in their binary stored form
/// (`codec.rs`, meta format 2) instead of JSON text, in blocks and interim rows alike;
/// what version 2 wrote keeps its JSON (meta format 1) and is read as it is. No table
/// changes: the step is there so that a build that reads only JSON refuses the file.
const V3: &str = "-- records in their stored form (meta format 2)";

/// One schema step.
pub enum Migration {
    /// SQL only.
    Sql(&'static str),
    /// SQL, then code that moves data.
    SqlThen(
        &'static str,
        fn(&rusqlite::Transaction<'_>) -> Result<(), String>,
    ),
}

/// The migrations, in order: entry `i` upgrades version `i` to `i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration::Sql(V1),
    Migration::SqlThen(V2, |tx| {
        crate::ingest::move_v1_flows(tx)?;
        crate::rollup::move_v1_rollups(tx)
    }),
    Migration::Sql(V3),
];

/// The schema version this build writes and reads.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Checks the file's identity and version, then (read-write) migrates it.
pub(crate) fn check_and_migrate(
    conn: &mut Connection,
    path: &Path,
    mode: Mode,
) -> Result<(), StoreError> {
    let err = |what, e| StoreError::from_sql(path, what, e);
    // The first read of the header: a file that is not SQLite fails here.
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| err("reading the schema header", e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| err("reading the schema header", e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| err("reading the schema", e))?;
    if app != APPLICATION_ID && !(app == 0 && version == 0 && tables == 0) {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "SQLite file of another program (application_id {app:#x}, expected {APPLICATION_ID:#x})"
            ),
        });
    }
    if version > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    if mode == Mode::ReadOnly {
        if version < VERSION {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "schema version {version} is older than {VERSION}; open it once with `tunnelwatch read` to migrate"
                ),
            });
        }
        return Ok(());
    }
    // A new store gets 64 KiB pages (set before its first table; WAL keeps a file's page
    // size): its rows are blocks and segments of tens to hundreds of kilobytes, which
    // 4 KiB pages cut into overflow chains. Ingest ran ~15 % faster, queries no slower.
    if tables == 0 {
        conn.pragma_update(None, "page_size", 65536)
            .map_err(|e| err("setting the page size", e))?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| err("switching to WAL mode", e))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let to = i as i64 + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| err("starting a migration", e))?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err("reading the schema header", e))?;
        if now >= to {
            continue;
        }
        let (sql, then) = match step {
            Migration::Sql(sql) => (sql, None),
            Migration::SqlThen(sql, f) => (sql, Some(f)),
        };
        tx.execute_batch(sql)
            .map_err(|e| err("migrating the schema", e))?;
        if let Some(f) = then {
            f(&tx).map_err(|detail| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("migrating to schema version {to}: {detail}"),
            })?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| err("migrating the schema", e))?;
        tx.pragma_update(None, "user_version", to)
            .map_err(|e| err("migrating the schema", e))?;
        tx.commit().map_err(|e| err("migrating the schema", e))?;
    }
    Ok(())
}
