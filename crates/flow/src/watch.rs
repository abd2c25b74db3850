//! Facts about a TCP connection's headers and acknowledgements that the TCP attack &
//! anomaly filter (seed 004) reads from the flow record: header oddities per direction
//! (reserved bits, urgent flag and pointer out of step, bad options), the first packets
//! in wire order, the longest run of zero-window advertisements per direction, and the
//! longest stretch in which both sides kept repeating the same pure ACK (an ACK storm).
//!
//! These are engine facts, not verdicts: thresholds belong to the detectors
//! (`tunnelwatch-detect`). Counters saturate instead of wrapping; the state is a few
//! dozen bytes inside the TCP box and costs nothing for other protocols.

use tunnelwatch_decode::{TcpFlags, TcpSegment};
use tunnelwatch_model::{Letters, TcpHeaderFacts, TcpOptionFault};

/// How many packets of a connection keep their flags in wire order.
pub const FIRST_PACKETS: usize = 4;

/// TCP option kinds with an assignment in IANA's "TCP Option Kind Numbers" registry (as
/// of 2026): 0–30, 34 (Fast Open), 69 (TCP-ENO), 172/174 (AccECN), 253/254
/// (experiments, RFC 4727). Anything else is an unknown option.
pub fn option_kind_known(kind: u8) -> bool {
    matches!(kind, 0..=30 | 34 | 69 | 172 | 174 | 253 | 254)
}

/// Walks TCP option bytes the way seed 004's header checker does, with today's
/// registry: the first fault ends the walk and is returned.
pub fn option_fault(options: &[u8]) -> Option<TcpOptionFault> {
    let mut i = 0usize;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => return None, // end of option list: the rest is padding
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if !option_kind_known(kind) {
            return Some(TcpOptionFault::Unknown {
                kind,
                offset: i as u8,
            });
        }
        let Some(&len) = options.get(i + 1) else {
            return Some(TcpOptionFault::Truncated {
                kind,
                offset: i as u8,
            });
        };
        if len < 2 || i + usize::from(len) > options.len() {
            return Some(TcpOptionFault::BadLength {
                kind,
                offset: i as u8,
                len,
            });
        }
        i += usize::from(len);
    }
    None
}

/// Header oddities of one direction (saturating counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Oddities {
    reserved_bits: u16,
    urg_without_pointer: u16,
    pointer_without_urg: u16,
    bad_options: u16,
    first_bad_option: Option<TcpOptionFault>,
}

/// The per-connection state, inside the TCP box. Index 0 is the originator's side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    odd: [Oddities; 2],
    /// The last pure ACK number each side sent, and how many times in a row it was sent.
    last_ack: [u32; 2],
    ack_run: [u16; 2],
    /// The most repeats both sides reached at once.
    storm_max: u16,
    zero_run: [u16; 2],
    zero_max: [u16; 2],
    /// Flags of the first packets; bit i of `first_resp` set when packet i came from
    /// the responder.
    first: [u16; FIRST_PACKETS],
    first_resp: u8,
    n_first: u8,
    /// Who sent the first payload: 0 nobody yet, 1 the originator, 2 the responder.
    first_data: u8,
}

