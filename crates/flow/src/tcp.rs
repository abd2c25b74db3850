//! TCP connection state as Zeek tracks it, so that `conn_state`, `history` and the
//! payload byte counts agree with Zeek's `conn.log`.
//!
//! This is a re-implementation of the behaviour of Zeek's TCP session adapter and
//! endpoint (endpoint states, sequence-space bookkeeping with wrap-around, the state
//! transitions per endpoint, window and zero-window tracking, retransmission detection,
//! and the content-gap accounting of its reassembler), written from its documented
//! semantics and source. It keeps no payload: the reassembly emulation tracks sequence
//! ranges only. Timers are not run here; [`TcpConn::process`] reports what Zeek would
//! schedule in [`Effects`], and the flow table owns the clock.
//!
//! Everything is a pure function of the packets given: no clock, no allocation except
//! the out-of-order range list of an endpoint, which is bounded.

use crate::watch::Watch;
use tunnelwatch_decode::{TcpFlags, TcpSegment};
use tunnelwatch_model::Timestamp;

use crate::history::{bit, History, Scaled};

/// Zeek's `TOO_LARGE_SEQ_DELTA`: jumps beyond this are not trusted on SYN/RST.
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;
/// Zeek's `tcp_max_initial_window`.
const MAX_INITIAL_WINDOW: u64 = 16_384;
/// Zeek's `tcp_max_above_hole_without_any_acks`.
const MAX_ABOVE_HOLE_WITHOUT_ACKS: u64 = 16_384;
/// Zeek's `tcp_excessive_data_without_further_acks`.
const EXCESSIVE_DATA_WITHOUT_ACKS: u64 = 10 * 1024 * 1024;
/// Bound on tracked out-of-order ranges per endpoint.
const MAX_BLOCKS: usize = 64;

/// The state of one TCP endpoint (Zeek's `EndpointState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EpState {
    /// Nothing seen from this side.
    #[default]
    Inactive,
    /// Sent a SYN.
    SynSent,
    /// Sent a SYN/ACK as the originator.
    SynAckSent,
    /// Seen mid-stream, no SYN.
    Partial,
    /// Handshake done.
    Established,
    /// Sent a FIN.
    Closed,
    /// Sent a RST.
    Reset,
}

fn is_handshake(s: EpState) -> bool {
    matches!(
        s,
        EpState::Inactive | EpState::SynSent | EpState::SynAckSent
    )
}

#[inline]
fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Sequence ranges of one direction's payload, for Zeek-style gap accounting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Reassembly {
    /// Next relative sequence number to deliver (1 after the SYN).
    last_reassem: u64,
    /// Ranges below this were acknowledged and forgotten.
    trim_seq: u64,
    /// Disjoint, sorted ranges `[seq, upper)` not yet trimmed.
    blocks: Vec<(u64, u64)>,
    /// Zeek gave up on this direction (too much unacknowledged data).
    skip: bool,
    /// EOF was reported.
    did_eof: bool,
}

impl Reassembly {
    fn new() -> Self {
        Reassembly {
            last_reassem: 1,
            trim_seq: 1,
            ..Default::default()
        }
    }

    fn data_size(&self) -> u64 {
        self.blocks.iter().map(|(s, u)| u - s).sum()
    }

    fn undelivered(&self) -> u64 {
        self.blocks
            .last()
            .map_or(0, |&(_, u)| u.saturating_sub(self.last_reassem))
    }

    /// Inserts `[seq, upper)` (union with existing ranges) and delivers what became
    /// contiguous.
    fn insert(&mut self, mut seq: u64, upper: u64) {
        if upper <= self.trim_seq {
            return;
        }
        if seq < self.trim_seq {
            seq = self.trim_seq;
        }
        // Merge into the sorted disjoint list.
        let mut new = (seq, upper);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.blocks.len() + 1);
        let mut placed = false;
        for &(s, u) in &self.blocks {
            if u < new.0 {
                out.push((s, u));
            } else if new.1 < s {
                if !placed {
                    out.push(new);
                    placed = true;
                }
                out.push((s, u));
            } else {
                new = (new.0.min(s), new.1.max(u));
            }
        }
        if !placed {
            out.push(new);
        }
        if out.len() > MAX_BLOCKS {
            // Keep the lowest ranges: those decide gaps first.
            out.truncate(MAX_BLOCKS);
        }
        self.blocks = out;
        self.deliver();
    }

    fn deliver(&mut self) {
        for &(s, u) in &self.blocks {
            if s <= self.last_reassem && u > self.last_reassem {
                self.last_reassem = u;
            }
        }
    }

    /// Forgets ranges below `seq` (all of a range must lie below).
    fn trim_blocks(&mut self, seq: u64) {
        self.blocks.retain(|&(_, u)| u > seq);
        if let Some(first) = self.blocks.first_mut() {
            if first.0 < seq {
                // Zeek keeps a partially acknowledged block whole; only its start
                // matters for later gap checks, and it starts below `seq`.
            }
        }
        self.trim_seq = self.trim_seq.max(seq);
        self.deliver();
    }
}

