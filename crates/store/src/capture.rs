//! Capture identity: what makes "the same capture" when it is read twice.
//!
//! A capture is identified by its size and SHA-256 digests of its first and last MiB,
//! not by its path (a copy elsewhere is the same capture; a file rewritten in place is
//! not) and not by a digest of the whole file (reading gigabytes twice to start a run
//! would cost more than the run). Several inputs read as one stream are identified by
//! the ordered list of their identities: flows may span files, so such a set is one
//! capture for the store.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::StoreError;

const EDGE: u64 = 1 << 20;

/// The identity of one input or of an ordered set of inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureIdentity {
    /// Hex digest naming the input set.
    pub digest: String,
    /// Paths as given.
    pub paths: Vec<PathBuf>,
    /// Total size in bytes.
    pub bytes: u64,
}

impl CaptureIdentity {
    /// Computes the identity of `paths` read in this order.
    pub fn of_files(paths: &[PathBuf]) -> Result<CaptureIdentity, StoreError> {
        let mut set = Sha256::new();
        let mut total = 0u64;
        for p in paths {
            let io = |source| StoreError::Io {
                path: p.clone(),
                source,
            };
            let mut f = File::open(p).map_err(io)?;
            let len = f.metadata().map_err(io)?.len();
            total = total.saturating_add(len);
            set.update(len.to_le_bytes());
            set.update(edge_digest(&mut f, 0, len.min(EDGE)).map_err(io)?);
            let tail = len.saturating_sub(EDGE);
            set.update(edge_digest(&mut f, tail, len - tail).map_err(io)?);
        }
        Ok(CaptureIdentity {
            digest: hex(&set.finalize()),
            paths: paths.to_vec(),
            bytes: total,
        })
    }

    /// An identity for records that do not come from files (tests, other sources).
    pub fn named(name: &str) -> CaptureIdentity {
        CaptureIdentity {
            digest: format!("name:{name}"),
            paths: Vec::new(),
            bytes: 0,
        }
    }
}

fn edge_digest(f: &mut File, from: u64, len: u64) -> std::io::Result<[u8; 32]> {
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(len as usize);
    f.by_ref().take(len).read_to_end(&mut buf)?;
    Ok(Sha256::digest(&buf).into())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
