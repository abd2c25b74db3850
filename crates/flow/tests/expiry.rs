//! Flow splitting and expiry in packet time: idle timeouts, interim records under one
//! `uid`, TCP port reuse, and the memory cap.

use etherparse::PacketBuilder;
use tunnelwatch_decode::{Decoded, Decoder, LinkType};
use tunnelwatch_flow::{ChecksumMode, FlowConfig, FlowTable, Frame};
use tunnelwatch_model::{Cause, FlowRecord, Timestamp};

const SEC: i64 = 1_000_000_000;

enum P {
    Udp {
        from_client: bool,
        sport: u16,
        dport: u16,
    },
    Tcp {
        from_client: bool,
        seq: u32,
        ack: u32,
        syn: bool,
        fin: bool,
        payload: usize,
    },
}

fn bytes(p: &P) -> Vec<u8> {
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut out = Vec::new();
    match *p {
        P::Udp {
            from_client,
            sport,
            dport,
        } => {
            let (a, b, pa, pb) = if from_client {
                (c, s, sport, dport)
            } else {
                (s, c, dport, sport)
            };
            PacketBuilder::ipv4(a, b, 64)
                .udp(pa, pb)
                .write(&mut out, b"query")
                .unwrap();
        }
        P::Tcp {
            from_client,
            seq,
            ack,
            syn,
            fin,
            payload,
        } => {
            let (a, b, pa, pb) = if from_client {
                (c, s, 40000, 80)
            } else {
                (s, c, 80, 40000)
            };
            let mut t = PacketBuilder::ipv4(a, b, 64).tcp(pa, pb, seq, 64240);
            if syn {
                t = t.syn();
            }
            if fin {
                t = t.fin();
            }
            if ack != 0 {
                t = t.ack(ack);
            }
            t.write(&mut out, &vec![b'x'; payload]).unwrap();
        }
    }
    out
}

/// Feeds `pkts` (offsets from a fixed start time) to `table`, calling `after` once per packet.
fn feed(
    table: &mut FlowTable,
    pkts: &[(i64, P)],
    out: &mut Vec<FlowRecord>,
    mut after: impl FnMut(&FlowTable),
) {
    let dec = Decoder::default();
    for (i, (t, p)) in pkts.iter().enumerate() {
        let b = bytes(p);
        let mut d = Decoded::default();
        dec.decode(LinkType::RAW, &b, &mut d);
        let f = Frame {
            ts: Timestamp(1_700_000_000 * SEC + t),
            index: i as u64,
            wire_len: b.len() as u32,
            vlan: None,
            inner_vlan: None,
        };
        table.process(&f, &d, out);
        after(table);
    }
}

fn run(config: FlowConfig, pkts: &[(i64, P)]) -> Vec<FlowRecord> {
    let mut table = FlowTable::new(config);
    let mut out = Vec::new();
    feed(&mut table, pkts, &mut out, |_| {});
    table.flush(&mut out);
    out
}

fn config() -> FlowConfig {
    FlowConfig {
        checksums: ChecksumMode::Ignore,
        ..FlowConfig::default()
    }
}

#[test]
fn dns_requests_4000s_apart_are_two_flows() {
    // Seed 002's NetFlow bug: two DNS requests on the same ports far apart merged.
    let q = |t| {
        (
            t,
            P::Udp {
                from_client: true,
                sport: 53000,
                dport: 53,
            },
        )
    };
    let r = |t| {
        (
            t,
            P::Udp {
                from_client: false,
                sport: 53000,
                dport: 53,
            },
        )
    };
    let recs = run(
        config(),
        &[q(0), r(SEC / 100), q(4000 * SEC), r(4000 * SEC + SEC / 100)],
    );
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert!(recs
        .iter()
        .all(|r| r.orig_pkts == 1 && r.resp_pkts == 1 && r.conn_state.as_str() == "SF"));
    assert_ne!(recs[0].uid, recs[1].uid);
}

#[test]
fn udp_flow_idle_longer_than_timeout_ends_with_cause_timeout() {
    let p = |t| {
        (
            t,
            P::Udp {
                from_client: true,
                sport: 40000,
                dport: 40001,
            },
        )
    };
    let recs = run(config(), &[p(0), p(30 * SEC), p(200 * SEC)]);
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].cause, recs[0].orig_pkts), (Cause::Timeout, 2));
    assert_eq!((recs[1].cause, recs[1].orig_pkts), (Cause::End, 1));
}

#[test]
fn long_flow_writes_interim_records_under_one_uid() {
    let c = FlowConfig {
        active_timeout: 60 * SEC,
        udp_inactivity: 600 * SEC,
        ..config()
    };
    let pkts: Vec<(i64, P)> = (0..10)
        .map(|i| {
            (
                i * 30 * SEC,
                P::Udp {
                    from_client: true,
                    sport: 40000,
                    dport: 40001,
                },
            )
        })
        .collect();
    let recs = run(c, &pkts);
    let interim: Vec<&FlowRecord> = recs.iter().filter(|r| r.cause == Cause::Status).collect();
    let last = recs.last().unwrap();
    assert_eq!(interim.len(), 4, "at 60, 120, 180 and 240 s");
    assert!(
        interim.iter().all(|r| r.uid == last.uid),
        "interim records keep the uid"
    );
    assert!(
        interim.windows(2).all(|w| w[0].orig_pkts < w[1].orig_pkts),
        "counters grow"
    );
    assert_eq!((last.cause, last.orig_pkts), (Cause::End, 10));
}

#[test]
fn new_syn_after_close_starts_a_new_flow() {
    let t = |from_client, seq, ack, syn, fin| P::Tcp {
        from_client,
        seq,
        ack,
        syn,
        fin,
        payload: 0,
    };
    let pkts = vec![
        (0, t(true, 100, 0, true, false)),
        (SEC / 100, t(false, 500, 101, true, false)),
        (2 * SEC / 100, t(true, 101, 501, false, false)),
        (3 * SEC / 100, t(true, 101, 501, false, true)),
        (4 * SEC / 100, t(false, 501, 102, false, true)),
        (5 * SEC / 100, t(true, 102, 502, false, false)),
        // Same ports, one second later, a new connection (different ISN).
        (SEC, t(true, 9000, 0, true, false)),
        (SEC + SEC / 100, t(false, 7000, 9001, true, false)),
    ];
    let recs = run(config(), &pkts);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(
        (recs[0].conn_state.as_str(), recs[0].history.as_str()),
        ("SF", "ShAFf"),
        "A is recorded once"
    );
    assert_eq!(recs[1].history, "Sh");
    assert_ne!(recs[0].uid, recs[1].uid);
}

#[test]
fn full_table_evicts_and_counts() {
    let c = FlowConfig {
        max_flows: 3,
        ..config()
    };
    let pkts: Vec<(i64, P)> = (0..10u16)
        .map(|i| {
            (
                i64::from(i) * SEC,
                P::Udp {
                    from_client: true,
                    sport: 40000 + i,
                    dport: 9999,
                },
            )
        })
        .collect();
    let mut table = FlowTable::new(c);
    let mut out = Vec::new();
    feed(&mut table, &pkts, &mut out, |t| {
        assert!(t.live_flows() <= 3)
    });
    assert_eq!(table.stats().evicted, 7);
    assert_eq!(out.iter().filter(|r| r.cause == Cause::Evicted).count(), 7);
}