/// One endpoint of a TCP connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Current state.
    pub state: EpState,
    /// State before the last change.
    pub prev_state: EpState,
    start_seq: u32,
    last_seq: u32,
    ack_seq: u32,
    seq_wraps: u32,
    ack_wraps: u32,
    window: u32,
    window_scale: u8,
    window_seq: u32,
    window_ack_seq: u32,
    /// FINs sent.
    pub fin_cnt: u32,
    /// RSTs sent.
    pub rst_cnt: u32,
    fin_seq: u64,
    /// Zeek's `did_close`.
    pub did_close: bool,
    hist_last_syn: u64,
    hist_last_fin: u64,
    hist_last_rst: u64,
    chk: Scaled,
    rxmt: Scaled,
    win0: Scaled,
    gap: Scaled,
    reasm: Reassembly,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            state: EpState::Inactive,
            prev_state: EpState::Inactive,
            start_seq: 0,
            last_seq: 0,
            ack_seq: 0,
            seq_wraps: 0,
            ack_wraps: 0,
            window: 0,
            window_scale: 0,
            window_seq: 0,
            window_ack_seq: 0,
            fin_cnt: 0,
            rst_cnt: 0,
            fin_seq: 0,
            did_close: false,
            hist_last_syn: 0,
            hist_last_fin: 0,
            hist_last_rst: 0,
            chk: Scaled::default(),
            rxmt: Scaled::default(),
            win0: Scaled::default(),
            gap: Scaled::default(),
            reasm: Reassembly::new(),
        }
    }
}

impl Endpoint {
    fn full(seq: u32, wraps: u32) -> u64 {
        (u64::from(wraps) << 32) | u64::from(seq)
    }

    fn start_seq64(&self) -> u64 {
        u64::from(self.start_seq)
    }

    fn to_relative(&self, seq: u32, wraps: u32) -> u64 {
        Self::full(seq, wraps).wrapping_sub(self.start_seq64())
    }

    fn update_last_seq_raw(&mut self, seq: u32) {
        if seq < self.last_seq {
            self.seq_wraps += 1;
        }
        self.last_seq = seq;
    }

    fn update_ack_seq_raw(&mut self, seq: u32) {
        if seq < self.ack_seq {
            self.ack_wraps += 1;
        }
        self.ack_seq = seq;
    }

    fn init_seqs(&mut self, start: u32, ack: u32, last: u32) {
        self.start_seq = start;
        self.ack_seq = ack;
        self.last_seq = last;
    }

    /// True when nothing this endpoint sent was acknowledged beyond its SYN.
    fn no_data_acked(&self) -> bool {
        let ack = Self::full(self.ack_seq, self.ack_wraps);
        let start = self.start_seq64();
        ack == start || ack == start + 1
    }

    /// Payload size from sequence numbers (Zeek's `TCP_Endpoint::Size`).
    pub fn size(&self, peer_state: EpState) -> u64 {
        if self.prev_state == EpState::SynSent
            && self.state == EpState::Reset
            && peer_state == EpState::Inactive
            && !self.no_data_acked()
        {
            return 0;
        }
        let last = Self::full(self.last_seq, self.seq_wraps);
        let ack = Self::full(self.ack_seq, self.ack_wraps);
        let top = last.max(ack);
        let mut size = top.wrapping_sub(self.start_seq64());
        if size != 0 {
            size = size.wrapping_sub(1);
        }
        if self.fin_cnt > 0 && size != 0 {
            size -= 1;
        }
        // A wrapped-around subtraction means garbage sequence numbers: report nothing.
        if size > (1 << 48) {
            0
        } else {
            size
        }
    }

    fn relative_seq(&self, cur: u32, last: u32, mut wraps: u32, underflow: &mut bool) -> u64 {
        let delta = seq_delta(cur, last);
        if delta < 0 {
            if wraps > 0 && cur > last {
                wraps -= 1;
            }
        } else if delta > 0 && cur < last {
            wraps += 1;
        }
        if wraps == 0 {
            let d = seq_delta(cur, self.start_seq);
            if d < 0 {
                *underflow = true;
            }
            return i64::from(d) as u64;
        }
        self.to_relative(cur, wraps)
    }

    fn is_clean(&self) -> bool {
        self.state == EpState::Established
            || (self.state == EpState::Closed && self.prev_state == EpState::Established)
    }
}

/// What Zeek would schedule or change after a packet; applied by the flow table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Update the connection's last time (not both sides closed before this packet).
    pub update_last_time: bool,
    /// The originator's first SYN: arm the attempt timer.
    pub attempt_timer: bool,
    /// The handshake finished: switch to the established inactivity timeout.
    pub established: bool,
    /// Roles were flipped (SYN/SYN-ACK reversal); the flow must swap its sides.
    pub flipped: bool,
    /// Both sides finished (or a reset): cancel timers, delete after the close delay.
    pub close_complete: bool,
    /// One side closed while the other is still open: arm an expire check.
    pub half_close: bool,
}

