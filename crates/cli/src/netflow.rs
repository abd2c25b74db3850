//! `collect --netflow ADDR:PORT` and `collect --netflow-capture FILE...`: the I/O around
//! the sans-IO NetFlow/IPFIX decoder and joiner. Live, the arrival time is the wall
//! clock and SIGINT/SIGTERM end the collection (every open flow is written, exit 0);
//! from captures, the arrival time is the packet's. A datagram that is not NetFlow or
//! is malformed is counted and (the first few) named with its sender and byte offset;
//! it never stops the collector.

use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tunnelwatch_capture::CaptureFile;
use tunnelwatch_decode::{Decoded, Decoder as PacketDecoder, DecoderConfig, Transport};
use tunnelwatch_model::{RecordSink, Timestamp};
use tunnelwatch_netflow::{Decoder, JoinConfig, Joiner, UniFlow};

use crate::collect::CollectArgs;

/// Errors printed in full; later ones are only counted.
const SHOWN_ERRORS: u64 = 10;

struct Collector<'a> {
    decoder: Decoder,
    joiner: Joiner,
    records: Vec<UniFlow>,
    out: &'a mut dyn RecordSink,
    errors: u64,
    exporters: std::collections::HashSet<IpAddr>,
}

impl Collector<'_> {
    fn datagram(&mut self, from: IpAddr, at: Timestamp, data: &[u8], origin: &dyn Fn() -> String) {
        self.exporters.insert(from);
        if let Err(e) = self.decoder.decode(from, at, data, &mut self.records) {
            self.errors += 1;
            if self.errors <= SHOWN_ERRORS {
                eprintln!("collect: {} from {from}: {e}", origin());
            }
        }
        for r in self.records.drain(..) {
            self.joiner.push(&r, self.out);
        }
        // The decoder expired its held sets at `at`; flows due by then end too.
        self.joiner.advance(at, self.out);
    }

    /// No datagram came: the clock still moves (live collection).
    fn tick(&mut self, now: Timestamp) {
        self.decoder.expire(now);
        self.joiner.advance(now, self.out);
    }

    fn finish(mut self) -> (String, String) {
        self.decoder.finish();
        self.joiner.finish(self.out);
        let (w, j) = (self.decoder.stats(), self.joiner.stats());
        (
            format!(
                "{} datagrams from {} exporters, {} export records",
                w.datagrams,
                self.exporters.len(),
                w.records
            ),
            format!(
                "{} joined in pairs, {} continued, {} biflows, {} flows ended early at --max-flows; \
                 {} datagrams not NetFlow/IPFIX, {} malformed; {} templates learnt, {} refused; \
                 {} data sets waited for their template, {} decoded later, {} dropped; \
                 {} records without addresses",
                j.paired,
                j.continued,
                j.biflows,
                j.evicted,
                w.unknown_version,
                w.malformed,
                w.templates,
                w.templates_refused,
                w.pending_held,
                w.pending_decoded,
                w.pending_dropped,
                w.records_without_flow,
            ),
        )
    }
}

/// Collects from the socket or the captures named in `args`; returns the summary's
/// two halves (what was read, what was odd).
pub(crate) fn collect(args: &CollectArgs, out: &mut dyn RecordSink) -> Result<(String, String)> {
    let mut c = Collector {
        decoder: Decoder::default(),
        joiner: Joiner::new(JoinConfig {
            idle: args.flow_idle,
            linger: args.linger,
            max_flows: args.max_flows,
            ..JoinConfig::default()
        }),
        records: Vec::new(),
        out,
        errors: 0,
        exporters: Default::default(),
    };
    match args.netflow {
        Some(addr) => listen(addr, &mut c)?,
        None => {
            for path in &args.netflow_capture {
                from_capture(path, &mut c)?;
            }
        }
    }
    Ok(c.finish())
}

/// A live collector's datagrams arrive now: the wall clock is their time (the I/O
/// edge; the decoder and joiner only see the stamps).
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_clock() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_secs_nanos(d.as_secs() as i64, d.subsec_nanos())
}

fn listen(addr: std::net::SocketAddr, c: &mut Collector<'_>) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the SIGINT/SIGTERM handlers")?;
    }
    let socket =
        UdpSocket::bind(addr).with_context(|| format!("cannot listen for NetFlow on {addr}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(250)))
        .context("setting the socket's read timeout")?;
    eprintln!(
        "collect: listening for NetFlow v5/v9 and IPFIX on {} (SIGINT or SIGTERM ends)",
        socket.local_addr().map_or(addr, |a| a)
    );
    let mut buf = vec![0u8; 65_536];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                n += 1;
                c.datagram(from.ip(), wall_clock(), &buf[..len], &|| {
                    format!("datagram {n}")
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                c.tick(wall_clock());
            }
            Err(e) => return Err(e).context(format!("receiving on {addr}")),
        }
    }
    eprintln!("collect: stopping; writing the open flows");
    Ok(())
}

fn from_capture(path: &std::path::Path, c: &mut Collector<'_>) -> Result<()> {
    let mut file = CaptureFile::open(path)
        .with_context(|| format!("cannot read capture {}", path.display()))?;
    let decoder = PacketDecoder::new(DecoderConfig::default());
    let mut index = 0u64;
    loop {
        let p = match file.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                // What was read stays collected; the rest of the file cannot be trusted.
                eprintln!(
                    "collect: {}: {e}; the datagrams before it were collected",
                    path.display()
                );
                break;
            }
        };
        index += 1;
        let mut view = Decoded::default();
        decoder.decode(p.link, p.data, &mut view);
        let Some(ip) = view.innermost() else {
            continue;
        };
        if !matches!(ip.transport, Transport::Udp(_)) {
            continue;
        }
        let name = || format!("{} packet {index}", path.display());
        c.datagram(ip.src, p.ts, ip.payload, &name);
    }
    Ok(())
}
