//! Output files written past the page cache.
//!
//! `read` writes its flow records (about 1.3 kB of JSON a flow, hundreds of megabytes a
//! capture) to a file nothing reads back soon. Through the page cache every byte is
//! copied into a freshly allocated cache page, and on the benchmark machine that copy
//! cost more CPU time than formatting the JSON (3-7 s of kernel time for 830 MB, against
//! 0.1 s written directly), time taken from the packet thread on a two-core machine; the
//! cache pages also push the capture being read out of memory. Arkime writes its
//! packet files this way for the same reasons.
//!
//! [`DirectFile`] gathers writes into aligned 1 MiB blocks written with `O_DIRECT`. A
//! flush writes the partial block padded to the alignment and truncates the file to its
//! true length; later writes go on from the partial block. Where the file system
//! refuses `O_DIRECT` (some network and FUSE file systems, tmpfs before Linux 6.6: at
//! open or at the first write) the same blocks go through the page cache instead, so
//! the bytes on disk are the same either way. Platforms without `O_DIRECT` always do
//! that.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes gathered before a write.
const BLOCK: usize = 1 << 20;
/// Alignment of the buffer, the lengths and the offsets of direct writes (the largest
/// logical block size in use).
const ALIGN: usize = 4096;

/// A file written in whole aligned blocks, past the page cache when it can be.
pub struct DirectFile {
    file: File,
    path: PathBuf,
    /// `BLOCK + ALIGN` bytes; the block starts at `start`, aligned.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of the block in use.
    len: usize,
    /// Bytes of the block a flush has written already.
    flushed: usize,
    /// File offset of the block (all before it is written).
    at: u64,
    /// Whether the file is open with `O_DIRECT`.
    direct: bool,
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

impl DirectFile {
    /// Creates (or truncates) `path`; `direct: false` writes through the page cache.
    pub fn create(path: &Path, direct: bool) -> io::Result<Self> {
        let (file, direct) = match direct.then(|| open_direct(path)) {
            Some(Ok(f)) => (f, true),
            _ => (File::create(path)?, false),
        };
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Ok(DirectFile {
            file,
            path: path.to_path_buf(),
            buf,
            start,
            len: 0,
            flushed: 0,
            at: 0,
            direct,
        })
    }

    /// Writes the block's first `n` bytes at its offset (the file position).
    fn write_block(&mut self, n: usize) -> io::Result<()> {
        match self.file.write_all(&self.buf[self.start..self.start + n]) {
            // Accepted at open, refused at write (EINVAL): the page cache from here on.
            Err(e) if self.direct && e.kind() == io::ErrorKind::InvalidInput => {
                self.file = OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                self.file.seek(SeekFrom::Start(self.at))?;
                self.file.write_all(&self.buf[self.start..self.start + n])
            }
            r => r,
        }
    }
}

impl Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.len);
        let s = self.start + self.len;
        self.buf[s..s + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == BLOCK {
            self.write_block(BLOCK)?;
            self.at += BLOCK as u64;
            self.len = 0;
            self.flushed = 0;
        }
        Ok(n)
    }

    /// Writes the partial block (padded to the alignment, the file then cut to its true
    /// length, when direct); it stays in the buffer for the writes that follow.
    fn flush(&mut self) -> io::Result<()> {
        if self.len == self.flushed {
            return Ok(());
        }
        let n = if self.direct {
            self.len.next_multiple_of(ALIGN)
        } else {
            self.len
        };
        let s = self.start + self.len;
        self.buf[s..self.start + n].fill(0);
        self.write_block(n)?;
        // Back to the block's offset: it is written again, whole or longer, next time.
        self.file.seek(SeekFrom::Start(self.at))?;
        self.file.set_len(self.at + self.len as u64)?;
        self.flushed = self.len;
        Ok(())
    }
}

impl Drop for DirectFile {
    /// What was written is kept, as a `BufWriter` keeps it (errors cannot be reported
    /// here; callers flush first).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("tw-direct-{}-{name}", std::process::id()))
    }

    /// Writes pieces of many sizes, flushing now and then and writing on after it,
    /// and compares the file with what was written, in both modes.
    fn round_trip(dir: &Path, direct: bool) {
        let path = temp(dir, if direct { "direct" } else { "cached" });
        let mut expect = Vec::new();
        {
            let mut f = DirectFile::create(&path, direct).unwrap();
            let opened_direct = f.direct;
            assert!(direct || !f.direct);
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for i in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = (x % 20_000) as usize * if i % 50 == 0 { 100 } else { 1 };
                let piece: Vec<u8> = (0..n).map(|j| (j as u64 ^ x) as u8).collect();
                f.write_all(&piece).unwrap();
                expect.extend_from_slice(&piece);
                if i % 37 == 0 {
                    f.flush().unwrap();
                    assert_eq!(std::fs::read(&path).unwrap(), expect, "after flush {i}");
                }
            }
            f.flush().unwrap();
            // Every write was aligned: none fell back to the page cache.
            assert_eq!(f.direct, opened_direct, "{}", dir.display());
        }
        assert!(expect.len() > 3 * BLOCK);
        assert_eq!(std::fs::read(&path).unwrap(), expect);
        // Dropped without a flush: what was written is there.
        {
            let mut f = DirectFile::create(&path, direct).unwrap();
            f.write_all(b"partial block").unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"partial block");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_file_holds_exactly_what_was_written() {
        let dir = std::env::temp_dir();
        round_trip(&dir, true);
        round_trip(&dir, false);
        // Another file system (tmpfs: it refused O_DIRECT before Linux 6.6).
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            round_trip(shm, true);
        }
    }
}
