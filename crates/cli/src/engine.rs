//! The packet engines behind `read`: one sensor on the reading thread, or `--threads N`
//! sensors on worker threads, each owning the flows of its shard.
//!
//! Sharding: the reading thread picks each frame's shard from a symmetric hash of the
//! outermost IP layer's two addresses — read straight from the headers of plain
//! TCP/UDP frames ([`tunnelwatch_decode::peek`]), from a full decode of the others.
//! Both directions of a flow, every fragment of a datagram and every flow inside a
//! tunnel land on the same shard as their flow, fragments and tunnel (a 5-tuple hash
//! would split fragmented flows and tunnels). An ICMP error also goes, for attribution
//! only, to the shard of the flow it quotes. Frames travel in batches (returned empty,
//! to be filled again) over bounded channels with their position in the whole input
//! and the input's clock before them (the latest packet time so far); a worker moves
//! its table to that clock before each frame. So timers fire, late packets are clamped
//! and `uid`s are made exactly as in a single-threaded run, and the records are the
//! same. Every `2048 × N` frames every worker is also sent the clock, frames or not,
//! moves to it and tells the writer (as does the last batch), which lets the writer put
//! the shards' records in the one order of [`crate::sinks`]. Only eviction under a cap
//! (split evenly across shards) and a connection seen under different outer addresses
//! (two tunnels, or tunnelled and direct: two shards) can differ.

use std::net::IpAddr;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tunnelwatch_capture::Packet;
use tunnelwatch_decode::peek::outer_pair;
use tunnelwatch_decode::{Decoded, Decoder, LinkType, Transport};
use tunnelwatch_model::Timestamp;
use tunnelwatch_sensor::{RunStats, Sensor, SensorConfig};

use crate::sinks::{RecordSender, RecordWriter};

/// Frames per batch handed to a worker.
const FRAMES: usize = 512;
/// Batches in flight per worker.
const IN_FLIGHT: usize = 16;
/// Every `TICK × N` frames every worker is sent the input's clock.
const TICK: usize = 4 * FRAMES;

/// Where packets go.
pub enum Engine {
    /// One sensor on this thread.
    Single(Box<Sensor>, RecordSender),
    /// Sensors on worker threads.
    Sharded(Sharded),
}

impl Engine {
    /// `threads` sensors (one: on this thread) writing to `writer`.
    pub fn new(config: SensorConfig, threads: usize, writer: &RecordWriter) -> Result<Self> {
        if threads <= 1 {
            let out = writer.senders(1).into_iter().next();
            let out = out.context("the writer gave no sender")?;
            return Ok(Engine::Single(Box::new(Sensor::new(config)), out));
        }
        Sharded::start(config, threads, writer).map(Engine::Sharded)
    }

    /// Processes the frame at position `index` of the input; `open` is the earliest
    /// packet time so far.
    pub fn packet(&mut self, index: u64, p: &Packet<'_>, open: Timestamp) {
        let link = LinkType(p.link.0);
        match self {
            Engine::Single(sensor, out) => {
                out.open = open;
                out.mark = sensor.now();
                sensor.packet_at(index, p.ts, link, p.data, p.orig_len, out);
            }
            Engine::Sharded(s) => s.packet(index, p, link, open),
        }
    }

    /// Ends every flow, sends the last records, and returns the run's statistics.
    pub fn finish(self) -> RunStats {
        match self {
            Engine::Single(mut sensor, mut out) => {
                sensor.finish(&mut out);
                out.flush();
                sensor.stats()
            }
            Engine::Sharded(s) => s.finish(),
        }
    }
}

struct Meta {
    index: u64,
    /// The input's clock before this frame.
    now: Timestamp,
    ts: Timestamp,
    link: LinkType,
    orig_len: u32,
    start: usize,
    len: usize,
    open: Timestamp,
    attribute_only: bool,
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    frames: Vec<Meta>,
    /// The input's clock to move to after the frames: sent now and then to every
    /// worker, with or without frames, so that all of them keep up with the input's time
    /// and the writer can release records in order (and at the end: the final clock).
    tick: Option<Timestamp>,
}

