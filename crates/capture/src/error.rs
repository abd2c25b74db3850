//! Errors of packet sources. Each names the input and, for damaged content, the byte
//! offset of the record that could not be read, so it can be found in a hex editor or
//! Wireshark. Packets before the damage have already been returned when one of these is
//! raised.

use std::io;
use std::path::PathBuf;

/// Why a capture could not be read (further).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The input.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Reading failed.
    #[error("{}: read error at byte offset {offset}: {source}", path.display())]
    Read {
        /// The input.
        path: PathBuf,
        /// Offset reached.
        offset: u64,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The file is empty.
    #[error("{}: empty file (0 bytes), not a pcap or pcapng capture", path.display())]
    Empty {
        /// The input.
        path: PathBuf,
    },
    /// The file does not start with a pcap or pcapng magic number.
    #[error(
        "{}: not a pcap or pcapng capture: starts with bytes {:02x} {:02x} {:02x} {:02x} \
         (expected a1b2c3d4 / a1b23c4d in either byte order, or 0a0d0d0a)",
        path.display(), magic[0], magic[1], magic[2], magic[3]
    )]
    NotACapture {
        /// The input.
        path: PathBuf,
        /// The first four bytes.
        magic: [u8; 4],
    },
    /// The input ends inside a record.
    #[error(
        "{}: truncated record at byte offset {offset}: needs {needed} bytes, only {available} remain",
        path.display()
    )]
    Truncated {
        /// The input.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// Bytes the record declares.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A record declares an impossible size.
    #[error(
        "{}: oversized record at byte offset {offset}: {length} bytes declared, limit {limit}",
        path.display()
    )]
    Oversized {
        /// The input.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// Declared length.
        length: usize,
        /// Largest accepted.
        limit: usize,
    },
    /// A record or block is structurally broken.
    #[error("{}: corrupt capture at byte offset {offset}: {what}", path.display())]
    Corrupt {
        /// The input.
        path: PathBuf,
        /// Offset of the record or block.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

impl CaptureError {
    /// Byte offset of the damage, when the error is about content.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Read { offset, .. }
            | CaptureError::Truncated { offset, .. }
            | CaptureError::Oversized { offset, .. }
            | CaptureError::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}
