//! IPFIX export (RFC 7011) of flow records as bidirectional flows (RFC 5103): a sans-IO
//! encoder that turns [`FlowRecord`]s into IPFIX messages, each a `Vec<u8>` ready to be
//! one UDP datagram, no larger than the configured MTU.
//!
//! It owns the message layout (header, template sets, data sets padded to four bytes),
//! the sequence numbers (data records sent before each message, modulo 2^32, as RFC 7011
//! §3.1 defines them) and when templates are sent: in the first message, again every
//! `template_messages` messages and every `template_secs` seconds of record time, and in
//! a last message from [`IpfixExporter::finish`]; and the delta counters: an interim
//! record (`cause: status`) reports what its flow did since the previous record of the
//! same `uid`, so a collector's sums equal the flow's totals. It guarantees that no input panics it
//! (counters that do not fit their field are clipped to its largest value) and that it
//! never reads a clock: the export time is the latest record time seen (the end of the
//! latest flow), so replaying a capture gives the same bytes. Sockets, send errors and
//! pacing are left to the caller. The template, every Information Element and where its
//! value comes from are specified in `docs/specs/ipfix-export.md`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use tunnelwatch_model::{ipfix, Cause, ConnState, DirectionStats, FlowRecord, Timestamp};

/// The Private Enterprise Number of RFC 5103's reverse Information Elements: an IANA
/// element's reverse counterpart has the same number under this PEN.
pub const REVERSE_PEN: u32 = 29305;

/// Private enterprise number of tunnelwatch's own elements (see
/// [`tunnelwatch_model::ipfix`]).
pub const TUNNELWATCH_PEN: u32 = ipfix::PEN;

/// Template ID of IPv4 biflow records (data sets use it as their set ID).
pub const TEMPLATE_V4: u16 = 256;
/// Template ID of IPv6 biflow records.
pub const TEMPLATE_V6: u16 = 257;

/// RFC 5103 §6.2: an enterprise-specific element's reverse counterpart is the same
/// number with this bit set, under the same PEN.
const REVERSE_BIT: u16 = ipfix::REVERSE_BIT;
/// The enterprise bit of a field specifier's element ID (RFC 7011 §3.2).
const ENTERPRISE_BIT: u16 = 0x8000;
/// Set ID of template sets (RFC 7011 §3.3.2).
const TEMPLATE_SET_ID: u16 = 2;

/// Offsets of the message header fields (RFC 7011 §3.1).
mod header {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..2;
    pub const LENGTH: Range<usize> = 2..4;
    pub const EXPORT_TIME: Range<usize> = 4..8;
    pub const SEQUENCE: Range<usize> = 8..12;
    pub const DOMAIN: Range<usize> = 12..16;
    pub const LEN: usize = 16;
}

/// Length of a set header (set ID, length).
const SET_HEADER: usize = 4;

/// Which side of the biflow a value is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The originator (the forward direction; `biflowDirection` 1, initiator).
    Orig,
    /// The responder (the reverse direction).
    Resp,
}

/// Where a field's value comes from in the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Proto,
    Start,
    End,
    EndReason,
    BiflowDirection,
    Packets(Side),
    Octets(Side),
    TcpFlags(Side),
    Payload(Side),
    IatMean(Side),
    IatStddev(Side),
    MaxPayload(Side),
    Keystrokes(Side),
    Retransmissions(Side),
}

/// One field of a template: element ID, PEN (0 for IANA elements), length, value.
#[derive(Clone, Copy, Debug)]
struct Field {
    id: u16,
    pen: u32,
    len: u16,
    value: Value,
}

const fn iana(id: u16, len: u16, value: Value) -> Field {
    Field {
        id,
        pen: 0,
        len,
        value,
    }
}

const fn reverse(id: u16, len: u16, value: Value) -> Field {
    Field {
        id,
        pen: REVERSE_PEN,
        len,
        value,
    }
}

const fn ours(id: u16, side: Side, len: u16, value: Value) -> Field {
    Field {
        id: match side {
            Side::Orig => id,
            Side::Resp => id | REVERSE_BIT,
        },
        pen: TUNNELWATCH_PEN,
        len,
        value,
    }
}

const ADDR_V4: [Field; 2] = [iana(8, 4, Value::SrcAddr), iana(12, 4, Value::DstAddr)];
const ADDR_V6: [Field; 2] = [iana(27, 16, Value::SrcAddr), iana(28, 16, Value::DstAddr)];

use Side::{Orig, Resp};

