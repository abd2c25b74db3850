//! Store errors: each names the store file and says what went wrong in one line a user
//! can act on (upgrade, wait for the other process, restore the file).

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::filter::FilterError;

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A query was asked of a store file that does not exist.
    #[error("{}: no store here (run `tunnelwatch read CAPTURE --db {}` first)", path.display(), path.display())]
    Missing {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not an SQLite database, is damaged, or belongs to another program.
    #[error("{}: not a usable tunnelwatch store: {detail}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What SQLite or the schema check found.
        detail: String,
    },
    /// The store was written by a newer tunnelwatch.
    #[error("{}: store schema version {found} is newer than this tunnelwatch supports (version {supported}); upgrade tunnelwatch or use another --db", path.display())]
    TooNew {
        /// The store file.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The stored profiles cannot be used with this configuration.
    #[error("{}: {detail}", path.display())]
    Profiles {
        /// The store file.
        path: PathBuf,
        /// Why, and what to do.
        detail: String,
    },
    /// Another process holds the write lock longer than [`crate::BUSY_TIMEOUT`].
    #[error("{}: store is locked by another process (gave up after {} ms while {what}); wait for it to finish or use another --db", path.display(), crate::BUSY_TIMEOUT.as_millis())]
    Locked {
        /// The store file.
        path: PathBuf,
        /// What the store was doing.
        what: &'static str,
    },
    /// Any other SQLite failure.
    #[error("{}: store error while {what}: {source}", path.display())]
    Sql {
        /// The store file.
        path: PathBuf,
        /// What the store was doing.
        what: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A filter that does not parse or names an unknown field.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Reading a capture (for its identity) or writing an export failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored record could not be decoded (the store was edited by hand?).
    #[error("{}: stored record {id} is not valid: {detail}", path.display())]
    BadRecord {
        /// The store file.
        path: PathBuf,
        /// Row id of the record.
        id: i64,
        /// What is wrong.
        detail: String,
    },
    /// An invalid argument (period, time bound…).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Maps a SQLite error to the variant a user can act on.
    pub(crate) fn from_sql(path: &Path, what: &'static str, e: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path, what }
            }
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt {
                    path,
                    detail: format!("{e} (while {what})"),
                }
            }
            _ => StoreError::Sql {
                path,
                what,
                source: e,
            },
        }
    }
}