/// A handshake or teardown time that may not have come, in the 8 bytes of a time (an
/// `Option` takes 16): not yet is [`Timestamp::MIN`], which is before every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Moment(Timestamp);

impl Default for Moment {
    fn default() -> Self {
        Moment(Timestamp::MIN)
    }
}

impl Moment {
    pub(crate) fn get(self) -> Option<Timestamp> {
        (self.0 != Timestamp::MIN).then_some(self.0)
    }

    pub(crate) fn is_set(self) -> bool {
        self.get().is_some()
    }

    pub(crate) fn set(&mut self, ts: Timestamp) {
        self.0 = ts;
    }
}

/// TCP timing facts collected alongside the state machine, for the record (kept with
/// the TCP state, not in every flow: 48 bytes a UDP or ICMP flow does not need).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpTiming {
    pub(crate) syn: Moment,
    pub(crate) synack: Moment,
    pub(crate) ack: Moment,
    pub(crate) close_start: Moment,
    pub(crate) orig_mss: Option<u16>,
    pub(crate) resp_mss: Option<u16>,
    pub(crate) orig_wscale: Option<u8>,
    pub(crate) resp_wscale: Option<u8>,
}

impl TcpTiming {
    /// Swaps the originator's and responder's options (the flow's roles flipped; the
    /// handshake times stay, being the connection's).
    pub(crate) fn flip(&mut self) {
        std::mem::swap(&mut self.orig_mss, &mut self.resp_mss);
        std::mem::swap(&mut self.orig_wscale, &mut self.resp_wscale);
    }
}

/// A TCP connection's two endpoints and connection-level flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConn {
    eps: [Endpoint; 2],
    /// Index of the originator in `eps` (flips swap roles without moving data).
    orig_idx: usize,
    is_partial: bool,
    first_packet_seen: u8,
    /// Zeek's `is_active`: cleared by a reset, a finish or an attempt timeout.
    pub is_active: bool,
    close_deferred: bool,
    deferred_gen_event: bool,
    /// Bytes missing from the streams (content gaps), as Zeek's `missed_bytes`.
    pub missed_bytes: u64,
    fx: Effects,
    /// Header and acknowledgement facts for the TCP filter, oriented like the flow.
    pub watch: Watch,
    /// Handshake and teardown times, MSS and window scales, oriented like the flow.
    pub(crate) timing: TcpTiming,
}

impl Default for TcpConn {
    fn default() -> Self {
        TcpConn {
            eps: [Endpoint::default(), Endpoint::default()],
            orig_idx: 0,
            is_partial: false,
            first_packet_seen: 0,
            is_active: true,
            close_deferred: false,
            deferred_gen_event: false,
            missed_bytes: 0,
            fx: Effects::default(),
            watch: Watch::default(),
            timing: TcpTiming::default(),
        }
    }
}

const ORIG: u8 = 1;
const RESP: u8 = 2;

/// One packet's inputs to [`TcpConn::process`].
#[derive(Clone, Copy, Debug)]
pub struct SegmentInput<'s> {
    /// Sent by the current originator.
    pub is_orig: bool,
    /// The TCP header.
    pub seg: &'s TcpSegment<'s>,
    /// Payload length on the wire.
    pub len: u32,
    /// Whether the whole payload was captured (Zeek only tracks captured data).
    pub payload_captured: bool,
    /// Window-scale option of a SYN, if any.
    pub syn_wscale: Option<u8>,
}

impl TcpConn {
    /// The originator endpoint.
    pub fn orig(&self) -> &Endpoint {
        &self.eps[self.orig_idx]
    }

    /// The responder endpoint.
    pub fn resp(&self) -> &Endpoint {
        &self.eps[1 - self.orig_idx]
    }

    /// Swaps roles (Zeek's `FlipRoles` on the TCP adapter).
    pub fn flip_roles(&mut self) {
        self.orig_idx ^= 1;
        let f = self.first_packet_seen;
        self.first_packet_seen =
            (if f & ORIG != 0 { RESP } else { 0 }) | (if f & RESP != 0 { ORIG } else { 0 });
        self.is_partial = false;
    }

    /// True when both sides have closed.
    pub fn both_closed(&self) -> bool {
        self.eps[0].did_close && self.eps[1].did_close
    }

    fn idx(&self, is_orig: bool) -> usize {
        if is_orig {
            self.orig_idx
        } else {
            1 - self.orig_idx
        }
    }

    fn ep_is_orig(&self, i: usize) -> bool {
        i == self.orig_idx
    }

    fn hist_check(&self, hist: &mut History, i: usize, mask: u32, code: u8) -> bool {
        if self.ep_is_orig(i) {
            hist.check(mask, code)
        } else {
            hist.check(mask << 16, code.to_ascii_lowercase())
        }
    }

    fn hist_add(&self, hist: &mut History, i: usize, code: u8) {
        hist.add(if self.ep_is_orig(i) {
            code
        } else {
            code.to_ascii_lowercase()
        });
    }

