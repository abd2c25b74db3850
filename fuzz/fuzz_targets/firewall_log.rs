//! Any bytes as firewall log lines through both parsers and the correlator: no panic,
//! every line is either an event or an `Unparsed` with a reason, and every event lands
//! in exactly one record (packets are conserved).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_logs::{parse_line, Format, LogFlowConfig, LogFlows};
use tunnelwatch_model::FlowRecord;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut table = LogFlows::new(LogFlowConfig::default());
    let mut out: Vec<FlowRecord> = Vec::new();
    let mut events = 0u64;
    for line in text.lines() {
        for format in [Format::Ipmon, Format::Netfilter, Format::Auto] {
            match parse_line(line, format, 2026) {
                Ok(e) => {
                    if format == Format::Auto {
                        events += 1;
                        table.event(&e, &mut out);
                    }
                }
                Err(why) => assert!(!why.0.is_empty()),
            }
        }
    }
    table.finish(&mut out);
    let counted: u64 = out.iter().map(|r| r.orig_pkts + r.resp_pkts).sum();
    assert_eq!(counted, events);
});
