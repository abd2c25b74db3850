//! Capture files: classic pcap (microsecond and nanosecond, both byte orders, the
//! "modified" variant) and pcapng (several sections and interfaces, per-interface link
//! types, time resolutions and offsets), read as a stream so files larger than memory
//! work, optionally gzip-compressed.
//!
//! Block and record headers are parsed with `pcap-parser`'s slice parsers; buffering,
//! offsets and error reporting are ours, so that every error names the file and the byte
//! offset of the damaged record, and every packet before the damage has already been
//! returned. Records that are merely odd (empty, longer than the snap length, from an
//! unknown link type) are returned or counted, never fatal.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pcap_parser::pcapng::{Block, EPB_MAGIC, IDB_MAGIC, SHB_MAGIC, SPB_MAGIC};
use tunnelwatch_decode::LinkType;
use tunnelwatch_model::Timestamp;

use crate::error::CaptureError;

/// Largest record accepted (a jumbo frame plus headers is far below; USB and
/// Bluetooth captures stay below 256 KiB). Anything larger is corruption.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

/// The container format of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Nanosecond timestamps.
        nanos: bool,
        /// Big-endian headers.
        big_endian: bool,
        /// Kuznetzov's modified format (24-byte record headers).
        modified: bool,
    },
    /// pcapng.
    PcapNg,
}

/// One packet record.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Link type of the interface it was captured on.
    pub link: LinkType,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire (≥ captured length).
    pub orig_len: u32,
    /// Offset of the record in the (decompressed) input.
    pub offset: u64,
    /// pcapng interface index (0 for pcap).
    pub interface: u32,
}

/// Counters of odd but readable input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderCounters {
    /// Packet records returned.
    pub records: u64,
    /// Records with no captured bytes.
    pub empty_records: u64,
    /// Records whose captured length exceeds the declared snap length.
    pub over_snaplen: u64,
    /// pcapng blocks of types that carry no packets we use (statistics, names, custom …).
    pub skipped_blocks: u64,
    /// pcapng packets referring to an interface that was never described.
    pub unknown_interface: u64,
    /// Captured length larger than the original length (clamped).
    pub caplen_over_origlen: u64,
    /// Original lengths beyond any real frame (16 MiB), replaced by the captured length.
    pub implausible_origlen: u64,
    /// Timestamps beyond the year 2262 (taken modulo 2^32 seconds, as classic pcap).
    pub ts_out_of_range: u64,
}

impl ReaderCounters {
    /// Adds another reader's counters (several inputs in one run).
    pub fn merge(&mut self, o: &ReaderCounters) {
        self.records += o.records;
        self.empty_records += o.empty_records;
        self.over_snaplen += o.over_snaplen;
        self.skipped_blocks += o.skipped_blocks;
        self.unknown_interface += o.unknown_interface;
        self.caplen_over_origlen += o.caplen_over_origlen;
        self.implausible_origlen += o.implausible_origlen;
        self.ts_out_of_range += o.ts_out_of_range;
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Units per second of timestamps.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset_secs: i64,
    snaplen: u32,
}

/// Counts bytes read from the underlying file (for progress on compressed input).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The bytes being parsed: a window refilled from a stream, or the whole file mapped.
enum Buffer {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Mapped(m) => m,
        }
    }
}

/// A streaming reader of one capture file.
pub struct CaptureFile {
    name: PathBuf,
    src: Box<dyn Read + Send>,
    buf: Buffer,
    pos: usize,
    len: usize,
    /// Offset in the input of `buf[pos]`.
    offset: u64,
    eof: bool,
    format: Format,
    /// Link type (pcap) or of the current section's interfaces (pcapng).
    link: LinkType,
    snaplen: u32,
    big_endian: bool,
    interfaces: Vec<Interface>,
    raw_read: Arc<AtomicU64>,
    file_len: Option<u64>,
    compressed: bool,
    counters: ReaderCounters,
    last_ts: Timestamp,
}

