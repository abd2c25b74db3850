//! The packet engines behind `read`: one sensor on the reading thread, or `--threads N`
//! sensors on worker threads, each owning the flows of its shard.
//!
//! Sharding: the reading thread picks each frame's shard from a symmetric hash of the
//! outermost IP layer's two addresses — read straight from the headers of plain
//! TCP/UDP frames that carry no tunnel ([`Decoder::peek_pair`]), from a full decode of
//! the others. Both directions of a flow, every fragment of a datagram and every flow
//! inside a tunnel land on the same shard as their flow, fragments and tunnel (a
//! 5-tuple hash would split fragmented flows and tunnels). A tunnelled frame pins the
//! address pairs of all its layers to its shard ([`Router`]), so that a connection
//! whose packets come through two tunnels (Teredo's server and relay) stays whole. An
//! ICMP error also goes, for attribution only, to the shard of the flow it quotes.
//! Frames travel in batches (returned empty, to be filled again) over bounded
//! channels with their position in the whole input
//! and the input's clock before them (the latest packet time so far); a worker moves
//! its table to that clock before each frame. So timers fire, late packets are clamped
//! and `uid`s are made exactly as in a single-threaded run, and the records are the
//! same. Every `2048 × N` frames every worker is also sent the clock, frames or not,
//! moves to it and tells the writer (as does the last batch), which lets the writer put
//! the shards' records in the one order of [`crate::sinks`]. Only eviction under a cap
//! (split evenly across shards) and the rare connections [`Router`] cannot keep whole
//! (seen direct before they went into a tunnel whose own address pair also carried
//! plain frames) can differ.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tunnelwatch_capture::Packet;
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
    Sharded(Box<Sharded>),
}

