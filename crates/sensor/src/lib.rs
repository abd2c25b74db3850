//! The sensor: one packet at a time through the decoder, IP fragment reassembly and
//! the flow table, with the run's counters (packets, bytes, decode anomalies by kind,
//! non-IP frames, fragments, time span).
//!
//! Sans-IO like the crates it joins: the caller reads packets from any source and
//! collects the flow records pushed into its `Vec`. The facts detectors need from each
//! packet are gathered by the flow table and carried on the records.
#![deny(missing_docs)]

use std::collections::BTreeMap;

pub mod reassembly;

use reassembly::{Reassembler, ReassemblyCounters};
use tunnelwatch_decode::{
    AnomalyCounts, AnomalyKind, Decoded, Decoder, DecoderConfig, Fragment, LinkType,
};
use tunnelwatch_flow::{ChecksumMode, FlowConfig, FlowSink, FlowTable, Frame, TableStats};
use tunnelwatch_model::Timestamp;

/// Settings of a sensor.
#[derive(Clone, Debug)]
pub struct SensorConfig {
    /// Decoder settings.
    pub decode: DecoderConfig,
    /// Flow-table settings.
    pub flow: FlowConfig,
    /// Reassemble IP fragments before the flow table (as end hosts and Zeek do). When
    /// off, a first fragment is keyed and counted on its own and later fragments are
    /// only counted (as flow meters such as nDPI, NFStream or NetFlow probes do).
    pub reassemble: bool,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            decode: DecoderConfig::default(),
            flow: FlowConfig::default(),
            reassemble: true,
        }
    }
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

impl SensorCounters {
    /// Adds the counters of another sensor (a shard of the same run).
    pub fn merge(&mut self, o: &SensorCounters) {
        self.packets += o.packets;
        self.wire_bytes += o.wire_bytes;
        self.captured_bytes += o.captured_bytes;
        self.truncated_frames += o.truncated_frames;
        for (k, v) in &o.non_ip {
            *self.non_ip.entry(*k).or_default() += v;
        }
        self.anomalies.merge(&o.anomalies);
        for (k, v) in &o.unknown_link_types {
            *self.unknown_link_types.entry(*k).or_default() += v;
        }
        self.first_ts = match (self.first_ts, o.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts = self.last_ts.max(o.last_ts);
    }
}

/// Everything a run counted: the sensor's, the flow table's and reassembly's counters.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Packets, bytes, anomalies, time span.
    pub counters: SensorCounters,
    /// The flow table's work.
    pub table: TableStats,
    /// IP fragment reassembly.
    pub reassembly: ReassemblyCounters,
}

impl RunStats {
    /// Adds another sensor's statistics (a shard of the same run).
    pub fn merge(&mut self, o: &RunStats) {
        self.counters.merge(&o.counters);
        self.table.merge(&o.table);
        self.reassembly.merge(&o.reassembly);
    }
}

/// Decoder + reassembler + flow table.
pub struct Sensor {
    reassemble: bool,
    decoder: Decoder,
    reassembler: Reassembler,
    table: FlowTable,
    counters: SensorCounters,
}

impl Sensor {
    /// A sensor with the given settings.
    pub fn new(config: SensorConfig) -> Self {
        Sensor {
            reassemble: config.reassemble,
            decoder: Decoder::new(config.decode),
            reassembler: Reassembler::default(),
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
        out: &mut dyn FlowSink,
    ) {
        self.packet_at(self.counters.packets, ts, link, data, orig_len, out);
    }

    /// [`Sensor::packet`] for the frame at position `index` of the whole input (a
    /// shard sees only some frames; `uid`s stay those of a single-threaded run).
    pub fn packet_at(
        &mut self,
        index: u64,
        ts: Timestamp,
        link: LinkType,
        data: &[u8],
        orig_len: u32,
        out: &mut dyn FlowSink,
    ) {
        let c = &mut self.counters;
        c.packets += 1;
        let wire_len = orig_len.max(data.len() as u32);
        c.wire_bytes += u64::from(wire_len);
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
        let frame = Frame {
            ts,
            index,
            wire_len,
            vlan: d.vlan,
            inner_vlan: d.inner_vlan,
        };
        // Layers up to the first fragment go to the table now; a fragment waits for its
        // datagram, which is then decoded and continues under the same parent.
        let first_fragment = d.layers.iter().position(|l| l.fragment != Fragment::No);
        let Some(k) = first_fragment.filter(|_| self.reassemble) else {
            self.table.process(&frame, &d, out);
            return;
        };
        let parent = self.table.process_layers(&frame, &d.layers[..k], None, out);
        if k > 0 && parent.is_none() {
            return; // the carrying layer was dropped (bad checksum): so is its payload
        }
        let l = d.layers[k];
        let header = data.get(l.frame_offset..).unwrap_or(&[]);
        let Some(dgram) = self.reassembler.add(&l, header, wire_len, ts) else {
            return;
        };
        let mut inner = Decoded::default();
        self.decoder
            .decode_ip(&dgram.bytes, l.version, l.encap, &mut inner);
        if let Some(a) = inner.anomaly {
            self.counters.anomalies.add(a.kind);
        }
        if let Some(first) = inner.layers.first_mut() {
            first.fragments = dgram.fragments;
        }
        // The datagram crossed the wire in all its fragments' frames.
        let whole = Frame {
            wire_len: u32::try_from(dgram.link_bytes).unwrap_or(u32::MAX),
            ..frame
        };
        self.table
            .process_layers(&whole, &inner.layers, parent, out);
    }

    /// Ends all flows (end of input); incomplete fragmented datagrams are counted.
    pub fn finish(&mut self, out: &mut dyn FlowSink) {
        self.reassembler.finish();
        self.table.flush(out);
    }

    /// Credits the ICMP errors in the frame to the flows they quote, counting nothing
    /// else (see [`FlowTable::attribute_quoted`]).
    pub fn attribute_quoted(
        &mut self,
        index: u64,
        ts: Timestamp,
        link: LinkType,
        data: &[u8],
        out: &mut dyn FlowSink,
    ) {
        let mut d = Decoded::default();
        self.decoder.decode(link, data, &mut d);
        let frame = Frame {
            ts,
            index,
            wire_len: data.len() as u32,
            vlan: d.vlan,
            inner_vlan: d.inner_vlan,
        };
        self.table.attribute_quoted(&frame, &d.layers, out);
    }

    /// Moves packet time forward to `now` (never back), ending flows whose timers are
    /// due: how a shard keeps the clock of the whole input between its own packets.
    pub fn advance(&mut self, now: Timestamp, out: &mut dyn FlowSink) {
        self.table.advance(now, out);
    }

    /// The flow table's packet time so far: see [`FlowTable::now`].
    pub fn now(&self) -> Timestamp {
        self.table.now()
    }

    /// All counters of the run so far.
    pub fn stats(&self) -> RunStats {
        RunStats {
            counters: self.counters.clone(),
            table: self.table.stats().clone(),
            reassembly: self.reassembler.counters().clone(),
        }
    }
}