/// Workers and the batches being filled for them.
pub struct Sharded {
    decoder: Decoder,
    /// The latest packet time so far.
    now: Option<Timestamp>,
    batches: Vec<Batch>,
    workers: Vec<(SyncSender<Batch>, JoinHandle<RunStats>)>,
    /// Batches each worker emptied, to be filled again.
    returned: Vec<Receiver<Batch>>,
    /// Frames since every worker was last sent the clock.
    since_tick: usize,
}

impl Sharded {
    fn start(config: SensorConfig, n: usize, writer: &RecordWriter) -> Result<Self> {
        let mut shard = config.clone();
        shard.flow.max_flows = (config.flow.max_flows / n).max(1);
        shard.flow.max_memory = config.flow.max_memory / n;
        let mut workers = Vec::with_capacity(n);
        let mut returned = Vec::with_capacity(n);
        for (i, mut out) in writer.senders(n).into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Batch>(IN_FLIGHT);
            let (back, emptied) = channel::<Batch>();
            returned.push(emptied);
            let mut sensor = Sensor::new(shard.clone());
            let handle = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    for mut b in rx {
                        for m in &b.frames {
                            let data = &b.data[m.start..m.start + m.len];
                            out.open = m.open;
                            out.mark = sensor.now();
                            sensor.advance(m.now, &mut out);
                            if m.attribute_only {
                                sensor.attribute_quoted(m.index, m.ts, m.link, data, &mut out);
                            } else {
                                sensor.packet_at(m.index, m.ts, m.link, data, m.orig_len, &mut out);
                            }
                        }
                        if let Some(t) = b.tick {
                            sensor.advance(t, &mut out);
                            // The writer learns this shard's clock (its records are
                            // held until every shard's clock has passed them).
                            out.mark = sensor.now();
                            out.send();
                        }
                        b.data.clear();
                        b.frames.clear();
                        b.tick = None;
                        // The reader may be done; then the batch is freed.
                        let _ = back.send(b);
                    }
                    sensor.finish(&mut out);
                    out.flush();
                    sensor.stats()
                })
                .context("cannot start a worker thread")?;
            workers.push((tx, handle));
        }
        Ok(Sharded {
            decoder: Decoder::new(config.decode),
            now: None,
            batches: (0..n).map(|_| Batch::default()).collect(),
            workers,
            returned,
            since_tick: 0,
        })
    }

    fn packet(&mut self, index: u64, p: &Packet<'_>, link: LinkType, open: Timestamp) {
        let n = self.workers.len();
        let (own, quoted) = match outer_pair(link, p.data) {
            Some((a, b)) => ((pair_hash(a, b) % n as u64) as usize, None),
            None => {
                let mut d = Decoded::default();
                self.decoder.decode(link, p.data, &mut d);
                shards(&d, n)
            }
        };
        let now = self.now.map_or(p.ts, |t| t.max(p.ts));
        let before = self.now.unwrap_or(p.ts);
        self.now = Some(now);
        self.push(own, index, before, p, link, open, false);
        if let Some(q) = quoted.filter(|q| *q != own) {
            self.push(q, index, before, p, link, open, true);
        }
        self.since_tick += 1;
        if self.since_tick >= TICK * n {
            self.since_tick = 0;
            for shard in 0..n {
                self.batches[shard].tick = self.now;
                self.send(shard);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        shard: usize,
        index: u64,
        now: Timestamp,
        p: &Packet<'_>,
        link: LinkType,
        open: Timestamp,
        attribute_only: bool,
    ) {
        let b = &mut self.batches[shard];
        b.frames.push(Meta {
            index,
            now,
            ts: p.ts,
            link,
            orig_len: p.orig_len,
            start: b.data.len(),
            len: p.data.len(),
            open,
            attribute_only,
        });
        b.data.extend_from_slice(p.data);
        if b.frames.len() >= FRAMES {
            self.send(shard);
        }
    }

    fn send(&mut self, shard: usize) {
        let next = self.returned[shard].try_recv().unwrap_or_default();
        let b = std::mem::replace(&mut self.batches[shard], next);
        if !b.frames.is_empty() || b.tick.is_some() {
            // A worker only goes away by panicking, which `finish` reports.
            let _ = self.workers[shard].0.send(b);
        }
    }

    fn finish(mut self) -> RunStats {
        for i in 0..self.workers.len() {
            self.batches[i].tick = self.now;
            let b = std::mem::take(&mut self.batches[i]);
            let _ = self.workers[i].0.send(b);
        }
        let mut stats = RunStats::default();
        for (tx, handle) in self.workers {
            drop(tx);
            match handle.join() {
                Ok(s) => stats.merge(&s),
                Err(_) => eprintln!("tunnelwatch: error: a worker thread panicked"),
            }
        }
        stats
    }
}

/// The shard of a frame, and the shard of the flow an ICMP error in it quotes.
fn shards(d: &Decoded<'_>, n: usize) -> (usize, Option<usize>) {
    let Some(outer) = d.layers.first() else {
        return (0, None);
    };
    let own = pair_hash(outer.src, outer.dst) % n as u64;
    // Only an error in the outermost layer quotes a flow outside its own shard: inner
    // layers share the tunnel's shard with what they quote.
    let quoted = match &outer.transport {
        Transport::Icmp(m) if m.is_error() => m.quoted.map(|q| pair_hash(q.src, q.dst)),
        _ => None,
    };
    (own as usize, quoted.map(|h| (h % n as u64) as usize))
}

/// A hash of two addresses that does not depend on their order (FNV-1a over the
/// smaller then the larger, IPv4 in its IPv4-mapped IPv6 form), fixed so that runs are
/// reproducible. A mapped address's ten leading zero bytes are one multiplication by
/// the prime's tenth power (FNV-1a's step for a zero byte is a multiplication alone):
/// seven steps an IPv4 address instead of sixteen, the same value.
fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    const PRIME_10: u64 = PRIME.wrapping_pow(10);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let step = |h: u64, x: u8| (h ^ u64::from(x)).wrapping_mul(PRIME);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for ip in [lo, hi] {
        h = match ip {
            IpAddr::V4(v) => {
                let mapped = h.wrapping_mul(PRIME_10);
                [0xff, 0xff]
                    .into_iter()
                    .chain(v.octets())
                    .fold(mapped, step)
            }
            IpAddr::V6(v) => v.octets().into_iter().fold(h, step),
        };
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_hash_ignores_direction() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(pair_hash(a, b), pair_hash(b, a));
        let c: IpAddr = "10.0.0.2".parse().unwrap();
        assert_ne!(pair_hash(a, c), pair_hash(a, b));
    }

    #[test]
    fn pair_hash_is_fnv1a_over_the_mapped_addresses() {
        fn reference(a: IpAddr, b: IpAddr) -> u64 {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for ip in [lo, hi] {
                let bytes = match ip {
                    IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                    IpAddr::V6(v) => v.octets(),
                };
                for x in bytes {
                    h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
                }
            }
            h ^ (h >> 29)
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let v4 = |r: u64| IpAddr::V4((r as u32).into());
            let v6 = |r: u64, s: u64| IpAddr::V6((u128::from(r) << 64 | u128::from(s)).into());
            let (p, q, r, s) = (next(), next(), next(), next());
            for (a, b) in [
                (v4(p), v4(q)),
                (v4(p), v6(q, r)),
                (v6(p, q), v6(r, s)),
                (v4(p), v4(p)),
            ] {
                assert_eq!(pair_hash(a, b), reference(a, b), "{a} {b}");
            }
        }
    }

    #[test]
    fn pair_hash_spreads_neighbouring_pairs_over_shards() {
        // Clients of one server numbered one after another, and IPv6 clients that
        // differ only in their /64 prefix: each shard of 2, 3 and 4 gets its share
        // within a tenth.
        let server: IpAddr = "192.0.2.1".parse().unwrap();
        let server6: IpAddr = "2001:db8::1".parse().unwrap();
        for n in 2..=4u64 {
            let mut counts = vec![0u32; n as usize];
            let mut counts6 = vec![0u32; n as usize];
            for i in 0..4000u32 {
                let client = IpAddr::V4((0x0a00_0000 + i).into());
                counts[(pair_hash(client, server) % n) as usize] += 1;
                let client6 =
                    IpAddr::V6(((0x2001_0db8_0001_0000_u128 + u128::from(i)) << 64 | 1).into());
                counts6[(pair_hash(client6, server6) % n) as usize] += 1;
            }
            let share = 4000 / n as u32;
            for c in [&counts, &counts6] {
                assert!(
                    c.iter().all(|&c| c.abs_diff(share) < share / 10),
                    "{n}: {c:?}"
                );
            }
        }
    }
}