/// The fields after the addresses, in template order (both templates).
///
/// The reverse `tcpControlBits` comes before the forward one on purpose: nfdump (1.7)
/// maps a reverse element it has no reverse slot for onto the forward element, and the
/// later value in a record wins, so this order keeps its flags the originator's.
const COMMON: [Field; 25] = [
    iana(7, 2, Value::SrcPort),
    iana(11, 2, Value::DstPort),
    iana(4, 1, Value::Proto),
    iana(152, 8, Value::Start),
    iana(153, 8, Value::End),
    iana(2, 8, Value::Packets(Orig)),
    iana(1, 8, Value::Octets(Orig)),
    reverse(2, 8, Value::Packets(Resp)),
    reverse(1, 8, Value::Octets(Resp)),
    reverse(6, 2, Value::TcpFlags(Resp)),
    iana(6, 2, Value::TcpFlags(Orig)),
    iana(136, 1, Value::EndReason),
    iana(239, 1, Value::BiflowDirection),
    ours(ipfix::PAYLOAD_BYTES, Orig, 8, Value::Payload(Orig)),
    ours(ipfix::PAYLOAD_BYTES, Resp, 8, Value::Payload(Resp)),
    ours(ipfix::IAT_MEAN_US, Orig, 8, Value::IatMean(Orig)),
    ours(ipfix::IAT_MEAN_US, Resp, 8, Value::IatMean(Resp)),
    ours(ipfix::IAT_STDDEV_US, Orig, 8, Value::IatStddev(Orig)),
    ours(ipfix::IAT_STDDEV_US, Resp, 8, Value::IatStddev(Resp)),
    ours(ipfix::MAX_PAYLOAD, Orig, 4, Value::MaxPayload(Orig)),
    ours(ipfix::MAX_PAYLOAD, Resp, 4, Value::MaxPayload(Resp)),
    ours(ipfix::KEYSTROKES, Orig, 8, Value::Keystrokes(Orig)),
    ours(ipfix::KEYSTROKES, Resp, 8, Value::Keystrokes(Resp)),
    ours(
        ipfix::RETRANSMISSIONS,
        Orig,
        8,
        Value::Retransmissions(Orig),
    ),
    ours(
        ipfix::RETRANSMISSIONS,
        Resp,
        8,
        Value::Retransmissions(Resp),
    ),
];

/// The template's fields for one address family, in order.
fn fields(v6: bool) -> impl Iterator<Item = &'static Field> {
    let addr: &'static [Field; 2] = if v6 { &ADDR_V6 } else { &ADDR_V4 };
    addr.iter().chain(COMMON.iter())
}

/// Length of one data record of a template.
fn record_len(v6: bool) -> usize {
    fields(v6).map(|f| usize::from(f.len)).sum()
}

/// Length of one template record (ID, field count, field specifiers).
fn template_record_len(v6: bool) -> usize {
    4 + fields(v6)
        .map(|f| if f.pen == 0 { 4 } else { 8 })
        .sum::<usize>()
}

/// Length of the template set carrying both templates.
fn template_set_len() -> usize {
    SET_HEADER + template_record_len(false) + template_record_len(true)
}

/// The smallest message that must fit: header, both templates, one IPv6 record.
fn min_mtu() -> usize {
    header::LEN + template_set_len() + pad4(SET_HEADER + record_len(true))
}

const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Settings of the exporter (defaults as softflowd and nfdump practice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfixConfig {
    /// Largest message (UDP payload) in bytes; default 1400, so a message fits a
    /// 1500-byte Ethernet frame with IPv6 and UDP headers and room for a tunnel. Raised
    /// to the smallest workable size (header, both templates and one IPv6 record) and
    /// lowered to 65,535 (IPFIX's length field) when outside them.
    pub mtu: usize,
    /// Observation Domain ID in every message header; default 0.
    pub observation_domain: u32,
    /// Templates are resent in the message after this many messages without them;
    /// default 20 (0: only by time).
    pub template_messages: u32,
    /// Templates are resent in the first message once this many seconds of record time
    /// have passed since they were last sent; default 60 (0: only by count).
    pub template_secs: u32,
    /// Most flows whose interim records' counters are remembered until their final
    /// record, so that each record carries deltas; default 262,144. Interim records of
    /// further flows are counted in [`IpfixCounters::untracked`], and their later
    /// records carry totals since the flow's start.
    pub max_interim_flows: usize,
}

impl Default for IpfixConfig {
    fn default() -> Self {
        IpfixConfig {
            mtu: 1400,
            observation_domain: 0,
            template_messages: 20,
            template_secs: 60,
            max_interim_flows: 1 << 18,
        }
    }
}

/// Counts of what the exporter produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpfixCounters {
    /// Messages produced.
    pub messages: u64,
    /// Data records encoded.
    pub records: u64,
    /// Messages that carried the templates.
    pub template_messages: u64,
    /// Interim records not remembered (more than `max_interim_flows` flows at once):
    /// the next record of their flow repeats what they counted.
    pub untracked: u64,
}

/// The delta counters of a record (see [`slot`]): what its interim records reported.
type Totals = [u64; 10];

/// Where a delta counter is in [`Totals`]; `None` for values that are not counters.
fn slot(v: Value) -> Option<usize> {
    let (i, s) = match v {
        Value::Packets(s) => (0, s),
        Value::Octets(s) => (1, s),
        Value::Payload(s) => (2, s),
        Value::Keystrokes(s) => (3, s),
        Value::Retransmissions(s) => (4, s),
        _ => return None,
    };
    Some(2 * i + usize::from(s == Side::Resp))
}

fn totals(r: &FlowRecord) -> Totals {
    let mut t = Totals::default();
    for f in &COMMON {
        if let Some(i) = slot(f.value) {
            t[i] = number(r, f.value);
        }
    }
    t
}

/// The message being filled.
struct Open {
    /// Set ID (template ID) and start offset of the data set being filled.
    set: Option<(u16, usize)>,
    /// Data records in this message.
    records: u32,
}

/// Turns flow records into IPFIX messages (see the module documentation).
pub struct IpfixExporter {
    config: IpfixConfig,
    /// The message being built (header space reserved at the front).
    msg: Vec<u8>,
    open: Option<Open>,
    /// Data records sent in earlier messages (the next message's sequence number).
    sequence: u32,
    /// The latest record time seen: export time and template timer.
    clock: Option<Timestamp>,
    /// When templates were last sent, and messages since.
    template_at: Option<Timestamp>,
    since_template: u32,
    /// Counters already reported by interim records, by `uid`, until the final record.
    reported: HashMap<String, Totals>,
    counters: IpfixCounters,
}

