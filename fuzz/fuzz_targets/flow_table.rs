//! Any bytes as a sequence of timestamped Ethernet frames through the whole sensor
//! (decode, reassembly, flow table with keystrokes and the shipped signatures, expiry)
//! and the detectors: no panic, packets are conserved, and every alert's evidence
//! spans no more than its own time.
//!
//! Input layout: repeated [2-byte time step in ms][2-byte length][frame bytes].
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_decode::LinkType;
use tunnelwatch_flow::ChecksumMode;
use tunnelwatch_model::Timestamp;
use tunnelwatch_sensor::{Sensor, SensorConfig};

fuzz_target!(|data: &[u8]| {
    let mut config = SensorConfig::default().with_checksums(ChecksumMode::Ignore);
    config.flow.max_flows = 64; // exercise eviction
    // The shipped content signatures, so their matcher sees arbitrary payloads too.
    let rules = tunnelwatch_detect::Config::default().signatures.rules;
    config.flow.signatures = std::sync::Arc::new(
        tunnelwatch_flow::sigs::Signatures::compile(&rules).expect("shipped rules compile"),
    );
    let mut sensor = Sensor::new(config);
    let mut out = Vec::new();
    let mut t = 1_000_000_000_000_000i64;
    let mut rest = data;
    while rest.len() >= 4 {
        let step = i64::from(u16::from_be_bytes([rest[0], rest[1]])) * 1_000_000;
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let frame = &rest[4..4 + len];
        rest = &rest[4 + len..];
        t += step;
        sensor.packet(Timestamp(t), LinkType::ETHERNET, frame, frame.len() as u32, &mut out);
    }
    sensor.finish(&mut out);
    let counted: u64 = out
        .iter()
        .filter(|r| r.cause != tunnelwatch_model::Cause::Status)
        .map(|r| r.orig_pkts + r.resp_pkts)
        .sum();
    // Tunnelled frames count once per layer; never more than layers decoded.
    assert!(counted <= sensor.stats().table.layers);
    let mut detection = tunnelwatch_detect::Detection::new(Default::default());
    let mut alerts = Vec::new();
    for r in &out {
        detection.record(r, &mut alerts);
    }
    detection.finish(&mut alerts);
    for a in &alerts {
        assert!(a.first_ts <= a.last_ts, "{a:?}");
        assert!((0.0..=1.0).contains(&a.score), "{a:?}");
    }
});