impl Watch {
    /// Takes one counted segment (`is_orig`: sent by the current originator; `quick`:
    /// under a second after this side's previous packet, so a repeated ACK continues a
    /// storm rather than being a keep-alive).
    pub fn observe(&mut self, is_orig: bool, seg: &TcpSegment<'_>, payload_len: u32, quick: bool) {
        let d = usize::from(!is_orig);
        let flags = seg.flags;
        if payload_len > 0 && self.first_data == 0 {
            self.first_data = if is_orig { 1 } else { 2 };
        }
        if usize::from(self.n_first) < FIRST_PACKETS {
            self.first[usize::from(self.n_first)] = flags.0;
            if !is_orig {
                self.first_resp |= 1 << self.n_first;
            }
            self.n_first += 1;
        }
        let o = &mut self.odd[d];
        if flags.any(TcpFlags::RESERVED) {
            o.reserved_bits = o.reserved_bits.saturating_add(1);
        }
        match (flags.urg(), seg.urgent != 0) {
            (true, false) => o.urg_without_pointer = o.urg_without_pointer.saturating_add(1),
            (false, true) => o.pointer_without_urg = o.pointer_without_urg.saturating_add(1),
            _ => {}
        }
        if !seg.options.is_empty() {
            if let Some(fault) = option_fault(seg.options) {
                o.bad_options = o.bad_options.saturating_add(1);
                o.first_bad_option.get_or_insert(fault);
            }
        }
        // Seed 004's ACK-storm counters: a data packet cannot be part of a storm.
        if payload_len > 0 || !flags.ack() || flags.any(TcpFlags::SYN | TcpFlags::RST) {
            self.ack_run[d] = 0;
        } else if quick && seg.ack == self.last_ack[d] && self.ack_run[d] > 0 {
            self.ack_run[d] = self.ack_run[d].saturating_add(1);
        } else {
            self.last_ack[d] = seg.ack;
            self.ack_run[d] = 1;
        }
        // Repeats after the first sending, on the side that repeated less.
        let repeats = self.ack_run[0].min(self.ack_run[1]).saturating_sub(1);
        self.storm_max = self.storm_max.max(repeats);
        if seg.window == 0 && !flags.rst() {
            self.zero_run[d] = self.zero_run[d].saturating_add(1);
            self.zero_max[d] = self.zero_max[d].max(self.zero_run[d]);
        } else {
            self.zero_run[d] = 0;
        }
    }

    /// Swaps the roles of the two sides (the flow table flipped the connection).
    pub fn flip(&mut self) {
        self.odd.swap(0, 1);
        self.last_ack.swap(0, 1);
        self.ack_run.swap(0, 1);
        self.zero_run.swap(0, 1);
        self.zero_max.swap(0, 1);
        let mask = (1u8 << self.n_first) - 1;
        self.first_resp = !self.first_resp & mask;
        if self.first_data != 0 {
            self.first_data = 3 - self.first_data;
        }
    }