impl IpfixExporter {
    /// An exporter with `config` (its MTU brought into the workable range).
    pub fn new(mut config: IpfixConfig) -> Self {
        config.mtu = config.mtu.clamp(min_mtu(), usize::from(u16::MAX));
        IpfixExporter {
            msg: Vec::with_capacity(config.mtu),
            config,
            open: None,
            sequence: 0,
            clock: None,
            template_at: None,
            since_template: 0,
            reported: HashMap::new(),
            counters: IpfixCounters::default(),
        }
    }

    /// The configuration in use (with the MTU as clamped).
    pub fn config(&self) -> &IpfixConfig {
        &self.config
    }

    /// What was produced so far.
    pub fn counters(&self) -> IpfixCounters {
        self.counters
    }

    /// Encodes `r`; every message that became full is appended to `out`.
    pub fn push(&mut self, r: &FlowRecord, out: &mut Vec<Vec<u8>>) {
        let t = r.last_ts.max(r.ts);
        self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
        let v6 = matches!(
            (r.orig_h, r.resp_h),
            (IpAddr::V6(_), _) | (_, IpAddr::V6(_))
        );
        let (set_id, len) = if v6 {
            (TEMPLATE_V6, record_len(true))
        } else {
            (TEMPLATE_V4, record_len(false))
        };
        if !self.fits(set_id, len) {
            self.close(out);
        }
        if self.open.is_none() {
            self.start();
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.set.map(|(id, _)| id) != Some(set_id) {
            close_set(&mut self.msg, open);
            open.set = Some((set_id, self.msg.len()));
            self.msg.extend_from_slice(&set_id.to_be_bytes());
            self.msg.extend_from_slice(&[0, 0]);
        }
        let before = if r.cause == Cause::Status {
            let now = totals(r);
            let tracked = self.reported.len() < self.config.max_interim_flows
                || self.reported.contains_key(&r.uid);
            if tracked {
                self.reported.insert(r.uid.clone(), now)
            } else {
                self.counters.untracked += 1;
                None
            }
        } else {
            self.reported.remove(&r.uid)
        };
        encode(&mut self.msg, r, v6, &before.unwrap_or_default());
        open.records += 1;
        self.counters.records += 1;
    }

    /// Sends what is pending: the message being filled, if it holds any record.
    pub fn flush(&mut self, out: &mut Vec<Vec<u8>>) {
        self.close(out);
    }

    /// Ends the export: the pending message, then one carrying the templates, so a
    /// collector that (re)started during the export can still learn them.
    pub fn finish(&mut self, out: &mut Vec<Vec<u8>>) {
        self.close(out);
        self.start_with_templates(true);
        self.close(out);
    }

    /// True when a record of `len` bytes for `set_id` fits in the open message.
    fn fits(&self, set_id: u16, len: usize) -> bool {
        let Some(open) = &self.open else {
            return true;
        };
        let end = match open.set {
            Some((id, start)) if id == set_id => start + pad4(self.msg.len() - start + len),
            Some((_, start)) => start + pad4(self.msg.len() - start) + pad4(SET_HEADER + len),
            None => self.msg.len() + pad4(SET_HEADER + len),
        };
        end <= self.config.mtu
    }

    /// Opens a message, with the templates when they are due.
    fn start(&mut self) {
        let due = match (self.template_at, self.clock) {
            (None, _) => true,
            _ if self.config.template_messages > 0
                && self.since_template >= self.config.template_messages =>
            {
                true
            }
            (Some(at), Some(now)) if self.config.template_secs > 0 => {
                now.nanos_since(at)
                    >= i64::from(self.config.template_secs) * Timestamp::NANOS_PER_SEC
            }
            _ => false,
        };
        self.start_with_templates(due);
    }

    fn start_with_templates(&mut self, templates: bool) {
        self.msg.clear();
        self.msg.resize(header::LEN, 0);
        if templates {
            write_templates(&mut self.msg);
            self.template_at = Some(self.clock.unwrap_or_default());
            self.since_template = 0;
            self.counters.template_messages += 1;
        }
        self.open = Some(Open {
            set: None,
            records: 0,
        });
    }

    /// Completes the open message (set lengths, padding, header) into `out`. A message
    /// with neither records nor templates is dropped.
    fn close(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        if open.records == 0 && self.msg.len() == header::LEN {
            return;
        }
        close_set(&mut self.msg, &mut open);
        let len = u16::try_from(self.msg.len()).unwrap_or(u16::MAX);
        let secs = self
            .clock
            .unwrap_or_default()
            .as_nanos()
            .div_euclid(Timestamp::NANOS_PER_SEC)
            .clamp(0, i64::from(u32::MAX)) as u32;
        let m = &mut self.msg;
        m[header::VERSION].copy_from_slice(&10u16.to_be_bytes());
        m[header::LENGTH].copy_from_slice(&len.to_be_bytes());
        m[header::EXPORT_TIME].copy_from_slice(&secs.to_be_bytes());
        m[header::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
        m[header::DOMAIN].copy_from_slice(&self.config.observation_domain.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(open.records);
        self.since_template = self.since_template.saturating_add(1);
        self.counters.messages += 1;
        out.push(std::mem::replace(
            &mut self.msg,
            Vec::with_capacity(self.config.mtu),
        ));
    }
}

/// Pads the open data set to four bytes and writes its length.
fn close_set(msg: &mut Vec<u8>, open: &mut Open) {
    if let Some((_, start)) = open.set.take() {
        msg.resize(start + pad4(msg.len() - start), 0);
        let len = u16::try_from(msg.len() - start).unwrap_or(u16::MAX);
        msg[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Appends the template set with both templates.
fn write_templates(msg: &mut Vec<u8>) {
    let len = u16::try_from(template_set_len()).unwrap_or(u16::MAX);
    msg.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    msg.extend_from_slice(&len.to_be_bytes());
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let count = u16::try_from(fields(v6).count()).unwrap_or(u16::MAX);
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(&count.to_be_bytes());
        for f in fields(v6) {
            if f.pen == 0 {
                msg.extend_from_slice(&f.id.to_be_bytes());
                msg.extend_from_slice(&f.len.to_be_bytes());
            } else {
                msg.extend_from_slice(&(f.id | ENTERPRISE_BIT).to_be_bytes());
                msg.extend_from_slice(&f.len.to_be_bytes());
                msg.extend_from_slice(&f.pen.to_be_bytes());
            }
        }
    }
}

/// Appends `r` as one data record of the IPv4 or IPv6 template, its counters less what
/// was reported `before`.
fn encode(msg: &mut Vec<u8>, r: &FlowRecord, v6: bool, before: &Totals) {
    for f in fields(v6) {
        match f.value {
            Value::SrcAddr => addr(msg, r.orig_h, v6),
            Value::DstAddr => addr(msg, r.resp_h, v6),
            other => {
                let mut v = number(r, other);
                if let Some(i) = slot(other) {
                    v = v.saturating_sub(before[i]);
                }
                // Clip to the field's width: a value that does not fit reads as the
                // largest the field can hold, never as a wrapped small number.
                let width = usize::from(f.len).min(8);
                let max = if width >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * width)) - 1
                };
                msg.extend_from_slice(&v.min(max).to_be_bytes()[8 - width..]);
            }
        }
    }
}

fn addr(msg: &mut Vec<u8>, a: IpAddr, v6: bool) {
    match (a, v6) {
        (IpAddr::V4(a), false) => msg.extend_from_slice(&a.octets()),
        (IpAddr::V4(a), true) => msg.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), true) => msg.extend_from_slice(&a.octets()),
        // Not reached: a record with any IPv6 address uses the IPv6 template.
        (IpAddr::V6(_), false) => msg.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets()[..4]),
    }
}

