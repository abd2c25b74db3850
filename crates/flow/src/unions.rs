//! TCP state from what sources without packets can tell: the union of the flags each
//! side sent. Firewall logs and NetFlow/IPFIX records give per-side flag unions and
//! counters, not the packet order; the Zeek `conn_state` and the flags' letters are
//! judged from those alone, the same way for every such source.

use tunnelwatch_model::{ConnState, IpProto, Letters};

/// TCP flag bits as they sit in the header (and in NetFlow's `tcpControlBits`).
pub mod flag {
    /// FIN.
    pub const FIN: u8 = 1;
    /// SYN.
    pub const SYN: u8 = 2;
    /// RST.
    pub const RST: u8 = 4;
    /// PSH.
    pub const PSH: u8 = 8;
    /// ACK.
    pub const ACK: u8 = 16;
    /// URG.
    pub const URG: u8 = 32;
}

/// The flags as the record's `dynamics.*.flags` letters (`UAPRSF` order).
pub fn letters(flags: u8) -> Letters {
    let mut l = Letters::default();
    for (b, c) in [
        (flag::URG, 'U'),
        (flag::ACK, 'A'),
        (flag::PSH, 'P'),
        (flag::RST, 'R'),
        (flag::SYN, 'S'),
        (flag::FIN, 'F'),
    ] {
        if flags & b != 0 {
            l.push(c);
        }
    }
    l
}

/// Zeek's connection state from each side's flag union and packet count. `syn_seen`:
/// the originator's opening SYN was seen (else the state is `OTH` for TCP, as Zeek
/// gives a connection picked up in the middle).
pub fn conn_state(
    proto: IpProto,
    syn_seen: bool,
    (of, opkts): (u8, u64),
    (rf, rpkts): (u8, u64),
) -> ConnState {
    if proto == IpProto::TCP {
        if !syn_seen {
            ConnState::OTH
        } else if rf & flag::RST != 0 && rf & flag::SYN == 0 && rpkts <= 1 {
            ConnState::REJ
        } else if of & flag::FIN != 0 && rf & flag::FIN != 0 {
            ConnState::SF
        } else if of & flag::RST != 0 {
            ConnState::RSTO
        } else if rf & flag::RST != 0 {
            ConnState::RSTR
        } else if rpkts == 0 {
            ConnState::S0
        } else {
            ConnState::S1
        }
    } else if proto == IpProto::UDP {
        match (opkts > 0, rpkts > 0) {
            (true, true) => ConnState::SF,
            (true, false) => ConnState::S0,
            _ => ConnState::SHR,
        }
    } else {
        ConnState::OTH
    }
}
