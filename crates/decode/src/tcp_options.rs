//! TCP options (RFC 9293 §3.2): the values the flow table and detectors use from a SYN,
//! read with the same tolerance as Zeek (a malformed option ends the walk; what was
//! read before stays valid).

/// Options of interest from a SYN or SYN/ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// Maximum segment size (kind 2).
    pub mss: Option<u16>,
    /// Window scale shift (kind 3).
    pub wscale: Option<u8>,
    /// SACK permitted (kind 4).
    pub sack_permitted: bool,
    /// Timestamps present (kind 8).
    pub timestamps: bool,
    /// True when the walk stopped at a malformed option (length 0/1, or running past
    /// the header).
    pub malformed: bool,
}

/// Walks the option bytes of a TCP header.
pub fn syn_options(options: &[u8]) -> SynOptions {
    let mut out = SynOptions::default();
    let mut i = 0usize;
    while i < options.len() {
        let kind = options[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = options.get(i + 1) else {
            out.malformed = true;
            break;
        };
        let len = usize::from(len);
        if len < 2 || i + len > options.len() {
            out.malformed = true;
            break;
        }
        let body = &options[i + 2..i + len];
        match kind {
            2 if body.len() >= 2 => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            3 if !body.is_empty() => out.wscale = Some(body[0]),
            4 => out.sack_permitted = true,
            8 => out.timestamps = true,
            _ => {}
        }
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_options_linux_syn_reads_all_values() {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
        let o = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let s = syn_options(&o);
        assert_eq!(s.mss, Some(1460));
        assert_eq!(s.wscale, Some(7));
        assert!(s.sack_permitted && s.timestamps && !s.malformed);
    }

    #[test]
    fn syn_options_zero_length_stops_and_flags_malformed() {
        let s = syn_options(&[2, 4, 0x05, 0xb4, 3, 0, 7]);
        assert_eq!(s.mss, Some(1460));
        assert_eq!(s.wscale, None);
        assert!(s.malformed);
    }
}