fn side(r: &FlowRecord, s: Side) -> &DirectionStats {
    match s {
        Side::Orig => &r.dynamics.orig,
        Side::Resp => &r.dynamics.resp,
    }
}

/// Milliseconds since the epoch (negative times clip to 0).
fn millis(t: Timestamp) -> u64 {
    u64::try_from(t.as_nanos().div_euclid(1_000_000)).unwrap_or(0)
}

/// Seconds as whole microseconds (absent, negative or NaN: 0; huge: clipped).
fn micros(secs: f64) -> u64 {
    (secs * 1e6).round() as u64
}

/// The numeric value of a field.
fn number(r: &FlowRecord, v: Value) -> u64 {
    match v {
        Value::SrcAddr | Value::DstAddr => 0,
        Value::SrcPort if is_icmp(r) => 0,
        Value::DstPort if is_icmp(r) => u64::from(icmp_type_code(r)),
        Value::SrcPort => u64::from(r.orig_p),
        Value::DstPort => u64::from(r.resp_p),
        Value::Proto => u64::from(r.ip_proto),
        Value::Start => millis(r.ts),
        Value::End => millis(r.last_ts.max(r.ts)),
        Value::EndReason => u64::from(end_reason(r)),
        Value::BiflowDirection => 1,
        Value::Packets(Side::Orig) => r.orig_pkts,
        Value::Packets(Side::Resp) => r.resp_pkts,
        Value::Octets(Side::Orig) => r.orig_ip_bytes,
        Value::Octets(Side::Resp) => r.resp_ip_bytes,
        Value::TcpFlags(s) => u64::from(tcp_control_bits(&side(r, s).flags)),
        Value::Payload(s) => side(r, s).payload_bytes,
        Value::IatMean(s) => side(r, s).iat.map_or(0, |i| micros(i.mean)),
        Value::IatStddev(s) => side(r, s).iat.map_or(0, |i| micros(i.stddev)),
        Value::MaxPayload(s) => side(r, s).size.map_or(0, |z| z.max.round() as u64),
        Value::Keystrokes(s) => side(r, s).keystrokes,
        Value::Retransmissions(s) => side(r, s).retransmissions,
    }
}

fn is_icmp(r: &FlowRecord) -> bool {
    r.ip_proto == 1 || r.ip_proto == 58
}

/// ICMP type and code as NetFlow exporters put them in the destination port (the type
/// times 256 plus the code, source port 0), which nfdump, SiLK and Wireshark read. The
/// record keeps Zeek's ports: the type as `orig_p`, and as `resp_p` the code of a
/// one-way message or the counterpart type of a request/reply (whose code is 0 for
/// every such message in use).
fn icmp_type_code(r: &FlowRecord) -> u16 {
    let icmp_type = r.orig_p.min(255);
    let code = if icmp_two_way(r.ip_proto == 58, icmp_type) {
        0
    } else {
        r.resp_p.min(255)
    };
    (icmp_type << 8) | code
}

