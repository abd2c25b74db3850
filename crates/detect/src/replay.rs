//! TCP replay and blind (spoofed) connections (seed 001, "TCP Replay Attacks"): an
//! attacker who cannot see the target's answers streams a whole hand-made connection
//! at once — SYN, the ACK of a SYN/ACK it predicts, data — so on the wire the
//! originator acknowledges or sends data *before* the responder's SYN/ACK ("ACKs before
//! data, packets out of phase but not out of order"). From the record: in
//! `tcp.first_packets`, an originator ACK or data packet before the responder's
//! SYN/ACK, which does come later (a missing SYN/ACK is asymmetric routing, not this).
//! High: the protocol cannot produce it. Each flow alerts once.
//!
//! The seed's timing signs (an impossibly short setup, a whole connection at line rate)
//! are not judged: public captures stamp the packets of one interrupt batch with one
//! time (Zeek's, nDPI's and others show SYN/ACKs "0 µs" after SYNs from hosts 4–30
//! routers away), so from a capture they would mostly flag the capture.

use tunnelwatch_model::{Alert, FlowRecord, Letters, Severity};

use crate::config::Config;
use crate::once::OncePerFlow;
use crate::{severity_score, AlertBuilder, Detector};

/// The detector.
pub struct Replay {
    on: bool,
    once: OncePerFlow,
}

impl Replay {
    /// The detector with `config`'s settings.
    pub fn new(config: &Config) -> Self {
        Replay {
            on: config.enabled("tcp_replay"),
            once: OncePerFlow::default(),
        }
    }
}

/// An originator ACK or data packet before the responder's SYN/ACK, which came later.
fn out_of_phase(first: &[Letters]) -> bool {
    let Some(synack) = first
        .iter()
        .position(|p| p.starts_with('<') && p.contains('S') && p.contains('A'))
    else {
        return false;
    };
    first.first().is_some_and(|p| p == ">S")
        && first[1..synack]
            .iter()
            .any(|p| p.starts_with('>') && !p.contains('S') && (p.contains('A') || p.contains('P')))
}

impl Detector for Replay {
    fn record(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let Some(t) = r.tcp.as_ref().filter(|_| self.on) else {
            return;
        };
        let finding = out_of_phase(&t.first_packets).then(|| {
            let packets: Vec<&str> = t.first_packets.iter().map(Letters::as_str).collect();
            (
                Severity::High,
                "out_of_phase",
                format!(
                    "the client acknowledged or sent data before {}:{} answered its SYN (first packets {}): a blind or replayed connection",
                    r.resp_h,
                    r.resp_p,
                    packets.join(" ")
                ),
                packets,
            )
        });
        if let Some((severity, check, message, packets)) = finding {
            if self.once.first(r, "tcp_replay") {
                out.push(
                    AlertBuilder::new(
                        "tcp_replay",
                        r.last_ts,
                        severity,
                        severity_score(severity),
                        message,
                    )
                    .flow(r)
                    .evidence("check", check)
                    .evidence("first_packets", packets)
                    .build(),
                );
            }
        }
        self.once.done(r);
    }

    fn untracked(&self) -> u64 {
        self.once.untracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_from_first_packets() {
        let v = |s: &[&str]| s.iter().map(|x| Letters::from(*x)).collect::<Vec<_>>();
        assert!(out_of_phase(&v(&[">S", ">A", "<AS", ">AP"])));
        assert!(out_of_phase(&v(&[">S", ">AP", "<AS"])));
        assert!(!out_of_phase(&v(&[">S", "<AS", ">A", ">AP"])));
        // No SYN/ACK at all: asymmetric routing, not a replay.
        assert!(!out_of_phase(&v(&[">S", ">A", ">AP", ">AF"])));
        // A retransmitted SYN before the SYN/ACK is normal.
        assert!(!out_of_phase(&v(&[">S", ">S", "<AS", ">A"])));
    }
}
