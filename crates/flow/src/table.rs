//! The bidirectional flow table: decoded packets in, flow records out.
//!
//! One entry per conversation, found by a direction-free [`Key`]. The originator is the
//! sender of the first SYN, else the first packet's sender unless Zeek's port heuristic
//! says the first sender is the server. Per flow it keeps counters and dynamics per
//! direction, a Zeek-compatible TCP state ([`TcpConn`]) and history, application facts
//! and tunnel parents.
//!
//! Time only comes from packets. Expiry is driven by timers in packet time that mirror
//! Zeek's (connection attempt, inactivity, TCP close linger and periodic expire checks)
//! plus an active timeout that writes interim records (`cause: status`) under the same
//! `uid`. Timers live in one heap; a flow's timers are invalidated by bumping its
//! generation, so per packet the heap is only peeked. The table is bounded by
//! [`FlowConfig::max_flows`]: when full, the flow closest to its own expiry is ended
//! early (`cause: evicted`).

use std::net::IpAddr;

use std::hash::BuildHasher;

use hashbrown::HashTable;
use tunnelwatch_decode::{
    checksum, tcp_options, Decoded, Fragment, IcmpMessage, IpPacket, TcpSegment, Transport,
};
use tunnelwatch_model::{
    AppFacts, Cause, ConnState, Dynamics, FlowRecord, IcmpFacts, IpProto, RecordSink, SignatureHit,
    TcpFacts, Timestamp,
};

use crate::app::{AppState, Carrier};
use crate::config::{is_dns_port, ChecksumMode, FlowConfig};
use crate::history::{bit, History, Scaled};
use crate::key::{community_id, icmp_counterpart, uid, Endpoints, Key};
use crate::keys::{Keys, KeysSummary};
use crate::sigs::SigState;
use crate::slab::{Recycler, Slab};
use crate::watch::Watch;

/// Boxes of each kind kept for reuse by ended flows' successors.
const RECYCLED: usize = 4096;
use crate::stats::Direction;
use crate::tcp::{Effects, SegmentInput, TcpConn, TcpTiming};
use crate::timers::{Timer, TimerKind, TimerQueue};

/// Counters of the table's own work, reported in `read`'s summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// IP layers processed.
    pub layers: u64,
    /// Flows created.
    pub flows: u64,
    /// Final records written.
    pub records: u64,
    /// Interim records written.
    pub interim_records: u64,
    /// Flows ended early because the table was full.
    pub evicted: u64,
    /// Packets whose timestamp went backwards (processed at the later time).
    pub time_backwards: u64,
    /// Packets ignored for a bad IPv4 header checksum.
    pub bad_ip_checksums: u64,
    /// Packets ignored for a bad TCP/UDP/ICMP checksum.
    pub bad_checksums: u64,
    /// Later IP fragments given to the table without reassembly (they carry no ports
    /// and are counted here only).
    pub unreassembled_fragments: u64,
    /// ICMP errors credited to the flow they quote.
    pub icmp_errors_attributed: u64,
    /// Most flows alive at once.
    pub peak_flows: u64,
    /// Most bytes of flow state held at once (see [`FlowTable::memory`]).
    pub peak_memory: u64,
}

impl TableStats {
    /// Adds the counters of another table (a shard of the same run). Peaks add up too:
    /// shards hold their flows at the same time.
    pub fn merge(&mut self, o: &TableStats) {
        self.layers += o.layers;
        self.flows += o.flows;
        self.records += o.records;
        self.interim_records += o.interim_records;
        self.evicted += o.evicted;
        self.time_backwards += o.time_backwards;
        self.bad_ip_checksums += o.bad_ip_checksums;
        self.bad_checksums += o.bad_checksums;
        self.unreassembled_fragments += o.unreassembled_fragments;
        self.icmp_errors_attributed += o.icmp_errors_attributed;
        self.peak_flows += o.peak_flows;
        self.peak_memory += o.peak_memory;
    }
}

// In the order a packet uses them (C layout keeps it): the key the index compares with
// the epoch, flags and orientation on the first line (the endpoints' addresses are the
// key's, not stored again), the boxes on the second, then the history, then the
// packet's direction; what only the record reads comes last. A packet of a flow not in
// cache loads fewer lines (the compiler's order had the key on the flow's last two
// lines and the slot's epoch alone on a line of its own).
#[repr(C)]
struct Flow {
    key: Key,
    orig_p: u16,
    resp_p: u16,
    proto: IpProto,
    /// Whether the key is one-way ICMP (the Community ID does not order it).
    one_way: bool,
    /// The slot's epoch while this flow holds it ([`Slot::epoch`]).
    epoch: u32,
    /// What the application state says, kept here so that a payload packet does not
    /// load its box for it (a cache miss per packet): it saw an SSH banner (for the
    /// keystroke state), and it will learn nothing more ([`AppState::done`]).
    app_ssh: bool,
    app_done: bool,
    expire_scheduled: bool,
    /// The originator's address and port are the key's `a` side ([`Flow::orig_h`]).
    orig_is_a: bool,
    /// The addresses are IPv6: the key holds IPv4 as IPv4-mapped IPv6, which an IPv6
    /// packet may also carry, and the record keeps what the packet had.
    v6: bool,
    // Cold, in what would be padding.
    vlan: Option<u16>,
    /// Zeek's `last_time`: the last packet that counts towards the duration.
    last_time: Timestamp,
    // Cold, in what would be padding.
    inner_vlan: Option<u16>,
    tcp: Option<Box<TcpConn>>,
    /// Keystroke and burst state, from the first payload of the third packet on.
    keys: Option<Box<Keys>>,
    app: Option<Box<AppState>>,
    /// Content-signature state (when rules are configured).
    sigs: Option<Box<SigState>>,
    /// Next expire-check tick that was not scheduled because no check could act. Here,
    /// on a line every packet loads, because its tag is what marks an empty slot
    /// (`Option<Flow>`'s `None`: the largest niche): the index reads it with the key.
    expire_dormant: Option<Timestamp>,
    icmp: Option<Box<IcmpFacts>>,
    start: Timestamp,
    inactivity: i64,
    /// Generation of all timers (bumped by Zeek's CancelTimers).
    gen: u32,
    /// Generation of the inactivity timer alone.
    inact_gen: u32,
    history: History,
    dirs: [Direction; 2],
    udp_chk: [Scaled; 2],
    /// Position of the first packet in the input (with `key` and `start`: the `uid`).
    first_index: u64,
    /// `uid`s of the flows that carried this one (rarely more than one).
    tunnel_parents: Vec<String>,
    parent_ref: Option<(u32, u32)>,
    /// Bytes counted for this flow in the table's memory total.
    accounted: u32,
}