    fn set_state(&mut self, i: usize, new: EpState) {
        let ep_state = self.eps[i].state;
        if new != ep_state {
            if !is_handshake(new) && is_handshake(ep_state) && is_handshake(self.eps[1 - i].state) {
                self.fx.established = true;
            }
            self.eps[i].prev_state = ep_state;
            self.eps[i].state = new;
        }
    }

    /// A segment with a bad checksum (Zeek records `C`/`c` and ignores the packet).
    pub fn checksum_error(&mut self, is_orig: bool, hist: &mut History) {
        let i = self.idx(is_orig);
        if self.eps[i].chk.hit() {
            self.hist_add(hist, i, b'C');
        }
    }

    /// Zeek's `IsReuse`: does this SYN start a new connection on the same 5-tuple?
    pub fn is_reuse(&self, seg: &TcpSegment<'_>) -> bool {
        if !seg.flags.syn() {
            return false;
        }
        let mut conn_orig = self.orig();
        if seg.flags.ack() {
            if self.orig().state != EpState::Inactive {
                return false;
            }
            conn_orig = self.resp();
        }
        // Zeek's IsClosed: either side has closed.
        let closed = self.eps[0].did_close || self.eps[1].did_close;
        if !closed {
            if seg.seq == conn_orig.start_seq {
                return false;
            }
            if !seg.flags.ack()
                && conn_orig.state == EpState::SynAckSent
                && self.resp().state == EpState::Inactive
                && seg.seq == self.resp().start_seq
            {
                return false;
            }
        }
        true
    }

    /// Processes one segment; returns what the flow table must schedule or change.
    pub fn process(&mut self, input: SegmentInput<'_>, hist: &mut History) -> Effects {
        self.fx = Effects::default();
        let is_orig = input.is_orig;
        let seg = input.seg;
        let flags = seg.flags;
        let len = input.len;
        let base_seq = seg.seq;
        let ack_seq = seg.ack;
        let e = self.idx(is_orig);
        let p = 1 - e;

        // SetPartialStatus.
        if is_orig {
            if self.first_packet_seen & ORIG == 0 {
                self.is_partial = !flags.syn() || flags.ack();
            }
        } else if self.first_packet_seen & RESP == 0 && !self.is_partial {
            self.is_partial = !flags.syn();
        }

        let mut seg_len = len as i64;
        if flags.syn() {
            seg_len += 1;
        }
        if flags.fin() {
            seg_len += 1;
        }
        if flags.rst() {
            seg_len -= i64::from(len);
        }
        let seq_one_past = base_seq.wrapping_add(seg_len as u32);

        self.init_endpoint(e, flags, base_seq, seq_one_past);

        let mut seq_underflow = false;
        let (last, wraps) = (self.eps[e].last_seq, self.eps[e].seq_wraps);
        let rel_seq = self.eps[e].relative_seq(base_seq, last, wraps, &mut seq_underflow);

        self.update_history(hist, e, flags, rel_seq, len);
        self.update_window(hist, e, seg.window, base_seq, ack_seq, flags);

        self.fx.update_last_time = !self.eps[0].did_close || !self.eps[1].did_close;

        if flags.syn() {
            self.init_window(e, flags, input.syn_wscale, base_seq, ack_seq);
        }
        if flags.fin() {
            let ep = &mut self.eps[e];
            ep.fin_cnt += 1;
            ep.fin_seq = rel_seq.wrapping_add(seg_len as u64);
        }
        if flags.rst() {
            self.eps[e].rst_cnt += 1;
        }

        let mut rel_ack = 0u64;
        if flags.ack() {
            if self.eps[p].state == EpState::Inactive {
                rel_ack = 1;
                let peer = &mut self.eps[p];
                let a = ack_seq.wrapping_sub(1);
                peer.init_seqs(a, a, a);
            } else {
                let mut ack_underflow = false;
                let peer = &self.eps[p];
                rel_ack =
                    peer.relative_seq(ack_seq, peer.ack_seq, peer.ack_wraps, &mut ack_underflow);
                if ack_underflow {
                    rel_ack = 0;
                } else if !flags.rst() {
                    let peer = &mut self.eps[p];
                    let delta = seq_delta(ack_seq, peer.ack_seq);
                    if !(ack_seq == 0 && delta > TOO_LARGE_SEQ_DELTA) && delta > 0 {
                        peer.update_ack_seq_raw(ack_seq);
                    }
                }
            }
        }

        let delta_last = self.update_last_seq(hist, e, seq_one_past, flags, len);

        let (do_close, gen_event) =
            self.update_state_machine(e, base_seq, ack_seq, len, delta_last, is_orig, flags);

        if flags.ack() {
            self.ack_received(hist, p, rel_ack);
        }

        let rel_data_seq = if flags.syn() {
            rel_seq.wrapping_add(1)
        } else {
            rel_seq
        };
        if len > 0 && input.payload_captured && !flags.rst() && !seq_underflow {
            self.data_sent(e, rel_data_seq, u64::from(len));
        }

        self.check_eof(e);

        if do_close {
            self.connection_closed(e, gen_event);
        }

        // CheckPIA_FirstPacket, with the packet's direction as it was when it arrived.
        self.first_packet_seen |= if is_orig { ORIG } else { RESP };

        self.fx
    }

