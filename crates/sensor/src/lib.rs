//! The sensor: one packet at a time through the decoder and the flow table, with the
//! run's counters (packets, bytes, decode anomalies by kind, non-IP frames, time span).
//!
//! Sans-IO like the crates it joins: the caller reads packets from any source and
//! collects the flow records pushed into its `Vec`. Packet-level detectors will run
//! here too, next to the flow table they read.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use tunnelwatch_decode::{AnomalyCounts, AnomalyKind, Decoded, Decoder, DecoderConfig, LinkType};
use tunnelwatch_flow::{ChecksumMode, FlowConfig, FlowTable, TableStats};
use tunnelwatch_model::{FlowRecord, Timestamp};

/// Settings of a sensor.
#[derive(Clone, Debug, Default)]
pub struct SensorConfig {
    /// Decoder settings.
    pub decode: DecoderConfig,
    /// Flow-table settings.
    pub flow: FlowConfig,
}

impl SensorConfig {
    /// Sets the checksum policy of both stages.
    pub fn with_checksums(mut self, mode: ChecksumMode) -> Self {
        self.decode.verify_ip_checksum = mode == ChecksumMode::Verify;
        self.flow.checksums = mode;
        self
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SensorCounters {
    /// Frames seen.
    pub packets: u64,
    /// Bytes on the wire (original lengths).
    pub wire_bytes: u64,
    /// Bytes captured.
    pub captured_bytes: u64,
    /// Frames shorter than their original length (snap length).
    pub truncated_frames: u64,
    /// Frames that carried no IP, by EtherType / protocol.
    pub non_ip: BTreeMap<u16, u64>,
    /// Decode anomalies by kind.
    pub anomalies: AnomalyCounts,
    /// Frames of link types the decoder does not know, by link type.
    pub unknown_link_types: BTreeMap<u32, u64>,
    /// First packet time.
    pub first_ts: Option<Timestamp>,
    /// Last (latest) packet time.
    pub last_ts: Option<Timestamp>,
}

/// Decoder + flow table.
pub struct Sensor {
    decoder: Decoder,
    table: FlowTable,
    counters: SensorCounters,
}

impl Sensor {
    /// A sensor with the given settings.
    pub fn new(config: SensorConfig) -> Self {
        Sensor {
            decoder: Decoder::new(config.decode),
            table: FlowTable::new(config.flow),
            counters: SensorCounters::default(),
        }
    }

    /// Processes one frame; ended flows are appended to `out`.
    pub fn packet(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        data: &[u8],
        orig_len: u32,
        out: &mut Vec<FlowRecord>,
    ) {
        let c = &mut self.counters;
        let index = c.packets;
        c.packets += 1;
        c.wire_bytes += u64::from(orig_len.max(data.len() as u32));
        c.captured_bytes += data.len() as u64;
        if (data.len() as u64) < u64::from(orig_len) {
            c.truncated_frames += 1;
        }
        c.first_ts = Some(c.first_ts.map_or(ts, |f| f.min(ts)));
        c.last_ts = Some(c.last_ts.map_or(ts, |l| l.max(ts)));
        let mut d = Decoded::default();
        self.decoder.decode(link, data, &mut d);
        if let Some(a) = d.anomaly {
            c.anomalies.add(a.kind);
            if a.kind == AnomalyKind::UnknownLinkType {
                *c.unknown_link_types.entry(link.0).or_default() += 1;
            }
        }
        if let Some(et) = d.non_ip {
            *c.non_ip.entry(et).or_default() += 1;
        }
        self.table.process(ts, index, &d, out);
    }

    /// Ends all flows (end of input).
    pub fn finish(&mut self, out: &mut Vec<FlowRecord>) {
        self.table.flush(out);
    }

    /// Run counters.
    pub fn counters(&self) -> &SensorCounters {
        &self.counters
    }

    /// Flow-table counters.
    pub fn table_stats(&self) -> &TableStats {
        self.table.stats()
    }

    /// Later IP fragments that never found their flow.
    pub fn unattributed_fragments(&self) -> u64 {
        self.table.unattributed_fragments()
    }

    /// Flows alive now.
    pub fn live_flows(&self) -> usize {
        self.table.live_flows()
    }
}
