//! Zeek's connection history string: one letter per notable event, upper case for the
//! originator and lower case for the responder.
//!
//! Which letters repeat follows Zeek (`base/protocols/conn/main.zeek`): `a d i q` at most
//! once per direction (a bit in [`History::seen`]); `s h f r` again only when their
//! sequence number changes (decided by the TCP state machine); `c g t w` logarithmically
//! (1st, 10th, 100th … event, see [`Scaled`]). The string is kept inline and capped at
//! [`MAX_HISTORY`] letters so a flow's history never allocates.

/// Longest history kept; further letters are dropped (and counted by the caller).
pub const MAX_HISTORY: usize = 48;

/// Bits for "already recorded" history events (originator bits; responder bits are
/// shifted left by 16).
pub mod bit {
    /// SYN or SYN/ACK.
    pub const SYN: u32 = 0x1;
    /// FIN.
    pub const FIN: u32 = 0x2;
    /// RST.
    pub const RST: u32 = 0x4;
    /// FIN and RST together.
    pub const FIN_RST: u32 = 0x8;
    /// Payload.
    pub const DATA: u32 = 0x10;
    /// Pure ACK.
    pub const ACK: u32 = 0x20;
    /// SYN with FIN or RST.
    pub const MULTI_FLAG: u32 = 0x40;
    /// UDP originator data.
    pub const UDP_ORIG_DATA: u32 = 0x1;
    /// UDP responder data.
    pub const UDP_RESP_DATA: u32 = 0x2;
}

/// A connection's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    letters: [u8; MAX_HISTORY],
    len: u8,
    /// Events already recorded once (see [`bit`]).
    pub seen: u32,
    /// Letters dropped because the string was full.
    pub dropped: u32,
}

impl Default for History {
    fn default() -> Self {
        History {
            letters: [0; MAX_HISTORY],
            len: 0,
            seen: 0,
            dropped: 0,
        }
    }
}

impl History {
    /// Appends a letter.
    pub fn add(&mut self, c: u8) {
        if usize::from(self.len) < MAX_HISTORY {
            self.letters[usize::from(self.len)] = c;
            self.len += 1;
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Zeek's `CheckHistory`: records `code` the first time `mask` is seen. Returns true
    /// when the event had been seen before.
    pub fn check(&mut self, mask: u32, code: u8) -> bool {
        if self.seen & mask == 0 {
            self.seen |= mask;
            self.add(code);
            false
        } else {
            true
        }
    }

    /// The letters so far.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and '^' are ever added.
        std::str::from_utf8(&self.letters[..usize::from(self.len)]).unwrap_or("")
    }

    /// True when no letter was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A logarithmically scaled history counter (Zeek's `ScaledHistoryEntry`): the letter
/// is added on the 1st, 10th, 100th … event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaled {
    count: u32,
    threshold: u32,
}

impl Default for Scaled {
    fn default() -> Self {
        Scaled {
            count: 0,
            threshold: 1,
        }
    }
}

impl Scaled {
    /// Counts one event; returns true when the letter should be added.
    pub fn hit(&mut self) -> bool {
        self.count = self.count.saturating_add(1);
        if self.count == self.threshold {
            match self.threshold.checked_mul(10) {
                Some(t) => self.threshold = t,
                None => self.count = 0,
            }
            true
        } else {
            false
        }
    }

    /// Events counted.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_adds_letter_on_1_10_100() {
        let mut s = Scaled::default();
        let hits: Vec<u32> = (1..=150).filter(|_| s.hit()).collect();
        assert_eq!(hits.len(), 3);
    }

    #[test]
    fn check_records_once_per_mask() {
        let mut h = History::default();
        assert!(!h.check(bit::ACK, b'A'));
        assert!(h.check(bit::ACK, b'A'));
        assert!(!h.check(bit::ACK << 16, b'a'));
        assert_eq!(h.as_str(), "Aa");
    }

    #[test]
    fn history_caps_without_allocating() {
        let mut h = History::default();
        for _ in 0..60 {
            h.add(b'S');
        }
        assert_eq!(h.as_str().len(), MAX_HISTORY);
        assert_eq!(h.dropped, 12);
    }
}