    fn init_endpoint(&mut self, e: usize, flags: TcpFlags, first_seg_seq: u32, last_seq: u32) {
        let ep = &mut self.eps[e];
        match ep.state {
            EpState::Inactive => {
                if flags.syn() {
                    ep.ack_seq = first_seg_seq;
                    ep.start_seq = first_seg_seq;
                    ep.last_seq = last_seq;
                } else {
                    // Partial connection: number as though a SYN had been seen.
                    let s = first_seg_seq.wrapping_sub(1);
                    ep.ack_seq = s;
                    ep.start_seq = s;
                    ep.last_seq = first_seg_seq;
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if flags.syn() && first_seg_seq != ep.start_seq {
                    ep.init_seqs(first_seg_seq, first_seg_seq, last_seq);
                }
            }
            EpState::Established | EpState::Partial => {
                if flags.syn() {
                    ep.init_seqs(first_seg_seq, first_seg_seq, last_seq);
                }
            }
            EpState::Reset => {
                if flags.syn() && ep.prev_state == EpState::Inactive {
                    ep.init_seqs(first_seg_seq, first_seg_seq, last_seq);
                }
            }
            EpState::Closed => {}
        }
    }

    fn update_history(
        &mut self,
        hist: &mut History,
        e: usize,
        flags: TcpFlags,
        rel_seq: u64,
        len: u32,
    ) {
        let bits = u8::from(flags.syn()) + u8::from(flags.fin()) + u8::from(flags.rst());
        if bits > 1 {
            if flags.fin() && flags.rst() {
                self.hist_check(hist, e, bit::FIN_RST, b'I');
            } else {
                self.hist_check(hist, e, bit::MULTI_FLAG, b'Q');
            }
        } else if bits == 1 {
            if flags.syn() {
                let code = if flags.ack() { b'H' } else { b'S' };
                if self.hist_check(hist, e, bit::SYN, code) && rel_seq != self.eps[e].hist_last_syn
                {
                    self.hist_add(hist, e, code);
                }
                self.eps[e].hist_last_syn = rel_seq;
            }
            if flags.fin() {
                let at = rel_seq.wrapping_add(u64::from(len));
                if self.hist_check(hist, e, bit::FIN, b'F') && at != self.eps[e].hist_last_fin {
                    self.hist_add(hist, e, b'F');
                }
                self.eps[e].hist_last_fin = at;
            }
            if flags.rst() {
                if self.hist_check(hist, e, bit::RST, b'R') && rel_seq != self.eps[e].hist_last_rst
                {
                    self.hist_add(hist, e, b'R');
                }
                self.eps[e].hist_last_rst = rel_seq;
            }
        } else if len > 0 {
            self.hist_check(hist, e, bit::DATA, b'D');
        } else if flags.ack() {
            self.hist_check(hist, e, bit::ACK, b'A');
        }
    }

    fn update_window(
        &mut self,
        hist: &mut History,
        e: usize,
        window: u16,
        base_seq: u32,
        ack_seq: u32,
        flags: TcpFlags,
    ) {
        let peer_state = self.eps[1 - e].state;
        let ep_state = self.eps[e].state;
        let scale = u32::from(self.eps[e].window_scale.min(14));
        let window = u32::from(window) << scale;
        if window == 0
            && !flags.rst()
            && peer_state != EpState::Closed
            && ep_state != EpState::Reset
            && self.eps[e].win0.hit()
        {
            self.hist_add(hist, e, b'W');
        }
        if !flags.syn()
            && !flags.fin()
            && !flags.rst()
            && ep_state != EpState::Closed
            && ep_state != EpState::Reset
        {
            let ep = &mut self.eps[e];
            if seq_delta(base_seq, ep.window_seq) >= 0 && seq_delta(ack_seq, ep.window_ack_seq) >= 0
            {
                ep.window = window;
                ep.window_ack_seq = ack_seq;
                ep.window_seq = base_seq;
            }
        }
    }

    fn init_window(
        &mut self,
        e: usize,
        flags: TcpFlags,
        scale: Option<u8>,
        base_seq: u32,
        ack_seq: u32,
    ) {
        match scale {
            None => {
                self.eps[e].window_scale = 0;
                if flags.ack() {
                    self.eps[1 - e].window_scale = 0;
                }
            }
            Some(s) => {
                let ep = &mut self.eps[e];
                ep.window_scale = s.min(14);
                ep.window_seq = base_seq;
                ep.window_ack_seq = ack_seq;
                let peer = &mut self.eps[1 - e];
                peer.window_seq = ack_seq;
                peer.window_ack_seq = base_seq;
            }
        }
    }

    fn update_last_seq(
        &mut self,
        hist: &mut History,
        e: usize,
        last_seq: u32,
        flags: TcpFlags,
        len: u32,
    ) -> i32 {
        let ep = &mut self.eps[e];
        let delta_last = seq_delta(last_seq, ep.last_seq);
        if (flags.syn() || flags.rst())
            && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta_last)
        {
            // Not trusted.
        } else if flags.fin() && ep.last_seq == ep.start_seq.wrapping_add(1) {
            ep.update_last_seq_raw(last_seq);
        } else if ep.state == EpState::Reset {
            // Sequence numbers after a reset are not trusted.
        } else if delta_last > 0 {
            ep.update_last_seq_raw(last_seq);
        } else if len > 0 && ep.rxmt.hit() {
            self.hist_add(hist, e, b'T');
        }
        delta_last
    }