impl std::fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureFile")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("offset", &self.offset)
            .finish()
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl CaptureFile {
    /// Opens a capture file (gzip-compressed files are recognised by their magic).
    /// An uncompressed regular file is memory-mapped and parsed in place (no copy
    /// through a buffer); anything else is streamed through a 1 MiB window.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let file_len = file.metadata().ok().map(|m| m.len());
        if let Some(map) = Self::map(&file) {
            if !map.starts_with(&GZIP_MAGIC) {
                let len = map.len();
                let mut me = Self::new(
                    path.to_path_buf(),
                    Box::new(io::empty()),
                    Arc::new(AtomicU64::new(0)),
                    file_len,
                    false,
                    0,
                );
                me.buf = Buffer::Mapped(map);
                me.len = len;
                me.eof = true;
                me.read_header()?;
                return Ok(me);
            }
        }
        let raw_read = Arc::new(AtomicU64::new(0));
        let mut counting = Counting {
            inner: file,
            count: raw_read.clone(),
        };
        let mut head = [0u8; 2];
        let got = read_full(&mut counting, &mut head).map_err(|source| CaptureError::Read {
            path: path.to_path_buf(),
            offset: 0,
            source,
        })?;
        let prefix = head[..got].to_vec();
        let chained: Box<dyn Read + Send> =
            Box::new(io::Cursor::new(prefix.clone()).chain(counting));
        let (src, compressed): (Box<dyn Read + Send>, bool) = if prefix == GZIP_MAGIC {
            (
                Box::new(flate2::read::MultiGzDecoder::new(
                    io::BufReader::with_capacity(1 << 16, chained),
                )),
                true,
            )
        } else {
            (chained, false)
        };
        let mut me = Self::new(
            path.to_path_buf(),
            src,
            raw_read,
            file_len,
            compressed,
            1 << 20,
        );
        me.read_header()?;
        Ok(me)
    }

    /// Reads a capture from any byte stream (not decompressed); `name` appears in
    /// errors.
    pub fn from_reader(
        name: impl Into<PathBuf>,
        src: Box<dyn Read + Send>,
    ) -> Result<Self, CaptureError> {
        let mut me = Self::new(
            name.into(),
            src,
            Arc::new(AtomicU64::new(0)),
            None,
            false,
            1 << 16,
        );
        me.read_header()?;
        Ok(me)
    }

    /// Maps a non-empty regular file for reading, or `None` (the caller streams it).
    #[allow(unsafe_code)]
    fn map(file: &File) -> Option<memmap2::Mmap> {
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() == 0 {
            return None;
        }
        // SAFETY: the map is only read, as plain bytes, and every length read from it
        // is checked against its size. What mapping cannot guard against is another
        // process truncating the file while it is read (the read faults); captures
        // still being rotated or truncated should be read from standard input or a copy.
        let map = unsafe { memmap2::Mmap::map(file) }.ok()?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Some(map)
    }

    fn new(
        name: PathBuf,
        src: Box<dyn Read + Send>,
        raw_read: Arc<AtomicU64>,
        file_len: Option<u64>,
        compressed: bool,
        buffer: usize,
    ) -> Self {
        CaptureFile {
            name,
            src,
            buf: Buffer::Owned(vec![0; buffer]),
            pos: 0,
            len: 0,
            offset: 0,
            eof: false,
            format: Format::PcapNg,
            link: LinkType(0),
            snaplen: 0,
            big_endian: false,
            interfaces: Vec::new(),
            raw_read,
            file_len,
            compressed,
            counters: ReaderCounters::default(),
            last_ts: Timestamp(0),
        }
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file name given.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// True for gzip input.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Bytes of the underlying file read so far (compressed bytes for gzip input).
    pub fn input_bytes_read(&self) -> u64 {
        if self.compressed {
            self.raw_read.load(Ordering::Relaxed)
        } else {
            self.offset
        }
    }

    /// Size of the underlying file, when known.
    pub fn input_len(&self) -> Option<u64> {
        self.file_len
    }

    /// Counters of odd input so far.
    pub fn counters(&self) -> &ReaderCounters {
        &self.counters
    }

    /// Offset in the (decompressed) input of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes at least `n` bytes available at `pos`. Returns how many are available
    /// (less than `n` only at the end of input).
    #[inline]
    fn fill(&mut self, n: usize) -> Result<usize, CaptureError> {
        if self.len - self.pos >= n {
            return Ok(self.len - self.pos);
        }
        self.refill(n)
    }

    /// [`CaptureFile::fill`] when the bytes at hand are too few: reads more.
    #[cold]
    fn refill(&mut self, n: usize) -> Result<usize, CaptureError> {
        let Buffer::Owned(buf) = &mut self.buf else {
            return Ok(self.len - self.pos); // a mapped file is all there is
        };
        if self.pos > 0 {
            buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if buf.len() < n {
            buf.resize(n.next_power_of_two(), 0);
        }
        while self.len < n && !self.eof {
            match self.src.read(&mut buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Read {
                        path: self.name.clone(),
                        offset: self.offset + self.len as u64,
                        source,
                    })
                }
            }
        }
        Ok(self.len - self.pos)
    }

    /// The length on the wire: the original length, unless it is smaller than what
    /// was captured or beyond any real frame.
    fn wire_len(&mut self, caplen: usize, origlen: u32) -> u32 {
        if (origlen as usize) < caplen {
            self.counters.caplen_over_origlen += 1;
            caplen as u32
        } else if origlen as usize > MAX_RECORD {
            self.counters.implausible_origlen += 1;
            caplen as u32
        } else {
            origlen
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    fn read_header(&mut self) -> Result<(), CaptureError> {
        let avail = self.fill(24)?;
        if avail == 0 {
            return Err(CaptureError::Empty {
                path: self.name.clone(),
            });
        }
        if avail < 4 {
            return Err(CaptureError::Truncated {
                path: self.name.clone(),
                offset: 0,
                needed: 24,
                available: avail,
            });
        }
        let magic = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x34, 0xcd, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xcd, 0x34] => {
                if avail < 24 {
                    return Err(CaptureError::Truncated {
                        path: self.name.clone(),
                        offset: 0,
                        needed: 24,
                        available: avail,
                    });
                }
                let (_, h) =
                    pcap_parser::pcap::parse_pcap_header(&self.buf[..24]).map_err(|_| {
                        CaptureError::Corrupt {
                            path: self.name.clone(),
                            offset: 0,
                            what: "unreadable pcap file header".into(),
                        }
                    })?;
                self.format = Format::Pcap {
                    nanos: h.is_nanosecond_precision(),
                    big_endian: h.is_bigendian(),
                    modified: h.is_modified_format(),
                };
                self.link = LinkType(h.network.0 as u32);
                self.snaplen = h.snaplen;
                self.consume(24);
                Ok(())
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                self.format = Format::PcapNg;
                Ok(())
            }
            m => Err(CaptureError::NotACapture {
                path: self.name.clone(),
                magic: m,
            }),
        }
    }

    /// Returns the next packet, `None` at the end of input, or an error naming the
    /// offset of a damaged record (every earlier packet was already returned).
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        match self.format {
            Format::Pcap {
                nanos,
                big_endian,
                modified,
            } => self.next_pcap(nanos, big_endian, modified),
            Format::PcapNg => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        nanos: bool,
        be: bool,
        modified: bool,
    ) -> Result<Option<Packet<'_>>, CaptureError> {
        let hlen = if modified { 24 } else { 16 };
        let avail = self.fill(hlen)?;
        if avail == 0 {
            return Ok(None);
        }
        let at = self.offset;
        if avail < hlen {
            return Err(CaptureError::Truncated {
                path: self.name.clone(),
                offset: at,
                needed: hlen,
                available: avail,
            });
        }
        let h = &self.buf[self.pos..self.pos + hlen];
        let rd = |o: usize| {
            let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
            if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (ts_sec, ts_frac, caplen, origlen) = (rd(0), rd(4), rd(8) as usize, rd(12));
        if caplen > MAX_RECORD {
            return Err(CaptureError::Oversized {
                path: self.name.clone(),
                offset: at,
                length: caplen,
                limit: MAX_RECORD,
            });
        }
        let total = hlen + caplen;
        let avail = self.fill(total)?;
        if avail < total {
            return Err(CaptureError::Truncated {
                path: self.name.clone(),
                offset: at,
                needed: total,
                available: avail,
            });
        }
        // The record is complete: its header was read above, and its lengths are the
        // ones checked (pcap-parser's frame parser checks no more, and once per packet
        // it was a tenth of reading a record).
        if caplen == 0 {
            self.counters.empty_records += 1;
        }
        if self.snaplen != 0 && caplen as u32 > self.snaplen {
            self.counters.over_snaplen += 1;
        }
        let nanos_frac = if nanos {
            ts_frac
        } else {
            ts_frac.saturating_mul(1000)
        };
        let ts = Timestamp::from_secs_nanos(i64::from(ts_sec), nanos_frac);
        let start = self.pos + hlen;
        self.consume(total);
        self.counters.records += 1;
        let orig_len = self.wire_len(caplen, origlen);
        self.last_ts = ts;
        Ok(Some(Packet {
            ts,
            link: self.link,
            data: &self.buf[start..start + caplen],
            orig_len,
            offset: at,
            interface: 0,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        loop {
            let avail = self.fill(12)?;
            if avail == 0 {
                return Ok(None);
            }
            let at = self.offset;
            if avail < 12 {
                return Err(CaptureError::Truncated {
                    path: self.name.clone(),
                    offset: at,
                    needed: 12,
                    available: avail,
                });
            }
            let h = &self.buf[self.pos..self.pos + 12];
            let raw_type = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            if raw_type == SHB_MAGIC {
                // Byte order of the section from its byte-order magic.
                let bom = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
                self.big_endian = match bom {
                    0x1a2b_3c4d => false,
                    0x4d3c_2b1a => true,
                    _ => {
                        return Err(CaptureError::Corrupt {
                            path: self.name.clone(),
                            offset: at,
                            what: format!("section header with byte-order magic {bom:#010x}"),
                        })
                    }
                };
            }
            let big_endian = self.big_endian;
            let rd = move |b: &[u8]| {
                let a = [b[0], b[1], b[2], b[3]];
                if big_endian {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                }
            };
            let block_type = rd(&h[0..4]);
            let block_len = rd(&h[4..8]) as usize;
            if block_len < 12 || block_len % 4 != 0 {
                return Err(CaptureError::Corrupt {
                    path: self.name.clone(),
                    offset: at,
                    what: format!(
                        "pcapng block of type {block_type:#010x} with length {block_len}"
                    ),
                });
            }
            if block_len > MAX_RECORD {
                return Err(CaptureError::Oversized {
                    path: self.name.clone(),
                    offset: at,
                    length: block_len,
                    limit: MAX_RECORD,
                });
            }
            let avail = self.fill(block_len)?;
            if avail < block_len {
                return Err(CaptureError::Truncated {
                    path: self.name.clone(),
                    offset: at,
                    needed: block_len,
                    available: avail,
                });
            }
            let bytes = &self.buf[self.pos..self.pos + block_len];
            let trailer = rd(&bytes[block_len - 4..]) as usize;
            if trailer != block_len {
                return Err(CaptureError::Corrupt {
                    path: self.name.clone(),
                    offset: at,
                    what: format!("pcapng block length {block_len} but trailing length {trailer}"),
                });
            }
            match block_type {
                SHB_MAGIC => {
                    self.interfaces.clear();
                    self.consume(block_len);
                    continue;
                }
                IDB_MAGIC => {
                    let parsed = if self.big_endian {
                        pcap_parser::pcapng::parse_block_be(bytes)
                    } else {
                        pcap_parser::pcapng::parse_block_le(bytes)
                    };
                    let Ok((_, Block::InterfaceDescription(idb))) = parsed else {
                        return Err(CaptureError::Corrupt {
                            path: self.name.clone(),
                            offset: at,
                            what: "unreadable interface description block".into(),
                        });
                    };
                    let resolution = idb.ts_resolution().unwrap_or(1_000_000).max(1);
                    self.interfaces.push(Interface {
                        link: LinkType(idb.linktype.0 as u32),
                        resolution,
                        offset_secs: idb.ts_offset(),
                        snaplen: idb.snaplen,
                    });
                    self.consume(block_len);
                    continue;
                }
                EPB_MAGIC | 0x0000_0002 => {
                    // Enhanced packet block, or the obsolete packet block (interface id
                    // and drop count as two 16-bit fields).
                    if block_len < 32 {
                        return Err(CaptureError::Corrupt {
                            path: self.name.clone(),
                            offset: at,
                            what: format!("packet block of {block_len} bytes"),
                        });
                    }
                    let if_id = if block_type == EPB_MAGIC {
                        rd(&bytes[8..12])
                    } else {
                        let v = rd(&bytes[8..12]);
                        if self.big_endian {
                            v >> 16
                        } else {
                            v & 0xffff
                        }
                    };
                    let ts_high = rd(&bytes[12..16]);
                    let ts_low = rd(&bytes[16..20]);
                    let caplen = rd(&bytes[20..24]) as usize;
                    let origlen = rd(&bytes[24..28]);
                    if 28 + caplen > block_len - 4 {
                        return Err(CaptureError::Corrupt {
                            path: self.name.clone(),
                            offset: at,
                            what: format!("packet block captured length {caplen} exceeds its block ({block_len} bytes)"),
                        });
                    }
                    let Some(iface) = self.interfaces.get(if_id as usize).copied() else {
                        self.counters.unknown_interface += 1;
                        self.consume(block_len);
                        continue;
                    };
                    let units = (u64::from(ts_high) << 32) | u64::from(ts_low);
                    let (ts, wrapped) = ts_from_units(units, iface.resolution, iface.offset_secs);
                    if wrapped {
                        self.counters.ts_out_of_range += 1;
                    }
                    return self
                        .emit_ng(at, block_len, 28, caplen, origlen, iface, ts, if_id)
                        .map(Some);
                }
                SPB_MAGIC => {
                    let Some(iface) = self.interfaces.first().copied() else {
                        self.counters.unknown_interface += 1;
                        self.consume(block_len);
                        continue;
                    };
                    let origlen = rd(&bytes[8..12]);
                    let mut caplen = (block_len - 16).min(origlen as usize);
                    if iface.snaplen != 0 {
                        caplen = caplen.min(iface.snaplen as usize);
                    }
                    // No timestamp: the packet takes the previous packet's time.
                    let ts = self.last_ts;
                    return self
                        .emit_ng(at, block_len, 12, caplen, origlen, iface, ts, 0)
                        .map(Some);
                }
                _ => {
                    self.counters.skipped_blocks += 1;
                    self.consume(block_len);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_ng(
        &mut self,
        at: u64,
        block_len: usize,
        data_off: usize,
        caplen: usize,
        origlen: u32,
        iface: Interface,
        ts: Timestamp,
        if_id: u32,
    ) -> Result<Packet<'_>, CaptureError> {
        if caplen == 0 {
            self.counters.empty_records += 1;
        }
        if iface.snaplen != 0 && caplen as u32 > iface.snaplen {
            self.counters.over_snaplen += 1;
        }
        let orig_len = self.wire_len(caplen, origlen);
        let start = self.pos + data_off;
        self.consume(block_len);
        self.counters.records += 1;
        self.last_ts = ts;
        Ok(Packet {
            ts,
            link: iface.link,
            data: &self.buf[start..start + caplen],
            orig_len,
            offset: at,
            interface: if_id,
        })
    }
}

/// Converts pcapng timestamp units to a [`Timestamp`].
/// Converts pcapng timestamp units to a [`Timestamp`]; the flag says the time was
/// beyond the year 2262 and was taken modulo 2^32 seconds (some writers put seconds
/// and microseconds in the two halves), which keeps intervals between packets.
fn ts_from_units(units: u64, resolution: u64, offset_secs: i64) -> (Timestamp, bool) {
    const MAX_SECS: u64 = (i64::MAX / 1_000_000_000) as u64 - 1;
    let mut secs = units / resolution;
    let frac = units % resolution;
    let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(resolution)) as u32;
    let wrapped = secs > MAX_SECS;
    if wrapped {
        secs %= 1 << 32;
    }
    let secs = (secs as i64).saturating_add(offset_secs);
    (Timestamp::from_secs_nanos(secs, nanos), wrapped)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_from_units_handles_resolutions() {
        assert_eq!(
            ts_from_units(1_500_000, 1_000_000, 0),
            (Timestamp::from_secs_nanos(1, 500_000_000), false)
        );
        assert_eq!(
            ts_from_units(3, 2, 10),
            (Timestamp::from_secs_nanos(11, 500_000_000), false)
        );
        // Seconds written into the high half: far future, kept modulo 2^32 s.
        let (t, wrapped) = ts_from_units(0x41b3_5e88_12eb_f2c8, 1_000_000, 0);
        assert!(wrapped && t.as_nanos() > 0);
        assert_eq!(
            ts_from_units(1_000_000_001, 1_000_000_000, 0),
            (Timestamp::from_secs_nanos(1, 1), false)
        );
    }
}
