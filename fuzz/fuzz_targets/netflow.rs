//! Any bytes as a stream of NetFlow/IPFIX datagrams (each `len:u16 exporter:u8 bytes`)
//! through the decoder with its template cache, held sets and sampling, and the
//! biflow joiner: no panic, every error names an offset inside its datagram, the
//! template cache stays within its bound, and every packet a decoded record counted
//! lands in exactly one flow record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_model::{FlowRecord, Timestamp};
use tunnelwatch_netflow::{Decoder, JoinConfig, Joiner, Limits, UniFlow};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_templates: 16,
        max_scopes: 4,
        ..Limits::default()
    };
    let mut dec = Decoder::new(limits);
    let mut join = Joiner::new(JoinConfig {
        max_flows: 64,
        ..JoinConfig::default()
    });
    let mut out: Vec<FlowRecord> = Vec::new();
    let mut recs: Vec<UniFlow> = Vec::new();
    let mut packets: Option<u64> = Some(0);
    let mut at = 0usize;
    let mut n = 0i64;
    while at + 3 <= data.len() {
        let len = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
        let exporter = std::net::IpAddr::from([192, 0, 2, data[at + 2] % 8]);
        let d = &data[at + 3..(at + 3 + len).min(data.len())];
        at += 3 + len;
        n += 1;
        if let Err(e) = dec.decode(exporter, Timestamp(n * 7_000_000_000), d, &mut recs) {
            assert!(e.offset <= d.len(), "{e} beyond {} bytes", d.len());
        }
        assert!(dec.templates() <= 16 * 4);
        for r in recs.drain(..) {
            let rev = r.reverse.map_or(0, |v| v.pkts);
            packets = packets.and_then(|p| {
                p.checked_add(r.pkts.checked_mul(u64::from(r.sampling))?)?
                    .checked_add(rev.checked_mul(u64::from(r.sampling))?)
            });
            join.push(&r, &mut out);
        }
    }
    dec.finish();
    join.finish(&mut out);
    if let Some(p) = packets {
        let counted: u64 = out.iter().map(|r| r.orig_pkts + r.resp_pkts).sum();
        assert_eq!(counted, p);
    }
});