/// Bytes a flow costs besides its boxes: the slot, the hash-map entry with its control
/// byte, and about three pending timers.
const FLOW_FIXED: usize =
    std::mem::size_of::<Slot>() + std::mem::size_of::<u32>() + 1 + 3 * std::mem::size_of::<Timer>();

impl Flow {
    /// The originator's address, from the key (not stored twice).
    fn orig_h(&self) -> IpAddr {
        self.address(self.orig_is_a)
    }

    /// The responder's address.
    fn resp_h(&self) -> IpAddr {
        self.address(!self.orig_is_a)
    }

    fn address(&self, a: bool) -> IpAddr {
        let b = if a { self.key.a } else { self.key.b };
        if self.v6 {
            IpAddr::V6(b.into())
        } else {
            IpAddr::V4([b[12], b[13], b[14], b[15]].into())
        }
    }

    fn uid(&self) -> String {
        uid(&self.key, self.start, self.first_index)
    }

    /// Estimated bytes this flow holds (see [`FlowTable::memory`]).
    fn footprint(&self) -> usize {
        FLOW_FIXED
            + self
                .tcp
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<TcpConn>())
            + self
                .app
                .as_ref()
                .map_or(0, |a| std::mem::size_of::<AppState>() + a.heap_bytes())
            + self
                .icmp
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<IcmpFacts>())
            + self
                .keys
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Keys>())
            + self
                .sigs
                .as_ref()
                .map_or(0, |s| std::mem::size_of::<SigState>() + s.heap_bytes())
            + self
                .tunnel_parents
                .iter()
                .map(|p| std::mem::size_of::<String>() + p.capacity())
                .sum::<usize>()
    }
}

struct Slot {
    flow: Option<Flow>,
    /// Bumped when a flow ends, so that its timers and references go stale; a packet
    /// reads the live flow's copy ([`Flow::epoch`]).
    epoch: u32,
}

/// A flow that ended, or an interim snapshot of a live one. Its record is built by
/// whoever consumes it ([`Ended::into_record`]), so that a writer thread, not the packet
/// path, pays for the strings a record holds.
pub struct Ended {
    at: Timestamp,
    inner: EndedInner,
}

// The large variant is the common one; the boxed record is the rare interim report.
#[allow(clippy::large_enum_variant)]
enum EndedInner {
    // Inline, not boxed, and without the flow's TCP and application state (freed on the
    // packet thread, which allocated them): a batch of these is recycled, so ending a
    // flow allocates nothing and leaves no memory for another thread to free.
    Flow(Flow, Option<TcpEnd>, Option<AppFacts>, Extras, Cause),
    Record(Box<FlowRecord>),
}

/// What a flow's record takes from its keystroke and signature state, built on the
/// packet thread (which holds the settings) when the flow ends.
#[derive(Default)]
struct Extras {
    keys: Option<KeysSummary>,
    signatures: Vec<SignatureHit>,
}

/// What a flow's record takes from its TCP state.
#[derive(Clone, Copy)]
struct TcpEnd {
    conn_state: ConnState,
    orig_bytes: u64,
    resp_bytes: u64,
    missed_bytes: u64,
    watch: Watch,
    timing: TcpTiming,
}

impl TcpEnd {
    fn of(t: &TcpConn, history: &History) -> Self {
        let (orig_bytes, resp_bytes) = t.sizes();
        TcpEnd {
            conn_state: t.conn_state(history.as_str()),
            orig_bytes,
            resp_bytes,
            missed_bytes: t.missed_bytes,
            watch: t.watch,
            timing: t.timing,
        }
    }
}

impl Ended {
    /// The packet time the record is due at: the timer's time for a flow that timed
    /// out, ended after its close or reports while it lasts (the clock, if a late
    /// packet set the timer before it); the table's clock for a flow ended by a packet
    /// (port reuse) or evicted; [`Timestamp::MAX`] at the end of input, where they come
    /// in order of [`Ended::start`]. A table hands over its records in order of this
    /// time, never later than its clock: one that has moved its clock to `t` has handed
    /// over every record due before `t`. Records sorted by this time (then start and
    /// `uid`) are in one order however the flows were sharded (`--threads`).
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// The flow's first packet time (records due at once at the end of input come in
    /// this order).
    pub fn start(&self) -> Timestamp {
        match &self.inner {
            EndedInner::Flow(f, ..) => f.start,
            EndedInner::Record(r) => r.ts,
        }
    }

    /// The flow record.
    pub fn into_record(mut self) -> FlowRecord {
        match self.inner {
            EndedInner::Flow(..) => self.take_record(),
            EndedInner::Record(r) => *r,
        }
    }

    /// The flow record, read in place: a batch of ended flows is turned into records
    /// without moving each (a kilobyte and a half) out first. What the record takes
    /// over (application facts, signature hits) is moved out, so a second call gives
    /// a record without them; an interim record is cloned.
    pub fn take_record(&mut self) -> FlowRecord {
        match &mut self.inner {
            EndedInner::Flow(f, tcp, app, extras, cause) => build_record(
                f,
                *tcp,
                app.take().map(Box::new),
                std::mem::take(extras),
                *cause,
            ),
            EndedInner::Record(r) => FlowRecord::clone(r),
        }
    }
}

/// Where the flow table hands ended flows. Every [`RecordSink`] is one: it gets the
/// record built at once.
pub trait FlowSink {
    /// Takes one ended flow.
    fn ended(&mut self, flow: Ended);
}

impl<T: RecordSink + ?Sized> FlowSink for T {
    fn ended(&mut self, flow: Ended) {
        self.emit(flow.into_record());
    }
}

/// The flow table. See the module documentation.
pub struct FlowTable {
    config: FlowConfig,
    /// Live flows' slots, found by the hash of their key (compared in the slot). Holding
    /// 4-byte slot numbers rather than keys keeps the index small enough to stay in cache
    /// over hundreds of thousands of flows.
    map: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    slots: Slab<Slot>,
    free: Vec<u32>,
    timers: TimerQueue,
    now: Timestamp,
    started: bool,
    stats: TableStats,
    /// Estimated bytes of flow state held now.
    memory: usize,
    tcp_boxes: Recycler<TcpConn>,
    app_boxes: Recycler<AppState>,
    keys_boxes: Recycler<Keys>,
    /// Reused buffer for signature matching.
    scratch: Vec<u8>,
}