impl Engine {
    /// `threads` sensors (one: on this thread) writing to `writer`.
    pub fn new(config: SensorConfig, threads: usize, writer: &RecordWriter) -> Result<Self> {
        if threads <= 1 {
            let out = writer.senders(1).into_iter().next();
            let out = out.context("the writer gave no sender")?;
            return Ok(Engine::Single(Box::new(Sensor::new(config)), out));
        }
        Sharded::start(config, threads, writer).map(|s| Engine::Sharded(Box::new(s)))
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
    router: Router,
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
            router: Router::new(n),
            now: None,
            batches: (0..n).map(|_| Batch::default()).collect(),
            workers,
            returned,
            since_tick: 0,
        })
    }

    fn packet(&mut self, index: u64, p: &Packet<'_>, link: LinkType, open: Timestamp) {
        let n = self.workers.len();
        let (own, quoted) = match self.decoder.peek_pair(link, p.data) {
            Some((a, b)) => (self.router.plain(a, b), None),
            None => {
                let mut d = Decoded::default();
                self.decoder.decode(link, p.data, &mut d);
                self.router.frame(&d)
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

/// Address pairs pinned to a shard, at most (~4 MB).
const MAX_PINNED: usize = 1 << 16;

/// Bits in [`Router`]'s record of the pairs seen in plain frames (128 KiB).
const PLAIN_BITS: usize = 1 << 20;

/// Which shard a frame goes to: the hash of its outermost address pair, unless a
/// tunnelled frame pinned the pair to another shard.
///
/// A tunnelled frame feeds the flows of all its layers, so they must live on one
/// shard, and so must every other frame of those flows — also one that comes under a
/// different outer pair (a Teredo connection's two directions: client–server and
/// client–relay) or none (the inner connection also seen direct). So the first
/// tunnelled frame of a pair pins each of its layers' pairs to one shard: that of the
/// first pair already pinned, outermost first; or else, when an inner pair was seen in
/// plain frames and the outer one was not, that inner pair's hash (where its direct
/// frames went: a connection seen direct before it went into a tunnel); or else its
/// outer pair's hash (where that pair's plain frames went before). A pair pinned since
/// always goes there. Which pairs went plain is kept as a bitmap of their hashes: it
/// may say yes wrongly (then a new tunnel follows its inner pair's hash, which splits
/// nothing: neither pair had frames elsewhere), never no wrongly. What still splits: a
/// connection seen direct before it went into a tunnel whose own pair also carried
/// plain frames, pairs pinned to two shards meeting in one frame (the outermost wins),
/// and pairs beyond [`MAX_PINNED`].
struct Router {
    n: u64,
    pinned: HashMap<(IpAddr, IpAddr), usize, foldhash::fast::RandomState>,
    /// Bit `pair_hash % PLAIN_BITS` is set once a frame of the pair went plain.
    plain: Vec<u64>,
}

impl Router {
    fn new(n: usize) -> Self {
        Router {
            n: n as u64,
            pinned: HashMap::default(),
            plain: vec![0; PLAIN_BITS / 64],
        }
    }

    /// The shard of the flows between `a` and `b`.
    fn shard(&self, a: IpAddr, b: IpAddr) -> usize {
        self.shard_of(a, b, pair_hash(a, b))
    }

    /// [`Router::shard`] with the pair's hash already made.
    fn shard_of(&self, a: IpAddr, b: IpAddr, hash: u64) -> usize {
        if !self.pinned.is_empty() {
            if let Some(&s) = self.pinned.get(&ordered(a, b)) {
                return s;
            }
        }
        (hash % self.n) as usize
    }

    /// The shard of a plain frame (one IP layer) between `a` and `b`, noting that the
    /// pair went plain.
    fn plain(&mut self, a: IpAddr, b: IpAddr) -> usize {
        let hash = pair_hash(a, b);
        let (word, bit) = plain_bit(hash);
        self.plain[word] |= bit;
        self.shard_of(a, b, hash)
    }

    /// Whether a frame of the pair went plain (or, rarely, of another pair with the
    /// same bit).
    fn went_plain(&self, a: IpAddr, b: IpAddr) -> bool {
        let (word, bit) = plain_bit(pair_hash(a, b));
        self.plain[word] & bit != 0
    }

    /// The shard of a decoded frame, and the shard of the flow an ICMP error in it
    /// quotes.
    fn frame(&mut self, d: &Decoded<'_>) -> (usize, Option<usize>) {
        let Some(outer) = d.layers.first() else {
            return (0, None);
        };
        let own = if d.layers.len() > 1 {
            let pinned = d
                .layers
                .iter()
                .find_map(|l| self.pinned.get(&ordered(l.src, l.dst)).copied());
            let own = pinned.unwrap_or_else(|| {
                let direct = (!self.went_plain(outer.src, outer.dst))
                    .then(|| d.layers[1..].iter().find(|l| self.went_plain(l.src, l.dst)))
                    .flatten();
                let by = direct.unwrap_or(outer);
                self.shard(by.src, by.dst)
            });
            for l in &d.layers {
                if self.pinned.len() >= MAX_PINNED {
                    break;
                }
                self.pinned.entry(ordered(l.src, l.dst)).or_insert(own);
            }
            own
        } else {
            self.plain(outer.src, outer.dst)
        };
        // Only an error in the outermost layer quotes a flow outside its own shard:
        // inner layers share the tunnel's shard with what they quote.
        let quoted = match &outer.transport {
            Transport::Icmp(m) if m.is_error() => m.quoted.map(|q| self.shard(q.src, q.dst)),
            _ => None,
        };
        (own, quoted)
    }
}

/// Where a pair of `hash` is noted in [`Router`]'s bitmap: the word and its bit.
fn plain_bit(hash: u64) -> (usize, u64) {
    let bit = hash as usize % PLAIN_BITS;
    (bit / 64, 1 << (bit % 64))
}

/// Two addresses in the order that makes a pair the same both ways.
fn ordered(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A hash of two addresses that does not depend on their order (FNV-1a over the
/// smaller then the larger, IPv4 in its IPv4-mapped IPv6 form), fixed so that runs are
/// reproducible. A mapped address's ten leading zero bytes are one multiplication by
/// the prime's tenth power (FNV-1a's step for a zero byte is a multiplication alone):
/// seven steps an IPv4 address instead of sixteen, the same value.
fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    const PRIME_10: u64 = PRIME.wrapping_pow(10);
    let (lo, hi) = ordered(a, b);
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
    use etherparse::PacketBuilder;

    /// An Ethernet frame with UDP from `src:sp` to `dst:dp` carrying `payload`.
    fn udp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sp, dp);
        let mut frame = Vec::new();
        b.write(&mut frame, payload).unwrap();
        frame
    }

    /// An IPv6 packet with UDP from `src` to `dst` (port 5000 to 53 when `query`, back
    /// otherwise), as Teredo carries it.
    fn inner6(src: [u8; 16], dst: [u8; 16], query: bool) -> Vec<u8> {
        let (sp, dp) = if query { (5000, 53) } else { (53, 5000) };
        let b = PacketBuilder::ipv6(src, dst, 64).udp(sp, dp);
        let mut pkt = Vec::new();
        b.write(&mut pkt, b"inner").unwrap();
        pkt
    }

    /// A Teredo client's address and a server it talks to over IPv6.
    const C6: [u8; 16] = [0x20, 0x01, 0, 0, 0x41, 0x36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    const S6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53,
    ];

    /// An Ethernet frame of the query from `C6` to `S6`, sent direct (no tunnel).
    fn direct6() -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(C6, S6, 64)
            .udp(5000, 53)
            .write(&mut frame, b"direct")
            .unwrap();
        frame
    }

    /// The shard `read --threads n` sends a frame to.
    fn route(r: &mut Router, dec: &Decoder, frame: &[u8]) -> usize {
        match dec.peek_pair(LinkType::ETHERNET, frame) {
            Some((a, b)) => r.plain(a, b),
            None => {
                let mut d = Decoded::default();
                dec.decode(LinkType::ETHERNET, frame, &mut d);
                r.frame(&d).0
            }
        }
    }

    #[test]
    fn a_teredo_connection_under_two_outer_pairs_stays_on_one_shard() {
        let dec = Decoder::default();
        let client = [192, 0, 2, 10];
        let server = [198, 51, 100, 1];
        let (c6, s6) = (C6, S6);
        for n in 2..=5usize {
            // A relay whose pair with the client hashes to another shard than the
            // server's: the query goes out through the server, the answer comes back
            // through the relay.
            let relay = (1..=255u8)
                .map(|x| [203, 0, 113, x])
                .find(|r| {
                    pair_hash(client.into(), (*r).into()) % n as u64
                        != pair_hash(client.into(), server.into()) % n as u64
                })
                .unwrap();
            let mut r = Router::new(n);
            // Before any tunnel, a plain frame of the client and the relay goes by the
            // hash.
            let plain = udp4(relay, client, 40000, 40001, b"x");
            let hashed = (pair_hash(client.into(), relay.into()) % n as u64) as usize;
            assert_eq!(route(&mut r, &dec, &plain), hashed);
            let query = udp4(client, server, 3544, 3544, &inner6(c6, s6, true));
            let answer = udp4(relay, client, 3544, 3544, &inner6(s6, c6, false));
            let there = route(&mut r, &dec, &query);
            assert_eq!(
                there,
                (pair_hash(client.into(), server.into()) % n as u64) as usize
            );
            assert_eq!(route(&mut r, &dec, &answer), there, "{n} shards");
            // The answer pinned the relay's pair: its plain frames follow it now.
            assert_eq!(route(&mut r, &dec, &plain), there, "{n} shards");
            // The inner pair seen direct goes there too.
            assert_eq!(route(&mut r, &dec, &direct6()), there, "{n} shards");
        }
    }

    #[test]
    fn a_connection_seen_direct_before_its_tunnel_stays_on_one_shard() {
        let dec = Decoder::default();
        let client = [192, 0, 2, 10];
        let (c6, s6) = (C6, S6);
        let direct = direct6();
        let inner = pair_hash(c6.into(), s6.into()) as usize;
        for n in 2..=5usize {
            // A Teredo server whose pair with the client hashes elsewhere than the
            // inner connection.
            let server = (1..=255u8)
                .map(|x| [198, 51, 100, x])
                .find(|sv| (pair_hash(client.into(), (*sv).into()) as usize) % n != inner % n)
                .unwrap();
            let query = udp4(client, server, 3544, 3544, &inner6(c6, s6, true));
            // The connection direct, then through the tunnel, then direct again: one
            // shard, the inner pair's.
            let mut r = Router::new(n);
            assert_eq!(route(&mut r, &dec, &direct), inner % n);
            assert_eq!(route(&mut r, &dec, &query), inner % n, "{n} shards");
            assert_eq!(route(&mut r, &dec, &direct), inner % n, "{n} shards");
            // But when the tunnel's own pair went plain too, its flows stay where they
            // went, and the tunnel with them.
            let mut r = Router::new(n);
            let outer = (pair_hash(client.into(), server.into()) % n as u64) as usize;
            let plain = udp4(client, server, 40000, 53, b"\x12\x34 plain dns");
            assert_eq!(route(&mut r, &dec, &direct), inner % n);
            assert_eq!(route(&mut r, &dec, &plain), outer);
            assert_eq!(route(&mut r, &dec, &query), outer, "{n} shards");
            assert_eq!(route(&mut r, &dec, &plain), outer, "{n} shards");
        }
    }

    #[test]
    fn a_datagram_that_may_be_teredo_on_any_port_is_decoded_not_peeked() {
        let dec = Decoder::default();
        let (c6, s6) = (C6, S6);
        let teredo = udp4(
            [192, 0, 2, 10],
            [203, 0, 113, 5],
            40000,
            51000,
            &inner6(c6, s6, true),
        );
        assert_eq!(dec.peek_pair(LinkType::ETHERNET, &teredo), None);
        let mut d = Decoded::default();
        dec.decode(LinkType::ETHERNET, &teredo, &mut d);
        assert_eq!(d.layers.len(), 2, "the decoder finds the tunnel");
        let dns = udp4(
            [192, 0, 2, 10],
            [203, 0, 113, 5],
            40000,
            53,
            b"\x12\x34 not an IPv6 packet",
        );
        assert!(dec.peek_pair(LinkType::ETHERNET, &dns).is_some());
    }

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