    #[allow(clippy::too_many_arguments)]
    fn update_state_machine(
        &mut self,
        e: usize,
        base_seq: u32,
        ack_seq: u32,
        len: u32,
        delta_last: i32,
        is_orig: bool,
        flags: TcpFlags,
    ) -> (bool, bool) {
        let p = 1 - e;
        let mut do_close = false;
        let mut gen_event = false;
        match self.eps[e].state {
            EpState::Inactive => {
                if flags.syn() {
                    if is_orig {
                        if flags.ack() {
                            self.set_state(e, EpState::SynAckSent);
                        } else {
                            self.set_state(e, EpState::SynSent);
                        }
                        self.fx.attempt_timer = true;
                    } else {
                        if !flags.ack()
                            && self.eps[p].state == EpState::SynAckSent
                            && base_seq == self.eps[e].start_seq
                        {
                            // SYN and SYN/ACK seen in reverse order: flip and establish.
                            self.is_partial = false;
                            self.flip_roles();
                            self.fx.flipped = !self.fx.flipped;
                            self.set_state(p, EpState::Established);
                            self.first_packet_seen |= ORIG;
                        }
                        if self.eps[p].state == EpState::SynSent {
                            self.set_state(p, EpState::Established);
                        }
                        self.set_state(e, EpState::Established);
                    }
                }
                if flags.fin() {
                    self.set_state(e, EpState::Closed);
                    do_close = true;
                    gen_event = true;
                }
                if flags.rst() {
                    self.set_state(e, EpState::Reset);
                    let is_reject = if is_orig {
                        self.eps[p].state == EpState::Established
                    } else {
                        matches!(self.eps[p].state, EpState::SynSent | EpState::SynAckSent)
                    };
                    do_close = true;
                    gen_event = !is_reject;
                }
                if self.eps[e].state == EpState::Inactive {
                    let orig_state = self.orig().state;
                    if !is_orig && len == 0 && orig_state == EpState::SynSent {
                        // An ACK of the initial SYN before the SYN/ACK: not partial.
                    } else if flags.ack() && self.eps[p].state == EpState::Established {
                        // Missed the SYN but saw the SYN/ACK and now an ACK.
                        self.set_state(e, EpState::Established);
                        self.is_partial = false;
                        self.first_packet_seen |= if self.ep_is_orig(e) { ORIG } else { RESP };
                    } else {
                        self.set_state(e, EpState::Partial);
                    }
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if flags.fin() {
                    self.set_state(e, EpState::Closed);
                    do_close = true;
                    gen_event = true;
                }
                if flags.rst() {
                    self.set_state(e, EpState::Reset);
                    self.is_active = false;
                    do_close = true;
                }
            }
            EpState::Established | EpState::Partial => {
                if flags.syn()
                    && self.eps[e].state == EpState::Partial
                    && self.eps[p].state == EpState::Inactive
                    && !flags.ack()
                {
                    self.set_state(e, EpState::SynSent);
                }
                if flags.fin() && !flags.rst() {
                    self.set_state(e, EpState::Closed);
                    if self.eps[p].state == EpState::Reset
                        && self.eps[p].prev_state == EpState::Closed
                    {
                        // FIN then RST from the peer was a normal termination.
                        self.set_state(p, EpState::Closed);
                    }
                    do_close = true;
                    gen_event = true;
                }
                if flags.rst() {
                    self.set_state(e, EpState::Reset);
                    do_close = true;
                    if self.eps[p].state != EpState::Reset
                        || self.eps[p].prev_state != EpState::Established
                    {
                        self.is_active = false;
                    }
                }
            }
            EpState::Closed => {
                let _ = delta_last;
                if flags.rst() && self.eps[p].state != EpState::Closed {
                    self.set_state(e, EpState::Reset);
                    if !self.eps[e].did_close {
                        do_close = true;
                    }
                }
            }
            EpState::Reset => {}
        }
        let _ = ack_seq;
        (do_close, gen_event)
    }

    /// The peer's reassembler learns that data up to `seq` was acknowledged.
    fn ack_received(&mut self, hist: &mut History, i: usize, mut seq: u64) {
        {
            let ep = &self.eps[i];
            if ep.fin_cnt > 0 && seq >= ep.fin_seq {
                seq = ep.fin_seq.wrapping_sub(1);
            }
            if seq <= ep.reasm.trim_seq {
                return;
            }
        }
        self.trim_to_seq(hist, i, seq);
        self.check_eof(i);
    }

    /// Zeek's `DataBlockList::Trim` + `TCP_Reassembler::Undelivered`.
    fn trim_to_seq(&mut self, hist: &mut History, i: usize, seq: u64) {
        if seq > self.eps[i].reasm.last_reassem {
            self.undelivered(hist, i, seq);
        }
        self.eps[i].reasm.trim_blocks(seq);
    }

    fn undelivered(&mut self, hist: &mut History, i: usize, up_to: u64) {
        if up_to <= 2 && self.is_partial {
            return;
        }
        if !self.eps[i].reasm.skip {
            // Gaps before each out-of-order range below `up_to`, then up to `up_to`.
            loop {
                let r = &self.eps[i].reasm;
                let next = r
                    .blocks
                    .iter()
                    .find(|&&(s, _)| s >= r.last_reassem && s < up_to)
                    .copied();
                let Some((s, _)) = next else { break };
                let gap_at = self.eps[i].reasm.last_reassem;
                if s > gap_at {
                    self.gap(hist, i, s - gap_at);
                }
                let r = &mut self.eps[i].reasm;
                r.last_reassem = s;
                r.deliver();
            }
            let last = self.eps[i].reasm.last_reassem;
            if up_to > last {
                self.gap(hist, i, up_to - last);
            }
        }
        let r = &mut self.eps[i].reasm;
        if up_to > r.last_reassem {
            r.last_reassem = up_to;
        }
        r.deliver();
    }

    fn gap(&mut self, hist: &mut History, i: usize, len: u64) {
        if self.eps[i].is_clean() && self.eps[1 - i].is_clean() {
            if self.eps[i].gap.hit() {
                self.hist_add(hist, i, b'G');
            }
            self.missed_bytes = self.missed_bytes.saturating_add(len);
        }
    }

    fn data_sent(&mut self, i: usize, mut seq: u64, len: u64) {
        let ep = &mut self.eps[i];
        if ep.reasm.skip {
            return;
        }
        let ack = ep.to_relative(ep.ack_seq, ep.ack_wraps);
        let upper = seq.wrapping_add(len);
        if seq < ack {
            if upper <= ack {
                return;
            }
            seq = ack;
        }
        ep.reasm.insert(seq, upper);
        // BlockInserted's trim when nothing was acknowledged yet but much was sent.
        let peer_state = self.eps[1 - i].state;
        let ep = &mut self.eps[i];
        if ep.no_data_acked() && ep.size(peer_state) > MAX_INITIAL_WINDOW {
            let to = ep.reasm.last_reassem;
            ep.reasm.trim_blocks(to);
        }
        if ep.no_data_acked() && ep.reasm.undelivered() > MAX_ABOVE_HOLE_WITHOUT_ACKS {
            ep.reasm.blocks.clear();
            ep.reasm.skip = true;
        }
        if ep.reasm.data_size() > EXCESSIVE_DATA_WITHOUT_ACKS {
            ep.reasm.blocks.clear();
            ep.reasm.skip = true;
        }
    }

    /// Zeek's `TCP_Reassembler::DataPending` for endpoint `i`.
    fn data_pending(&self, i: usize) -> bool {
        let ep = &self.eps[i];
        if ep.reasm.skip {
            return false;
        }
        let delivered = ep.start_seq64().wrapping_add(ep.reasm.last_reassem);
        let last = Endpoint::full(ep.last_seq, ep.seq_wraps);
        if last < delivered {
            return false;
        }
        if delivered != last.wrapping_sub(1) && delivered != last {
            return true;
        }
        let peer = &self.eps[1 - i];
        ep.state != EpState::Reset && !peer.reasm.skip && peer.reasm.undelivered() > 0
    }

    fn check_eof(&mut self, i: usize) {
        let ep = &self.eps[i];
        if !ep.reasm.did_eof
            && (ep.fin_cnt > 0 || ep.state == EpState::Closed || ep.state == EpState::Reset)
            && !self.data_pending(i)
        {
            self.eps[i].reasm.did_eof = true;
            if self.close_deferred {
                let gen = self.deferred_gen_event;
                self.close_deferred = false;
                self.connection_closed(i, gen);
            }
        }
    }

    fn connection_closed(&mut self, e: usize, gen_event: bool) {
        if self.data_pending(e) {
            self.close_deferred = true;
            if !self.deferred_gen_event {
                self.deferred_gen_event = gen_event;
            }
            return;
        }
        self.close_deferred = false;
        if self.eps[e].did_close {
            return;
        }
        self.eps[e].did_close = true;
        let peer = &self.eps[1 - e];
        let complete = self.eps[e].state == EpState::Reset
            || peer.did_close
            || peer.state == EpState::Inactive;
        if complete {
            if self.eps[e].prev_state != EpState::Inactive || peer.state != EpState::Inactive {
                let gen = gen_event || self.deferred_gen_event;
                self.deferred_gen_event = false;
                if gen {
                    self.is_active = false; // ConnectionFinished
                }
            }
            self.fx.close_complete = true;
        } else if self.eps[e].prev_state != EpState::Inactive {
            self.fx.half_close = true;
        }
    }

    /// Zeek's `ExpireTimer` decision at time `t` (seconds as nanoseconds are handled by
    /// the caller): remove the connection when it has been quiet for the linger time and
    /// is closed, reset, half-open or never started.
    pub fn expire_check(&self, quiet_longer_than_linger: bool) -> bool {
        if !self.is_active || !quiet_longer_than_linger {
            return false;
        }
        let (o, r) = (self.orig(), self.resp());
        let one_closed = o.did_close || r.did_close;
        let finished = (o.did_close && r.did_close)
            || o.state == EpState::Reset
            || r.state == EpState::Reset
            || o.state == EpState::Inactive
            || r.state == EpState::Inactive;
        (one_closed && finished) || (r.state == EpState::Inactive && o.state == EpState::Inactive)
    }

    /// Zeek's `AttemptTimer` decision: remove an unanswered connection attempt.
    pub fn attempt_check(&mut self) -> bool {
        if !self.is_active {
            return false;
        }
        let (o, r) = (self.orig().state, self.resp().state);
        if matches!(o, EpState::SynSent | EpState::SynAckSent) && r == EpState::Inactive {
            self.is_active = false;
            return true;
        }
        false
    }

    /// True when an expire check could ever remove this connection as it stands.
    pub fn expire_relevant(&self) -> bool {
        let (o, r) = (self.orig(), self.resp());
        self.is_active
            && (o.did_close
                || r.did_close
                || (o.state == EpState::Inactive && r.state == EpState::Inactive))
    }

    /// Zeek's `conn_state` for a TCP connection.
    pub fn conn_state(&self, history: &str) -> tunnelwatch_model::ConnState {
        use tunnelwatch_model::ConnState as C;
        use EpState as S;
        let (o, r) = (self.orig(), self.resp());
        let (os, rs) = (o.state, r.state);
        let o_inactive = os == S::Inactive || os == S::Partial;
        let r_inactive = rs == S::Inactive || rs == S::Partial;
        if rs == S::Reset {
            if os == S::SynSent
                || os == S::SynAckSent
                || (os == S::Reset && o.size(rs) == 0 && r.size(os) == 0)
            {
                C::REJ
            } else if o_inactive {
                C::RSTRH
            } else {
                C::RSTR
            }
        } else if os == S::Reset {
            if r_inactive {
                if history_is_rstos0(history) {
                    C::RSTOS0
                } else {
                    C::OTH
                }
            } else {
                C::RSTO
            }
        } else if rs == S::Closed && os == S::Closed {
            C::SF
        } else if os == S::Closed {
            if r_inactive {
                C::SH
            } else {
                C::S2
            }
        } else if rs == S::Closed {
            if o_inactive {
                C::SHR
            } else {
                C::S3
            }
        } else if os == S::SynSent && rs == S::Inactive {
            C::S0
        } else if os == S::Established && rs == S::Established {
            C::S1
        } else {
            C::OTH
        }
    }

    /// Retransmitted payload packets seen on both sides so far.
    pub fn retransmissions_total(&self) -> u32 {
        self.eps[0].rxmt.count() + self.eps[1].rxmt.count()
    }

    /// Payload bytes per side from sequence numbers: (originator, responder).
    pub fn sizes(&self) -> (u64, u64) {
        let (o, r) = (self.orig(), self.resp());
        (o.size(r.state), r.size(o.state))
    }
}

/// Zeek's `/^?S[^HAFGIQ]*R.*/` on the history.
fn history_is_rstos0(h: &str) -> bool {
    let b = h.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'^') {
        i = 1;
    }
    if b.get(i) != Some(&b'S') {
        return false;
    }
    for &c in &b[i + 1..] {
        match c {
            b'R' => return true,
            b'H' | b'A' | b'F' | b'G' | b'I' | b'Q' => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern_matches_zeek_regex() {
        assert!(history_is_rstos0("SR"));
        assert!(history_is_rstos0("^SdR"));
        assert!(history_is_rstos0("STTR"));
        // Case matters: only the originator's H A F G I Q break the pattern.
        assert!(history_is_rstos0("ShR"));
        assert!(!history_is_rstos0("SHR"));
        assert!(!history_is_rstos0("SAR"));
        assert!(!history_is_rstos0("R"));
    }

    #[test]
    fn reassembly_insert_merges_and_delivers() {
        let mut r = Reassembly::new();
        r.insert(11, 21);
        assert_eq!(r.last_reassem, 1);
        r.insert(1, 11);
        assert_eq!(r.last_reassem, 21);
        assert_eq!(r.blocks, vec![(1, 21)]);
    }
}