    /// Which side sent the first payload: `orig` or `resp`.
    pub fn first_data(&self) -> Option<&'static str> {
        match self.first_data {
            1 => Some("orig"),
            2 => Some("resp"),
            _ => None,
        }
    }

    /// The first packets as record strings: `>` from the originator, `<` from the
    /// responder, then the flags' letters (`>S`, `<AS`, `>R`).
    pub fn first_packets(&self) -> Vec<Letters> {
        (0..usize::from(self.n_first))
            .map(|i| {
                let mut s = Letters::default();
                s.push(if self.first_resp & (1 << i) != 0 {
                    '<'
                } else {
                    '>'
                });
                TcpFlags(self.first[i]).write_letters(&mut s);
                s
            })
            .collect()
    }

    /// The header facts of one side (`orig`: the originator's packets).
    pub fn header(&self, orig: bool) -> TcpHeaderFacts {
        let o = &self.odd[usize::from(!orig)];
        TcpHeaderFacts {
            reserved_bits: u64::from(o.reserved_bits),
            urg_without_pointer: u64::from(o.urg_without_pointer),
            pointer_without_urg: u64::from(o.pointer_without_urg),
            bad_options: u64::from(o.bad_options),
            first_bad_option: o.first_bad_option,
            zero_window_run: u64::from(self.zero_max[usize::from(!orig)]),
        }
    }

    /// The most times both sides at once had repeated their last pure ACK (after its
    /// first sending).
    pub fn ack_storm_run(&self) -> u64 {
        u64::from(self.storm_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: u16, ack: u32, window: u16, urgent: u16, options: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            src_port: 1,
            dst_port: 2,
            seq: 0,
            ack,
            flags: TcpFlags(flags),
            window,
            urgent,
            checksum: 0,
            header_len: 20 + options.len() as u8,
            options,
        }
    }

    #[test]
    fn option_fault_finds_unknown_truncated_and_bad_length() {
        assert_eq!(option_fault(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]), None);
        assert_eq!(
            option_fault(&[1, 99, 2]),
            Some(TcpOptionFault::Unknown {
                kind: 99,
                offset: 1
            })
        );
        assert_eq!(
            option_fault(&[1, 1, 1, 2]),
            Some(TcpOptionFault::Truncated { kind: 2, offset: 3 })
        );
        assert_eq!(
            option_fault(&[2, 8, 5, 0xb4]),
            Some(TcpOptionFault::BadLength {
                kind: 2,
                offset: 0,
                len: 8
            })
        );
        assert_eq!(
            option_fault(&[3, 1, 0, 0]),
            Some(TcpOptionFault::BadLength {
                kind: 3,
                offset: 0,
                len: 1
            })
        );
        // After end-of-list, bytes are padding.
        assert_eq!(option_fault(&[0, 99, 99, 99]), None);
    }

    #[test]
    fn watch_counts_header_oddities_per_side() {
        let mut w = Watch::default();
        w.observe(true, &seg(TcpFlags::SYN | 0x800, 0, 100, 0, &[]), 0, true);
        w.observe(
            false,
            &seg(TcpFlags::URG | TcpFlags::ACK, 1, 100, 0, &[]),
            0,
            true,
        );
        w.observe(true, &seg(TcpFlags::ACK, 1, 100, 7, &[77, 2]), 0, true);
        let o = w.header(true);
        assert_eq!(
            (o.reserved_bits, o.pointer_without_urg, o.bad_options),
            (1, 1, 1)
        );
        assert_eq!(
            o.first_bad_option,
            Some(TcpOptionFault::Unknown {
                kind: 77,
                offset: 0
            })
        );
        assert_eq!(w.header(false).urg_without_pointer, 1);
        assert_eq!(w.first_packets(), [">Sr", "<UA", ">A"]);
        w.flip();
        assert_eq!(w.first_packets(), ["<Sr", ">UA", "<A"]);
        assert_eq!(w.header(false).reserved_bits, 1);
    }

    #[test]
    fn watch_ack_storm_needs_both_sides_repeating() {
        let mut w = Watch::default();
        for _ in 0..30 {
            w.observe(true, &seg(TcpFlags::ACK, 500, 100, 0, &[]), 0, true);
        }
        assert_eq!(
            w.ack_storm_run(),
            0,
            "one side repeating is a stalled peer, not a storm"
        );
        for _ in 0..30 {
            w.observe(true, &seg(TcpFlags::ACK, 500, 100, 0, &[]), 0, true);
            w.observe(false, &seg(TcpFlags::ACK, 900, 100, 0, &[]), 0, true);
        }
        assert_eq!(w.ack_storm_run(), 29);
        // Data resets the run.
        w.observe(true, &seg(TcpFlags::ACK, 500, 100, 0, &[]), 10, true);
        w.observe(false, &seg(TcpFlags::ACK, 900, 100, 0, &[]), 0, true);
        assert_eq!(w.ack_storm_run(), 29);
        // Keep-alives a minute apart repeat the same ACK on both sides: not a storm.
        let mut k = Watch::default();
        for _ in 0..30 {
            k.observe(true, &seg(TcpFlags::ACK, 500, 100, 0, &[]), 0, false);
            k.observe(false, &seg(TcpFlags::ACK, 900, 100, 0, &[]), 0, false);
        }
        assert_eq!(k.ack_storm_run(), 0);
    }

    #[test]
    fn watch_zero_window_run_resets_on_open_window() {
        let mut w = Watch::default();
        for win in [0, 0, 0, 5, 0, 0] {
            w.observe(false, &seg(TcpFlags::ACK, 1, win, 0, &[]), 0, true);
        }
        assert_eq!(w.header(false).zero_window_run, 3);
        assert_eq!(w.header(true).zero_window_run, 0);
    }
}