/// Where a layer's flow sits, for its inner layers' `tunnel_parents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRef {
    slot: u32,
    epoch: u32,
}

/// Facts of the captured frame the layers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time.
    pub ts: Timestamp,
    /// Position of the frame in the input (makes `uid`s unique).
    pub index: u64,
    /// Length of the frame on the wire, link header included.
    pub wire_len: u32,
    /// Outer VLAN tag.
    pub vlan: Option<u16>,
    /// Inner VLAN tag.
    pub inner_vlan: Option<u16>,
}

impl FlowTable {
    /// An empty table.
    pub fn new(config: FlowConfig) -> Self {
        let timers = TimerQueue::new(&[
            config.tcp_handshake_inactivity,
            config.tcp_inactivity,
            config.udp_inactivity,
            config.icmp_inactivity,
            config.other_inactivity,
            config.tcp_syn_timeout,
            config.tcp_session_timer,
            config.tcp_attempt_delay,
            config.tcp_close_delay,
            config.active_timeout,
            config.dns_session_timeout,
        ]);
        FlowTable {
            config,
            map: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            slots: Slab::default(),
            free: Vec::new(),
            timers,
            now: Timestamp(i64::MIN),
            started: false,
            stats: TableStats::default(),
            memory: 0,
            tcp_boxes: Recycler::new(RECYCLED),
            app_boxes: Recycler::new(RECYCLED),
            keys_boxes: Recycler::new(RECYCLED),
            scratch: Vec::new(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Work counters so far.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Flows alive now.
    pub fn live_flows(&self) -> usize {
        self.map.len()
    }

    /// Estimated bytes of flow state held now: per flow its slot, hash-map entry,
    /// pending timers, TCP state, application state with its buffers, ICMP facts and
    /// tunnel parents. This is what `max_memory` bounds.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Ended flows leave their timers queued until due. When those outnumber the live
    /// flows' by far (a flood of short-lived or evicted flows), drop them, so timer
    /// memory follows the live flows. Linear, and rare enough to be amortised.
    fn drop_stale_timers(&mut self) {
        if self.timers.len() <= 8 * self.map.len() + 65_536 {
            return;
        }
        let slots = &self.slots;
        self.timers.retain(|t| {
            matches!(slots.get(t.slot as usize), Some(Slot { flow: Some(f), epoch })
                if *epoch == t.epoch
                    && t.gen == if t.kind == TimerKind::Inactivity { f.inact_gen } else { f.gen })
        });
    }

    /// The slot of the live flow with `key`.
    fn find(&self, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.map
            .find(self.hasher.hash_one(key), |&s| {
                slots[s as usize]
                    .flow
                    .as_ref()
                    .is_some_and(|f| f.key == *key)
            })
            .copied()
    }

    /// Re-counts a flow's bytes after it changed.
    fn account(&mut self, slot: u32) {
        let Some(f) = self.slots[slot as usize].flow.as_mut() else {
            return;
        };
        let now = f.footprint() as u32;
        if now != f.accounted {
            self.memory = self.memory + now as usize - f.accounted as usize;
            f.accounted = now;
            self.stats.peak_memory = self.stats.peak_memory.max(self.memory as u64);
        }
    }

    fn over_limits(&self) -> bool {
        let c = &self.config;
        !self.map.is_empty()
            && (self.map.len() >= c.max_flows.max(1)
                || (c.max_memory > 0 && self.memory + FLOW_FIXED > c.max_memory))
    }

    /// Processes one decoded frame (see [`Frame`]). Ended flows are appended to `out`.
    pub fn process(&mut self, frame: &Frame, decoded: &Decoded<'_>, out: &mut dyn FlowSink) {
        self.process_layers(frame, &decoded.layers, None, out);
    }

    /// Processes IP layers of one frame, outermost first; `parent` is the flow that
    /// carried the first of them (for layers decoded from a reassembled datagram).
    /// Returns the flow of the last layer processed, to parent further inner layers.
    pub fn process_layers(
        &mut self,
        frame: &Frame,
        layers: &[IpPacket<'_>],
        mut parent: Option<LayerRef>,
        out: &mut dyn FlowSink,
    ) -> Option<LayerRef> {
        let frame = Frame {
            ts: self.clock(frame.ts, out),
            ..*frame
        };
        for layer in layers {
            self.stats.layers += 1;
            parent = Some(self.layer(&frame, layer, parent, out)?);
        }
        parent
    }

    /// Credits the ICMP errors among `layers` to the flows they quote, without counting
    /// the packets anywhere: for a table that holds the quoted flow but not the error's
    /// own (a shard of a multi-threaded run). Time advances as for any packet.
    pub fn attribute_quoted(
        &mut self,
        frame: &Frame,
        layers: &[IpPacket<'_>],
        out: &mut dyn FlowSink,
    ) {
        self.clock(frame.ts, out);
        let verify = self.config.checksums == ChecksumMode::Verify;
        for l in layers {
            if let Transport::Icmp(m) = &l.transport {
                let valid =
                    !(verify && (l.bad_ip_checksum || checksum::transport_ok(l) == Some(false)));
                if valid && m.is_error() && m.quoted.is_some() {
                    self.attribute_icmp_error(m, l.src);
                }
            }
        }
    }

    /// Advances packet time to `ts` (never backwards) and fires due timers.
    fn clock(&mut self, ts: Timestamp, out: &mut dyn FlowSink) -> Timestamp {
        if !self.started {
            self.started = true;
            self.now = ts;
        }
        if ts < self.now {
            self.stats.time_backwards += 1;
            return self.now;
        }
        self.advance(ts, out);
        ts
    }

    /// Packet time so far ([`Timestamp::MIN`] before the first packet): every record due
    /// before it ([`Ended::at`]) has been handed over, and every later one will be due at
    /// or after it.
    pub fn now(&self) -> Timestamp {
        if self.started {
            self.now
        } else {
            Timestamp::MIN
        }
    }

    /// Fires every timer due at or before `now` (Zeek runs timers before the packet).
    pub fn advance(&mut self, now: Timestamp, out: &mut dyn FlowSink) {
        // A timer set by a late packet can be due before the clock: its record is due
        // at the clock ([`Ended::at`] never goes back).
        let floor = self.now();
        self.started = true;
        self.now = self.now.max(now);
        while let Some(t) = self.timers.pop_due(Some(now)) {
            self.fire(t, floor, out);
        }
    }

    /// Ends every live flow (end of input) and writes their records, ordered by first
    /// packet time then position of the first packet, so that output does not depend on
    /// hashing.
    pub fn flush(&mut self, out: &mut dyn FlowSink) {
        let mut order: Vec<(Timestamp, u64, u32)> = self
            .map
            .iter()
            .filter_map(|&s| {
                let f = self.slots[s as usize].flow.as_ref()?;
                Some((f.start, f.first_index, s))
            })
            .collect();
        order.sort_unstable();
        // Every timer is stale once all is flushed: cleared first, so that ending
        // flows does not sweep the queue for stale ones again and again as the table
        // empties (a pass per shrink by ~3×, each a random read per timer).
        self.timers.clear();
        // And the index: emptied at once rather than a probe per flow.
        self.map.clear();
        for (_, _, s) in order {
            self.finish(s, Cause::End, Timestamp::MAX, out);
        }
    }

    /// Sets a timer of `slot` at `base + delay` (the delay picks the timer lane).
    fn schedule(&mut self, slot: u32, base: Timestamp, delay: i64, kind: TimerKind) {
        let Some(f) = self.slots.get(slot as usize).and_then(|s| s.flow.as_ref()) else {
            return;
        };
        let gen = if kind == TimerKind::Inactivity {
            f.inact_gen
        } else {
            f.gen
        };
        let t = Timer {
            at: base,
            seq: 0,
            slot,
            epoch: f.epoch,
            gen,
            kind,
        };
        self.timers.push(t, base, delay);
    }

    fn fire(&mut self, t: Timer, floor: Timestamp, out: &mut dyn FlowSink) {
        let at = t.at.max(floor);
        let Some(f) = self
            .slots
            .get_mut(t.slot as usize)
            .and_then(|s| s.flow.as_mut())
            .filter(|f| f.epoch == t.epoch)
        else {
            return;
        };
        let gen = if t.kind == TimerKind::Inactivity {
            f.inact_gen
        } else {
            f.gen
        };
        if gen != t.gen {
            return;
        }
        let c = &self.config;
        match t.kind {
            TimerKind::Inactivity => {
                let (last, inactivity) = (f.last_time, f.inactivity);
                if last.add_nanos(inactivity) <= t.at {
                    self.finish(t.slot, Cause::Timeout, at, out);
                } else {
                    self.schedule(t.slot, last, inactivity, TimerKind::Inactivity);
                }
            }
            TimerKind::Expire => {
                f.expire_scheduled = false;
                let Some(tcp) = f.tcp.as_deref() else { return };
                let quiet = f.last_time.add_nanos(c.tcp_connection_linger) < t.at;
                if tcp.expire_check(quiet) {
                    let cause = if tcp.orig().did_close || tcp.resp().did_close {
                        Cause::End
                    } else {
                        Cause::Timeout
                    };
                    self.finish(t.slot, cause, at, out);
                } else if tcp.is_active {
                    if tcp.expire_relevant() {
                        f.expire_scheduled = true;
                        let session = c.tcp_session_timer;
                        self.schedule(t.slot, t.at, session, TimerKind::Expire);
                    } else {
                        f.expire_dormant = Some(t.at);
                    }
                }
            }
            TimerKind::Attempt => {
                let Some(tcp) = f.tcp.as_deref_mut() else {
                    return;
                };
                if tcp.attempt_check() {
                    self.finish(t.slot, Cause::Timeout, at, out);
                }
            }
            TimerKind::Delete => self.finish(t.slot, Cause::End, at, out),
            TimerKind::Dns => {
                // Zeek's DNS analyzer: quiet for (timeout − 1 s) at a check ends it.
                let timeout = c.dns_session_timeout;
                if t.at.nanos_since(f.last_time) >= timeout - 1_000_000_000 {
                    self.finish(t.slot, Cause::Timeout, at, out);
                } else {
                    self.schedule(t.slot, t.at, timeout, TimerKind::Dns);
                }
            }
            TimerKind::Status => {
                if let Some(r) = self.record(t.slot, Cause::Status) {
                    self.stats.interim_records += 1;
                    out.ended(Ended {
                        at,
                        inner: EndedInner::Record(Box::new(r)),
                    });
                }
                let every = self.config.active_timeout;
                self.schedule(t.slot, t.at, every, TimerKind::Status);
            }
        }
    }

    /// Removes a flow and hands it to `out`, which builds its final record; `at` is
    /// when it is due ([`Ended::at`]).
    fn finish(&mut self, slot: u32, cause: Cause, at: Timestamp, out: &mut dyn FlowSink) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(f) = s.flow.as_mut() else { return };
        s.epoch = s.epoch.wrapping_add(1);
        // The flow is summarised where it lies and moved once, into what is handed
        // over (a flow and what it ends with are a kilobyte and a half).
        let mut tcp_end = None;
        let mut app_end = None;
        let mut extras = Extras::default();
        if let Some(t) = f.tcp.take() {
            tcp_end = Some(TcpEnd::of(&t, &f.history));
            self.tcp_boxes.put(t);
        }
        if let Some(mut a) = f.app.take() {
            if !a.facts.is_empty() {
                app_end = Some(std::mem::take(&mut a.facts));
            }
            self.app_boxes.put(a);
        }
        if let Some(k) = f.keys.take() {
            extras.keys = Some(k.summary(&self.config.keystrokes, f.start));
            self.keys_boxes.put(k);
        }
        if let Some(sigs) = f.sigs.take() {
            extras.signatures = sigs.hits(&self.config.signatures);
        }
        if !self.map.is_empty() {
            let hash = self.hasher.hash_one(f.key);
            if let Ok(e) = self.map.find_entry(hash, |&s| s == slot) {
                e.remove();
            }
        }
        self.memory -= f.accounted as usize;
        self.free.push(slot);
        self.stats.records += 1;
        let Some(flow) = self.slots[slot as usize].flow.take() else {
            return;
        };
        out.ended(Ended {
            at,
            inner: EndedInner::Flow(flow, tcp_end, app_end, extras, cause),
        });
        self.drop_stale_timers();
    }

    /// Handles one IP layer; returns its flow for the next (inner) layer.
    fn layer(
        &mut self,
        frame: &Frame,
        l: &IpPacket<'_>,
        parent: Option<LayerRef>,
        out: &mut dyn FlowSink,
    ) -> Option<LayerRef> {
        let verify = self.config.checksums == ChecksumMode::Verify;
        if l.bad_ip_checksum && verify {
            self.stats.bad_ip_checksums += 1;
            return None;
        }
        if let Fragment::Later { .. } = l.fragment {
            self.stats.unreassembled_fragments += 1;
            return None;
        }
        let ep = endpoints(l)?;
        let (key, src_is_a) = ep.key();

        let mut slot = self.find(&key);
        if let (Some(s), Transport::Tcp(seg)) = (slot, &l.transport) {
            let reuse = self.slots[s as usize]
                .flow
                .as_ref()
                .and_then(|f| f.tcp.as_deref())
                .is_some_and(|tcp| tcp.is_reuse(seg));
            if reuse {
                let now = self.now;
                self.finish(s, Cause::End, now, out);
                slot = None;
            }
        }
        let slot = match slot {
            Some(s) => s,
            None => self.create(frame, (key, src_is_a), &ep, l, out),
        };
        let epoch = self.slots[slot as usize].flow.as_ref()?.epoch;

        self.update(slot, frame, l, &ep, src_is_a, parent);
        Some(LayerRef { slot, epoch })
    }

    /// Starts a flow of `key` (with whether the packet's sender is its `a` side).
    fn create(
        &mut self,
        frame: &Frame,
        (key, src_is_a): (Key, bool),
        ep: &Endpoints,
        l: &IpPacket<'_>,
        out: &mut dyn FlowSink,
    ) -> u32 {
        let ts = frame.ts;
        while self.over_limits() {
            if !self.evict(out) {
                break;
            }
        }
        let flip = self.wants_flip(ep, l);
        let (orig_p, resp_p) = if flip {
            (ep.dport, ep.sport)
        } else {
            (ep.sport, ep.dport)
        };
        let mut history = History::default();
        if flip {
            history.add(b'^');
        }
        let (inactivity, tcp) = match l.transport {
            Transport::Tcp(_) => (
                self.config.tcp_handshake_inactivity,
                Some(self.tcp_boxes.get()),
            ),
            Transport::Udp(_) => (self.config.udp_inactivity, None),
            Transport::Icmp(_) => (self.config.icmp_inactivity, None),
            Transport::Other => (self.config.other_inactivity, None),
        };
        let mut flow = Flow {
            key,
            first_index: frame.index,
            one_way: ep.one_way,
            // The originator is the sender unless flipped (a flow with itself: either).
            orig_is_a: src_is_a != flip,
            v6: ep.src.is_ipv6(),
            orig_p,
            resp_p,
            proto: ep.proto,
            start: ts,
            last_time: ts,
            dirs: [Direction::default(), Direction::default()],
            history,
            udp_chk: [Scaled::default(), Scaled::default()],
            tcp,
            app: None,
            app_ssh: false,
            app_done: false,
            icmp: None,
            keys: None,
            sigs: None,
            tunnel_parents: Vec::new(),
            parent_ref: None,
            vlan: frame.vlan,
            inner_vlan: frame.inner_vlan,
            inactivity,
            gen: 0,
            inact_gen: 0,
            expire_dormant: None,
            expire_scheduled: false,
            accounted: 0,
            epoch: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                let free = &mut self.slots[s as usize];
                flow.epoch = free.epoch;
                free.flow = Some(flow);
                s
            }
            None => self.slots.push(Slot {
                flow: Some(flow),
                epoch: 0,
            }) as u32,
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.map
            .insert_unique(hasher.hash_one(key), slot, |&s| slot_hash(slots, hasher, s));
        self.account(slot);
        self.stats.flows += 1;
        self.stats.peak_flows = self.stats.peak_flows.max(self.map.len() as u64);
        self.schedule(slot, ts, inactivity, TimerKind::Inactivity);
        if matches!(l.transport, Transport::Tcp(_)) {
            // Zeek's first expire check comes tcp_SYN_timeout after the start.
            if let Some(f) = self.slots[slot as usize].flow.as_mut() {
                f.expire_scheduled = true;
            }
            let delay = self.config.tcp_syn_timeout;
            self.schedule(slot, ts, delay, TimerKind::Expire);
        }
        if self.config.active_timeout > 0 {
            let every = self.config.active_timeout;
            self.schedule(slot, ts, every, TimerKind::Status);
        }
        if self.config.dns_session_timeout > 0
            && matches!(l.transport, Transport::Udp(_))
            && is_dns_port(resp_p)
        {
            let timeout = self.config.dns_session_timeout;
            self.schedule(slot, ts, timeout, TimerKind::Dns);
        }
        slot
    }

    /// Zeek's responder heuristic for a flow that does not start with a SYN.
    fn wants_flip(&self, ep: &Endpoints, l: &IpPacket<'_>) -> bool {
        if let IpAddr::V4(v4) = ep.dst {
            if v4.is_broadcast() {
                return false;
            }
        }
        let c = &self.config;
        match &l.transport {
            Transport::Tcp(seg) => {
                let f = seg.flags;
                if f.syn() && !f.ack() {
                    return false;
                }
                if !c.is_likely_server(ep.sport, true) {
                    return false;
                }
                if c.is_likely_server(ep.dport, true) {
                    // Both plausible: a SYN/ACK comes from the responder; otherwise
                    // favour the lower port as the server (Zeek 8 behaviour, see
                    // docs/COMPARISON.md).
                    f.syn() || ep.sport < ep.dport
                } else {
                    true
                }
            }
            Transport::Udp(_) => {
                c.is_likely_server(ep.sport, false) && !c.is_likely_server(ep.dport, false)
            }
            _ => false,
        }
    }

    /// Ends the live flow with the nearest pending timer; false when none is left.
    fn evict(&mut self, out: &mut dyn FlowSink) -> bool {
        while let Some(t) = self.timers.pop_due(None) {
            let valid = matches!(self.slots.get(t.slot as usize), Some(Slot { flow: Some(_), epoch }) if *epoch == t.epoch);
            if valid {
                self.stats.evicted += 1;
                let now = self.now;
                self.finish(t.slot, Cause::Evicted, now, out);
                return true;
            }
        }
        false
    }

    /// Updates a flow with one packet (`src_is_a`: its sender is the key's `a` side).
    fn update(
        &mut self,
        slot: u32,
        frame: &Frame,
        l: &IpPacket<'_>,
        ep: &Endpoints,
        src_is_a: bool,
        parent: Option<LayerRef>,
    ) {
        let ts = frame.ts;
        let verify = self.config.checksums == ChecksumMode::Verify;
        let idle = self.config.idle_threshold;
        let app_on = self.config.app_facts;
        // The carrying flow's uid, computed only when this flow meets a new carrier.
        let parent_uid = parent
            .filter(|p| {
                let known = self.slots[slot as usize]
                    .flow
                    .as_ref()
                    .map(|f| f.parent_ref);
                known != Some(Some((p.slot, p.epoch)))
            })
            .and_then(|p| {
                let s = self.slots.get(p.slot as usize)?;
                let f = s.flow.as_ref().filter(|_| s.epoch == p.epoch)?;
                Some((p, f.uid()))
            });
        let mut schedule = Pending::default();
        let mut quoted_error: Option<(IcmpMessage, IpAddr)> = None;
        let mut bad_checksum = false;
        // Whether the flow's footprint may have changed (boxes or buffers added).
        let mut grew = false;
        {
            let Some(f) = self.slots[slot as usize].flow.as_mut() else {
                return;
            };
            if let Some((p, puid)) = parent_uid {
                f.parent_ref = Some((p.slot, p.epoch));
                if !f.tunnel_parents.contains(&puid) {
                    f.tunnel_parents.push(puid);
                    grew = true;
                }
            }
            // Sent by the originator: from the key's side the originator is on, with an
            // address of its family (a v4-mapped IPv6 address keys as IPv4 does); a
            // flow between one address and port and itself counts every packet so.
            let mut is_orig = src_is_a == f.orig_is_a && ep.src.is_ipv6() == f.v6;
            if f.key.a == f.key.b && f.orig_p == f.resp_p {
                is_orig = true;
            }
            let checksum_ok = if verify {
                checksum::transport_ok(l)
            } else {
                None
            };
            let mut counted = true;
            match &l.transport {
                Transport::Tcp(seg) => {
                    if checksum_ok == Some(false) {
                        bad_checksum = true;
                        if let Some(tcp) = f.tcp.as_deref_mut() {
                            tcp.checksum_error(is_orig, &mut f.history);
                        }
                        counted = false;
                    } else {
                        let fx = tcp_packet(f, seg, l, is_orig, ts);
                        if fx.flipped {
                            flip_flow(f);
                            is_orig = !is_orig;
                        }
                        apply_effects(f, &fx, ts, &self.config, &mut schedule);
                    }
                }
                Transport::Udp(u) => {
                    let d = usize::from(!is_orig);
                    if checksum_ok == Some(false) {
                        bad_checksum = true;
                        if f.udp_chk[d].hit() {
                            f.history.add(if is_orig { b'C' } else { b'c' });
                        }
                        counted = false;
                    } else {
                        let mask = if is_orig {
                            bit::UDP_ORIG_DATA
                        } else {
                            bit::UDP_RESP_DATA
                        };
                        f.history.check(mask, if is_orig { b'D' } else { b'd' });
                        let ulen = u64::from(u.length).saturating_sub(8);
                        f.dirs[d].datagram_bytes += ulen;
                        f.dirs[d].active = true;
                        f.last_time = f.last_time.max(ts);
                    }
                }
                Transport::Icmp(m) => {
                    if checksum_ok == Some(false) {
                        bad_checksum = true;
                        counted = false;
                    } else {
                        let d = usize::from(!is_orig);
                        f.dirs[d].datagram_bytes += u64::from(l.payload_len);
                        f.dirs[d].active = true;
                        f.last_time = f.last_time.max(ts);
                        if m.is_echo() {
                            grew |= f.icmp.is_none();
                            let facts = f.icmp.get_or_insert_with(Default::default);
                            if !facts.echo_ids.contains(&m.echo_id) && facts.echo_ids.len() < 16 {
                                facts.echo_ids.push(m.echo_id);
                            }
                            if l.payload.len() >= 256 && facts.entropy_samples < 16 {
                                let e = crate::app::delta_entropy(l.payload);
                                facts.entropy_samples += 1;
                                let mean = facts.payload_entropy.unwrap_or(0.0);
                                facts.payload_entropy =
                                    Some(mean + (e - mean) / facts.entropy_samples as f64);
                            }
                        }
                        if m.is_error() && m.quoted.is_some() {
                            quoted_error = Some((*m, l.src));
                        }
                    }
                }
                Transport::Other => {
                    f.last_time = f.last_time.max(ts);
                }
            }
            if counted {
                if let (Transport::Tcp(seg), Some(tcp)) = (&l.transport, f.tcp.as_deref_mut()) {
                    let prev = f.dirs[usize::from(!is_orig)].last_seen();
                    let quick = prev.is_some_and(|p| ts.nanos_since(p) < 1_000_000_000);
                    tcp.watch.observe(is_orig, seg, l.payload_len, quick);
                }
                let d = &mut f.dirs[usize::from(!is_orig)];
                d.ip_bytes += u64::from(l.ip_len);
                d.link_bytes += u64::from(frame.wire_len);
                d.fragments += u64::from(l.fragments);
                d.payload_bytes += u64::from(l.payload_len);
                if !l.captured_all() {
                    d.truncated += 1;
                }
                d.observe(ts, l.payload_len, l.ttl, idle);
                if let Transport::Tcp(seg) = &l.transport {
                    d.observe_flags(seg.flags);
                    if seg.window == 0 && !seg.flags.rst() {
                        d.zero_windows += 1;
                    }
                }
                if l.payload_len > 0 {
                    let pkts = f.dirs[0].pkts + f.dirs[1].pkts;
                    if f.keys.is_none() && pkts >= 3 {
                        f.keys = Some(self.keys_boxes.get());
                        grew = true;
                    }
                    if let Some(k) = f.keys.as_deref_mut() {
                        let ssh = f.app_ssh;
                        k.observe(
                            &self.config.keystrokes,
                            f.start,
                            ts,
                            is_orig,
                            l.payload_len,
                            pkts,
                            ssh,
                        );
                    }
                }
                if !l.payload.is_empty() && self.config.signatures.covers(f.proto) {
                    let set = &*self.config.signatures;
                    let stream = f.proto == IpProto::TCP;
                    let st = f.sigs.get_or_insert_with(|| {
                        grew = true;
                        Box::default()
                    });
                    if st.wants(set, is_orig, stream) {
                        st.observe(
                            set,
                            f.proto,
                            f.resp_p,
                            is_orig,
                            l.payload,
                            l.payload_len,
                            &mut self.scratch,
                        );
                        grew = true;
                    }
                }
                if app_on && !l.payload.is_empty() {
                    let carrier = match l.transport {
                        Transport::Tcp(_) => Some(Carrier::Tcp),
                        Transport::Udp(_) => Some(Carrier::Udp),
                        _ => None,
                    };
                    if let Some(carrier) = carrier.filter(|_| !f.app_done) {
                        grew |= f.app.is_none();
                        let app = f.app.get_or_insert_with(|| self.app_boxes.get());
                        // A DNS flow offers every message: re-count its bytes only when
                        // its state may have grown.
                        grew |= app.offer(is_orig, l.payload, carrier, (f.orig_p, f.resp_p));
                        f.app_ssh = app.facts.ssh.is_some();
                        f.app_done = app.done();
                    }
                }
            }
        }
        if bad_checksum {
            self.stats.bad_checksums += 1;
        }
        for &(base, delay, kind) in schedule.iter() {
            if kind == TimerKind::Inactivity {
                if let Some(f) = self.slots[slot as usize].flow.as_mut() {
                    f.inact_gen = f.inact_gen.wrapping_add(1);
                }
            }
            self.schedule(slot, base, delay, kind);
        }
        self.ensure_expire(slot);
        if grew {
            self.account(slot);
        }
        if let Some((m, from)) = quoted_error {
            self.attribute_icmp_error(&m, from);
        }
    }

    /// Schedules the next expire check when one could now act but none is pending.
    fn ensure_expire(&mut self, slot: u32) {
        let session = self.config.tcp_session_timer;
        let now = self.now;
        let Some(f) = self.slots[slot as usize].flow.as_mut() else {
            return;
        };
        let Some(tcp) = f.tcp.as_deref() else { return };
        if f.expire_scheduled || !tcp.expire_relevant() {
            return;
        }
        let Some(base) = f.expire_dormant else { return };
        // The chain fires at base + k·session; the next tick after now.
        let elapsed = now.nanos_since(base).max(0);
        let k = elapsed / session.max(1) + 1;
        f.expire_scheduled = true;
        f.expire_dormant = None;
        self.schedule(slot, base, k * session, TimerKind::Expire);
    }

    fn attribute_icmp_error(&mut self, m: &IcmpMessage, from: IpAddr) {
        let Some(q) = m.quoted else { return };
        let (sport, dport, one_way) = if q.proto.is_icmp() {
            let (cp, ow) = icmp_counterpart(
                q.proto == IpProto::ICMPV6,
                q.src_port as u8,
                q.dst_port as u8,
            );
            (q.src_port, cp, ow)
        } else {
            (q.src_port, q.dst_port, false)
        };
        let ep = Endpoints {
            src: q.src,
            sport,
            dst: q.dst,
            dport,
            proto: q.proto,
            one_way,
        };
        let (key, _) = ep.key();
        let Some(slot) = self.find(&key) else {
            return;
        };
        let Some(f) = self.slots[slot as usize].flow.as_mut() else {
            return;
        };
        let facts = f.icmp.get_or_insert_with(Default::default);
        facts.errors += 1;
        facts.last_error_type = Some(m.icmp_type);
        facts.last_error_code = Some(m.code);
        facts.last_error_from = Some(from);
        self.stats.icmp_errors_attributed += 1;
        self.account(slot);
    }

    /// Builds the record of a live flow.
    fn record(&self, slot: u32, cause: Cause) -> Option<FlowRecord> {
        let f = self.slots.get(slot as usize)?.flow.as_ref()?;
        let tcp = f.tcp.as_deref().map(|t| TcpEnd::of(t, &f.history));
        let app = f
            .app
            .as_ref()
            .filter(|a| !a.facts.is_empty())
            .map(|a| Box::new(a.facts.clone()));
        let extras = Extras {
            keys: f
                .keys
                .as_deref()
                .map(|k| k.summary(&self.config.keystrokes, f.start)),
            signatures: f
                .sigs
                .as_deref()
                .map(|s| s.hits(&self.config.signatures))
                .unwrap_or_default(),
        };
        Some(build_record(f, tcp, app, extras, cause))
    }
}

/// The hash of the key of the flow in slot `s` (for the index to grow).
fn slot_hash(slots: &Slab<Slot>, hasher: &foldhash::fast::RandomState, s: u32) -> u64 {
    slots
        .get(s as usize)
        .and_then(|x| x.flow.as_ref())
        .map_or(0, |f| hasher.hash_one(f.key))
}

/// The endpoints of a layer, or `None` for layers that make no flow (a TCP/UDP/ICMP
/// header that could not be decoded).
fn endpoints(l: &IpPacket<'_>) -> Option<Endpoints> {
    let (sport, dport, one_way) = match &l.transport {
        Transport::Tcp(t) => (t.src_port, t.dst_port, false),
        Transport::Udp(u) => (u.src_port, u.dst_port, false),
        Transport::Icmp(m) => {
            let (cp, ow) = icmp_counterpart(m.v6, m.icmp_type, m.code);
            (u16::from(m.icmp_type), cp, ow)
        }
        Transport::Other => {
            if matches!(
                l.proto,
                IpProto::TCP | IpProto::UDP | IpProto::ICMP | IpProto::ICMPV6
            ) {
                return None;
            }
            (0, 0, false)
        }
    };
    Some(Endpoints {
        src: l.src,
        sport,
        dst: l.dst,
        dport,
        proto: l.proto,
        one_way,
    })
}

fn tcp_packet(
    f: &mut Flow,
    seg: &TcpSegment<'_>,
    l: &IpPacket<'_>,
    is_orig: bool,
    ts: Timestamp,
) -> Effects {
    let opts = if seg.flags.syn() {
        Some(tcp_options::syn_options(seg.options))
    } else {
        None
    };
    let Some(tcp) = f.tcp.as_deref_mut() else {
        return Effects::default();
    };
    let t = &mut tcp.timing;
    if seg.flags.syn() {
        if !seg.flags.ack() && is_orig && !t.syn.is_set() {
            t.syn.set(ts);
            t.orig_mss = opts.and_then(|o| o.mss);
            t.orig_wscale = opts.and_then(|o| o.wscale);
        } else if seg.flags.ack() && !is_orig && !t.synack.is_set() {
            t.synack.set(ts);
            t.resp_mss = opts.and_then(|o| o.mss);
            t.resp_wscale = opts.and_then(|o| o.wscale);
        }
    } else if seg.flags.ack() && is_orig && t.synack.is_set() && !t.ack.is_set() {
        t.ack.set(ts);
    }
    if (seg.flags.fin() || seg.flags.rst()) && !t.close_start.is_set() {
        t.close_start.set(ts);
    }
    let input = SegmentInput {
        is_orig,
        seg,
        len: l.payload_len,
        payload_captured: l.payload.len() as u64 >= u64::from(l.payload_len),
        syn_wscale: opts.and_then(|o| o.wscale),
    };
    let before = tcp.retransmissions_total();
    let fx = tcp.process(input, &mut f.history);
    let after = tcp.retransmissions_total();
    let d = usize::from(!is_orig);
    f.dirs[d].retransmissions += u64::from(after.saturating_sub(before));
    fx
}

fn flip_flow(f: &mut Flow) {
    f.orig_is_a = !f.orig_is_a;
    std::mem::swap(&mut f.orig_p, &mut f.resp_p);
    f.dirs.swap(0, 1);
    if let Some(tcp) = f.tcp.as_deref_mut() {
        tcp.watch.flip();
        tcp.timing.flip();
    }
    if let Some(k) = f.keys.as_deref_mut() {
        k.flip();
    }
    if let Some(s) = f.sigs.as_deref_mut() {
        s.flip();
    }
    f.history.add(b'^');
}

/// Timers one packet asks for (at most three: attempt, inactivity and expire, or
/// delete and status after a close), kept on the stack.
#[derive(Default)]
struct Pending {
    items: [Option<(Timestamp, i64, TimerKind)>; 3],
    len: usize,
}

impl Pending {
    fn push(&mut self, t: (Timestamp, i64, TimerKind)) {
        debug_assert!(
            self.len < self.items.len(),
            "more timers than one packet sets"
        );
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(t);
            self.len += 1;
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn iter(&self) -> impl Iterator<Item = &(Timestamp, i64, TimerKind)> {
        self.items[..self.len].iter().flatten()
    }
}

fn apply_effects(
    f: &mut Flow,
    fx: &Effects,
    ts: Timestamp,
    c: &FlowConfig,
    schedule: &mut Pending,
) {
    if fx.update_last_time {
        f.last_time = f.last_time.max(ts);
    }
    if fx.attempt_timer {
        schedule.push((ts, c.tcp_attempt_delay, TimerKind::Attempt));
    }
    if fx.established {
        f.inactivity = c.tcp_inactivity;
        schedule.push((f.last_time, f.inactivity, TimerKind::Inactivity));
    }
    if fx.close_complete {
        // Zeek cancels every timer and deletes the connection after the close delay.
        f.gen = f.gen.wrapping_add(1);
        f.inact_gen = f.inact_gen.wrapping_add(1);
        f.expire_scheduled = true; // no more expire checks
        f.expire_dormant = None;
        schedule.clear();
        schedule.push((f.last_time, c.tcp_close_delay, TimerKind::Delete));
        if c.active_timeout > 0 {
            // Interim records continue until the record is final.
            schedule.push((ts, c.active_timeout, TimerKind::Status));
        }
    } else if fx.half_close && !f.expire_scheduled {
        // Zeek starts another expire chain at the half close; one pending check per
        // flow is enough, as a pending chain checks within one session interval.
        f.expire_scheduled = true;
        f.expire_dormant = None;
        schedule.push((f.last_time, c.tcp_session_timer, TimerKind::Expire));
    }
}

fn build_record(
    f: &Flow,
    tcp: Option<TcpEnd>,
    app: Option<Box<AppFacts>>,
    extras: Extras,
    cause: Cause,
) -> FlowRecord {
    let history = f.history.as_str().to_string();
    let (conn_state, orig_bytes, resp_bytes, missed) = match tcp {
        Some(t) => (t.conn_state, t.orig_bytes, t.resp_bytes, t.missed_bytes),
        None => {
            let (o, r) = (&f.dirs[0], &f.dirs[1]);
            let state = if f.proto == IpProto::UDP {
                match (o.active, r.active) {
                    (true, true) => ConnState::SF,
                    (true, false) => ConnState::S0,
                    (false, true) => ConnState::SHR,
                    (false, false) => ConnState::OTH,
                }
            } else {
                ConnState::OTH
            };
            (state, o.datagram_bytes, r.datagram_bytes, 0)
        }
    };
    let secs = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(FlowRecord::duration_of(a, b)),
        _ => None,
    };
    let is_tcp = tcp.is_some();
    let tcp_facts = tcp.map(|t| {
        let (ti, watch) = (&t.timing, &t.watch);
        TcpFacts {
            syn_synack: secs(ti.syn.get(), ti.synack.get()),
            synack_ack: secs(ti.synack.get(), ti.ack.get()),
            teardown: ti
                .close_start
                .get()
                .map(|s| FlowRecord::duration_of(s, f.last_time)),
            orig_mss: ti.orig_mss,
            resp_mss: ti.resp_mss,
            orig_wscale: ti.orig_wscale,
            resp_wscale: ti.resp_wscale,
            first_packets: watch.first_packets(),
            orig_header: watch.header(true),
            resp_header: watch.header(false),
            ack_storm_run: watch.ack_storm_run(),
            first_data: watch.first_data().map(str::to_string),
        }
    });
    FlowRecord {
        uid: f.uid(),
        community_id: community_id(&Endpoints {
            src: f.orig_h(),
            sport: f.orig_p,
            dst: f.resp_h(),
            dport: f.resp_p,
            proto: f.proto,
            one_way: f.one_way,
        }),
        ts: f.start,
        last_ts: f.last_time,
        duration: FlowRecord::duration_of(f.start, f.last_time),
        proto: f.proto.transport_name().to_string(),
        ip_proto: f.proto.0,
        orig_h: f.orig_h(),
        orig_p: f.orig_p,
        resp_h: f.resp_h(),
        resp_p: f.resp_p,
        service: app.as_ref().and_then(|a| a.service()),
        orig_pkts: f.dirs[0].pkts,
        resp_pkts: f.dirs[1].pkts,
        orig_bytes,
        resp_bytes,
        orig_ip_bytes: f.dirs[0].ip_bytes,
        resp_ip_bytes: f.dirs[1].ip_bytes,
        conn_state,
        history,
        cause,
        missed_bytes: missed,
        vlan: f.vlan,
        inner_vlan: f.inner_vlan,
        tunnel_parents: f.tunnel_parents.clone(),
        signatures: extras.signatures,
        dynamics: {
            let mut d = Dynamics {
                orig: f.dirs[0].to_stats(is_tcp),
                resp: f.dirs[1].to_stats(is_tcp),
            };
            if let Some(k) = extras.keys {
                let [bo, br] = k.bursts;
                let [oo, or] = k.onsets;
                for (i, s, b, on) in [(0, &mut d.orig, bo, oo), (1, &mut d.resp, br, or)] {
                    s.keystrokes = k.keystrokes[i];
                    s.bursts = Some(b).filter(|b| b.count > 0);
                    s.onsets = on;
                }
            }
            d
        },
        tcp: tcp_facts,
        icmp: f.icmp.as_deref().map(|i| IcmpFacts {
            payload_entropy: i.payload_entropy.map(|e| (e * 1e3).round() / 1e3),
            ..i.clone()
        }),
        app,
        export: None,
    }
}