/// The ICMP types with a counterpart (request ↔ reply), as
/// `tunnelwatch_flow::key::icmp_counterpart` pairs them (a test holds the two together).
fn icmp_two_way(v6: bool, icmp_type: u16) -> bool {
    if v6 {
        matches!(icmp_type, 128..=131 | 133..=136 | 139 | 140 | 144 | 145)
    } else {
        matches!(icmp_type, 0 | 8 | 9 | 10 | 13..=18)
    }
}

/// `flowEndReason` (IANA registry "IPFIX flowEndReason Values") from the record's
/// `cause`. `end` is both "the connection closed" and "the input ended"; the state
/// tells them apart: a TCP connection that saw a FIN or RST ended (3, end of flow
/// detected), anything else was cut by the end of the input (4, forced end).
fn end_reason(r: &FlowRecord) -> u8 {
    match r.cause {
        Cause::Timeout => 1,
        Cause::Status => 2,
        Cause::Evicted => 5,
        Cause::End => {
            let closed = r.ip_proto == 6
                && !matches!(r.conn_state, ConnState::S0 | ConnState::S1 | ConnState::OTH);
            if closed {
                3
            } else {
                4
            }
        }
    }
}

/// `tcpControlBits` (RFC 7125) from the record's flag letters. `r` says only that some
/// reserved bit was seen: all three are set, as the detectors read it.
fn tcp_control_bits(letters: &str) -> u16 {
    letters.bytes().fold(0, |acc, c| {
        acc | match c {
            b'F' => 0x01,
            b'S' => 0x02,
            b'R' => 0x04,
            b'P' => 0x08,
            b'A' => 0x10,
            b'U' => 0x20,
            b'E' => 0x40,
            b'C' => 0x80,
            b'N' => 0x100,
            b'r' => 0xE00,
            _ => 0,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnelwatch_model::Stats;

    /// A parsed message: header fields and its sets (set ID, body).
    struct Msg {
        length: u16,
        export_time: u32,
        sequence: u32,
        domain: u32,
        sets: Vec<(u16, Vec<u8>)>,
    }

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Parses `m`, asserting that the lengths add up.
    fn parse(m: &[u8]) -> Msg {
        assert!(m.len() >= header::LEN);
        assert_eq!(be16(m, 0), 10, "version");
        let length = be16(m, 2);
        assert_eq!(
            usize::from(length),
            m.len(),
            "header length = datagram length"
        );
        let mut sets = Vec::new();
        let mut at = header::LEN;
        while at < m.len() {
            let id = be16(m, at);
            let len = usize::from(be16(m, at + 2));
            assert!(
                len >= SET_HEADER && at + len <= m.len(),
                "set at {at}: {len}"
            );
            assert_eq!(len % 4, 0, "sets are padded to four bytes");
            sets.push((id, m[at + SET_HEADER..at + len].to_vec()));
            at += len;
        }
        assert_eq!(at, m.len(), "sets fill the message exactly");
        Msg {
            length,
            export_time: be32(m, 4),
            sequence: be32(m, 8),
            domain: be32(m, 12),
            sets,
        }
    }

    /// Data records in a message (per template), checking each set's padding is shorter
    /// than a record and zero.
    fn data_records(m: &Msg) -> usize {
        m.sets
            .iter()
            .filter(|(id, _)| *id >= 256)
            .map(|(id, body)| {
                let rl = record_len(*id == TEMPLATE_V6);
                let n = body.len() / rl;
                let pad = body.len() % rl;
                assert!(pad < 4 && pad < rl, "padding {pad}");
                assert!(body[n * rl..].iter().all(|&b| b == 0));
                n
            })
            .sum()
    }

    fn has_templates(m: &Msg) -> bool {
        m.sets.iter().any(|(id, _)| *id == TEMPLATE_SET_ID)
    }

    fn sample() -> FlowRecord {
        crate::zeek::tests::sample()
    }

    fn at_secs(mut r: FlowRecord, s: i64) -> FlowRecord {
        r.ts = Timestamp::from_secs_nanos(s, 0);
        r.last_ts = Timestamp::from_secs_nanos(s, 250_000_000);
        r
    }

    fn export(config: IpfixConfig, recs: &[FlowRecord]) -> Vec<Vec<u8>> {
        let mut x = IpfixExporter::new(config);
        let mut out = Vec::new();
        for r in recs {
            x.push(r, &mut out);
        }
        x.finish(&mut out);
        out
    }

    #[test]
    fn template_set_describes_every_field_with_its_pen() {
        let mut msg = Vec::new();
        write_templates(&mut msg);
        assert_eq!(msg.len(), template_set_len());
        assert_eq!(be16(&msg, 0), TEMPLATE_SET_ID);
        // IPv4 template: ID, field count, then specifiers.
        assert_eq!(be16(&msg, 4), TEMPLATE_V4);
        let n = usize::from(be16(&msg, 6));
        assert_eq!(n, 27);
        let mut at = 8;
        let mut seen = Vec::new();
        for _ in 0..n {
            let id = be16(&msg, at);
            let len = be16(&msg, at + 2);
            if id & ENTERPRISE_BIT != 0 {
                seen.push((id & !ENTERPRISE_BIT, len, be32(&msg, at + 4)));
                at += 8;
            } else {
                seen.push((id, len, 0));
                at += 4;
            }
        }
        assert_eq!(&seen[..2], &[(8, 4, 0), (12, 4, 0)]);
        assert!(
            seen.contains(&(2, 8, REVERSE_PEN)),
            "reversePacketDeltaCount"
        );
        assert!(
            seen.contains(&(1, 8, REVERSE_PEN)),
            "reverseOctetDeltaCount"
        );
        assert!(seen.contains(&(6, 2, REVERSE_PEN)), "reverseTcpControlBits");
        assert!(seen.contains(&(239, 1, 0)), "biflowDirection");
        assert!(seen.contains(&(1, 8, TUNNELWATCH_PEN)));
        assert!(seen.contains(&(1 | REVERSE_BIT, 8, TUNNELWATCH_PEN)));
        let data: usize = seen.iter().map(|s| usize::from(s.1)).sum();
        assert_eq!(data, record_len(false));
        // The IPv6 template follows, with addresses 27 and 28.
        assert_eq!(be16(&msg, at), TEMPLATE_V6);
        assert_eq!(be16(&msg, at + 4), 27);
        assert_eq!(be16(&msg, at + 6), 16);
        assert_eq!(at + template_record_len(true), msg.len());
    }

    #[test]
    fn record_fields_encode_the_record() {
        let mut r = sample();
        r.dynamics.orig.flags = "SAPF".into();
        r.dynamics.resp.flags = "SAR".into();
        r.dynamics.orig.payload_bytes = 10;
        r.dynamics.resp.payload_bytes = 20;
        r.dynamics.orig.iat = Some(Stats {
            mean: 0.0125,
            min: 0.0,
            max: 0.02,
            stddev: 0.0000015,
        });
        r.dynamics.resp.size = Some(Stats {
            mean: 10.0,
            min: 0.0,
            max: 20.0,
            stddev: 9.0,
        });
        r.dynamics.orig.keystrokes = 7;
        r.dynamics.resp.retransmissions = 3;
        let out = export(IpfixConfig::default(), &[r]);
        let m = parse(&out[0]);
        let (id, body) = &m.sets[1];
        assert_eq!(*id, TEMPLATE_V4);
        let b = &body[..record_len(false)];
        assert_eq!(&b[0..4], &[10, 0, 0, 1]);
        assert_eq!(&b[4..8], &[10, 0, 0, 2]);
        assert_eq!(be16(b, 8), 1234);
        assert_eq!(be16(b, 10), 80);
        assert_eq!(b[12], 6);
        let start = u64::from_be_bytes(b[13..21].try_into().unwrap());
        let end = u64::from_be_bytes(b[21..29].try_into().unwrap());
        assert_eq!((start, end), (1_300_000_000_500, 1_300_000_001_000));
        let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        assert_eq!(
            (u64_at(29), u64_at(37), u64_at(45), u64_at(53)),
            (3, 130, 2, 100),
            "packets and octets, forward then reverse"
        );
        assert_eq!(be16(b, 61), 0x02 | 0x10 | 0x04, "reverse SAR");
        assert_eq!(be16(b, 63), 0x01 | 0x02 | 0x08 | 0x10, "forward SAPF");
        assert_eq!(b[65], 3, "SF with cause end: end of flow detected");
        assert_eq!(b[66], 1, "biflowDirection initiator");
        assert_eq!((u64_at(67), u64_at(75)), (10, 20), "payload octets");
        assert_eq!((u64_at(83), u64_at(91)), (12_500, 0), "mean IAT µs");
        assert_eq!((u64_at(99), u64_at(107)), (2, 0), "stddev IAT µs, rounded");
        assert_eq!((be32(b, 115), be32(b, 119)), (0, 20), "max payload");
        assert_eq!((u64_at(123), u64_at(131)), (7, 0), "keystrokes");
        assert_eq!((u64_at(139), u64_at(147)), (0, 3), "retransmissions");
        assert_eq!(155, record_len(false));
        assert_eq!(m.export_time, 1_300_000_001);
    }

    #[test]
    fn messages_add_up_and_sequence_counts_records_before() {
        let recs: Vec<FlowRecord> = (0..100).map(|i| at_secs(sample(), 1000 + i)).collect();
        let out = export(IpfixConfig::default(), &recs);
        let mut records = 0u32;
        for d in &out {
            assert!(d.len() <= 1400);
            let m = parse(d);
            assert_eq!(m.sequence, records, "records sent before this message");
            assert_eq!(m.domain, 0);
            assert_eq!(usize::from(m.length), d.len());
            records += data_records(&m) as u32;
        }
        assert_eq!(records, 100);
        // Full messages are full: no room for one more record.
        let first = parse(&out[0]);
        assert!(out[0].len() + record_len(false) > 1400);
        assert!(has_templates(&first));
        // The last message carries only the templates.
        let last = parse(out.last().unwrap());
        assert!(has_templates(&last) && data_records(&last) == 0);
        assert_eq!(last.sequence, 100);
    }

    #[test]
    fn sets_are_padded_to_four_bytes() {
        // 155-byte IPv4 records: one record needs one padding byte, four need none.
        let out = export(IpfixConfig::default(), &[sample()]);
        let m = parse(&out[0]);
        assert_eq!(m.sets[1].1.len(), 156);
        assert_eq!(m.sets[1].1[155], 0);
        let four: Vec<_> = (0..4).map(|_| sample()).collect();
        let m = parse(&export(IpfixConfig::default(), &four)[0]);
        assert_eq!(m.sets[1].1.len(), 4 * 155);
    }

    #[test]
    fn templates_are_resent_every_n_messages() {
        let config = IpfixConfig {
            mtu: min_mtu(),
            template_messages: 3,
            template_secs: 0,
            ..IpfixConfig::default()
        };
        // Same time for every record: only the count can trigger.
        let recs: Vec<FlowRecord> = (0..60).map(|_| at_secs(sample(), 5)).collect();
        let out = export(config, &recs);
        let with: Vec<bool> = out.iter().map(|d| has_templates(&parse(d))).collect();
        assert!(with.len() > 8);
        for (i, w) in with.iter().enumerate().take(with.len() - 1) {
            assert_eq!(*w, i % 3 == 0, "message {i}: {with:?}");
        }
        assert!(with[with.len() - 1], "finish sends the templates");
    }

    #[test]
    fn templates_are_resent_after_t_seconds_of_record_time() {
        let config = IpfixConfig {
            mtu: min_mtu(),
            template_messages: 0,
            template_secs: 60,
            ..IpfixConfig::default()
        };
        // One record per 10 s, a few per message: templates when 60 s have passed.
        let recs: Vec<FlowRecord> = (0..40).map(|i| at_secs(sample(), 10 * i)).collect();
        let out = export(config, &recs);
        let mut last_templates: Option<u32> = None;
        for d in &out[..out.len() - 1] {
            let m = parse(d);
            if has_templates(&m) {
                if let Some(t) = last_templates {
                    assert!(m.export_time - t >= 60, "{} after {t}", m.export_time);
                }
                last_templates = Some(m.export_time);
            } else {
                assert!(m.export_time - last_templates.unwrap() <= 60 + 10);
            }
        }
        let n = out.iter().filter(|d| has_templates(&parse(d))).count();
        assert!(n >= 5, "400 s of records: templates about every 60 s ({n})");
    }

    #[test]
    fn ipv6_records_use_their_own_template_and_sets_switch() {
        let mut v6 = sample();
        v6.orig_h = "2001:db8::1".parse().unwrap();
        v6.resp_h = "2001:db8::2".parse().unwrap();
        let out = export(IpfixConfig::default(), &[sample(), v6.clone(), sample()]);
        let m = parse(&out[0]);
        let ids: Vec<u16> = m.sets.iter().map(|s| s.0).collect();
        assert_eq!(ids, vec![2, TEMPLATE_V4, TEMPLATE_V6, TEMPLATE_V4]);
        let b = &m.sets[2].1;
        assert_eq!(b.len(), pad4(record_len(true)));
        assert_eq!(
            &b[..16],
            &v6.orig_h.to_string().parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(be16(b, 32), 1234);
        assert_eq!(data_records(&m), 3);
        assert_eq!(179, record_len(true));
    }

    #[test]
    fn values_that_do_not_fit_are_clipped_and_odd_times_do_not_panic() {
        let mut r = sample();
        r.orig_pkts = u64::MAX;
        r.ts = Timestamp(i64::MIN);
        r.last_ts = Timestamp(i64::MAX);
        r.dynamics.orig.size = Some(Stats {
            mean: f64::NAN,
            min: -1.0,
            max: 1e300,
            stddev: f64::INFINITY,
        });
        r.dynamics.orig.iat = Some(Stats {
            mean: -5.0,
            min: 0.0,
            max: 0.0,
            stddev: f64::NAN,
        });
        // Mixed families cannot come from a flow table, but must not panic either.
        r.resp_h = "2001:db8::2".parse().unwrap();
        let out = export(
            IpfixConfig {
                mtu: 0,
                ..IpfixConfig::default()
            },
            &[r],
        );
        let m = parse(&out[0]);
        let b = &m.sets[1].1;
        assert_eq!(m.sets[1].0, TEMPLATE_V6);
        assert_eq!(
            &b[..16],
            &"10.0.0.1"
                .parse::<std::net::Ipv4Addr>()
                .unwrap()
                .to_ipv6_mapped()
                .octets()
        );
        // Addresses, ports, protocol; times; four counters; two flag fields; end
        // reason and direction; payload, mean and stddev IAT for both sides.
        let max_payload = 37 + 16 + 32 + 4 + 2 + 48;
        assert_eq!(be32(b, max_payload), u32::MAX);
        assert_eq!(m.export_time, u32::MAX);
        assert_eq!(
            u64::from_be_bytes(b[37..45].try_into().unwrap()),
            0,
            "start clipped to 0"
        );
    }

    #[test]
    fn end_reason_follows_cause_and_state() {
        let mut r = sample();
        for (cause, state, proto, want) in [
            (Cause::Timeout, ConnState::SF, 6, 1),
            (Cause::Status, ConnState::S1, 6, 2),
            (Cause::End, ConnState::SF, 6, 3),
            (Cause::End, ConnState::RSTO, 6, 3),
            (Cause::End, ConnState::S1, 6, 4),
            (Cause::End, ConnState::OTH, 17, 4),
            (Cause::Evicted, ConnState::S0, 6, 5),
        ] {
            r.cause = cause;
            r.conn_state = state;
            r.ip_proto = proto;
            assert_eq!(end_reason(&r), want, "{cause:?} {state:?} {proto}");
        }
    }

    #[test]
    fn observation_domain_is_in_every_header_and_output_is_deterministic() {
        let config = IpfixConfig {
            observation_domain: 42,
            ..IpfixConfig::default()
        };
        let recs: Vec<FlowRecord> = (0..30).map(|i| at_secs(sample(), i)).collect();
        let a = export(config.clone(), &recs);
        assert!(a.iter().all(|d| parse(d).domain == 42));
        assert_eq!(a, export(config, &recs));
    }

    #[test]
    fn every_mtu_keeps_messages_within_it_and_loses_no_record() {
        let mut v6 = sample();
        v6.orig_h = "2001:db8::1".parse().unwrap();
        v6.resp_h = "2001:db8::2".parse().unwrap();
        let recs: Vec<FlowRecord> = (0..50)
            .map(|i| if i % 3 == 0 { v6.clone() } else { sample() })
            .collect();
        let m = min_mtu();
        for mtu in [
            0,
            m - 1,
            m,
            m + 1,
            m + 2,
            m + 3,
            m + 4,
            577,
            1400,
            9000,
            100_000,
        ] {
            let out = export(
                IpfixConfig {
                    mtu,
                    ..IpfixConfig::default()
                },
                &recs,
            );
            let limit = mtu.clamp(m, 65_535);
            let mut n = 0;
            for d in &out {
                assert!(d.len() <= limit, "mtu {mtu}: {}", d.len());
                n += data_records(&parse(d));
            }
            assert_eq!(n, recs.len(), "mtu {mtu}");
        }
    }

    #[test]
    fn icmp_type_and_code_go_in_the_destination_port() {
        let mut r = sample();
        r.ip_proto = 1;
        for (v6, t, resp_p, want) in [
            (false, 8, 0, 0x0800),    // echo request: code 0
            (false, 3, 3, 0x0303),    // port unreachable: resp_p is the code
            (false, 11, 1, 0x0B01),   // time exceeded in reassembly
            (true, 128, 129, 0x8000), // ICMPv6 echo request: resp_p is the reply type
            (true, 1, 4, 0x0104),     // ICMPv6 port unreachable
        ] {
            r.ip_proto = if v6 { 58 } else { 1 };
            r.orig_p = t;
            r.resp_p = resp_p;
            assert_eq!(number(&r, Value::SrcPort), 0);
            assert_eq!(number(&r, Value::DstPort), want, "{v6} {t}/{resp_p}");
        }
    }

    #[test]
    fn icmp_two_way_types_are_the_flow_tables() {
        for v6 in [false, true] {
            for t in 0..=255u8 {
                let (_, one_way) = tunnelwatch_flow::key::icmp_counterpart(v6, t, 0);
                assert_eq!(icmp_two_way(v6, u16::from(t)), !one_way, "{v6} {t}");
            }
        }
    }

    /// Offset of `v`'s field in a data record.
    fn offset(v6: bool, v: Value) -> usize {
        fields(v6)
            .take_while(|f| f.value != v)
            .map(|f| usize::from(f.len))
            .sum()
    }

    /// `v` (an 8-byte field) of every data record in `out`, in order.
    fn values(out: &[Vec<u8>], v: Value) -> Vec<u64> {
        let mut got = Vec::new();
        for d in out {
            for (id, body) in parse(d).sets {
                if id == TEMPLATE_V4 {
                    let rl = record_len(false);
                    for rec in body.chunks_exact(rl) {
                        let at = offset(false, v);
                        got.push(u64::from_be_bytes(rec[at..at + 8].try_into().unwrap()));
                    }
                }
            }
        }
        got
    }

    #[test]
    fn interim_records_carry_deltas_and_the_sums_are_the_totals() {
        let mut recs = Vec::new();
        for (i, (cause, pkts, bytes)) in [
            (Cause::Status, 10, 1000),
            (Cause::Status, 25, 2600),
            (Cause::End, 30, 3000),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = at_secs(sample(), 100 * i as i64);
            r.cause = cause;
            r.orig_pkts = pkts;
            r.orig_ip_bytes = bytes;
            r.dynamics.resp.keystrokes = pkts / 5;
            recs.push(r);
            // Another flow in between, without interim records.
            recs.push(at_secs(sample(), 100 * i as i64 + 1));
            recs.last_mut().unwrap().uid = format!("other{i}");
        }
        let out = export(IpfixConfig::default(), &recs);
        assert_eq!(values(&out, Value::Packets(Orig)), vec![10, 3, 15, 3, 5, 3]);
        assert_eq!(
            values(&out, Value::Octets(Orig)),
            vec![1000, 130, 1600, 130, 400, 130]
        );
        assert_eq!(
            values(&out, Value::Keystrokes(Resp)),
            vec![2, 0, 3, 0, 1, 0]
        );
        // Remembering no flow: every record carries totals, and that is counted.
        let mut x = IpfixExporter::new(IpfixConfig {
            max_interim_flows: 0,
            ..IpfixConfig::default()
        });
        let mut out = Vec::new();
        for r in &recs {
            x.push(r, &mut out);
        }
        x.finish(&mut out);
        assert_eq!(
            values(&out, Value::Packets(Orig)),
            vec![10, 3, 25, 3, 30, 3]
        );
        assert_eq!(x.counters().untracked, 2);
        assert!(x.reported.is_empty(), "final records forget their flow");
    }
}
