//! NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) datagrams into one-way flow
//! records ([`UniFlow`]).
//!
//! Templates are cached per exporter scope — the exporter's address and, for v9, its
//! source id, for IPFIX its observation domain — so two routers using the same template
//! id never mix. Options records carrying sampling rates (v9 fields 34/48/50, IPFIX
//! 34/50/302/305/306) set the rate of the records that name their sampler, or of the
//! whole scope. Data sets that arrive before their template are held (bounded per
//! scope, by count and bytes) and decoded when it comes; those still waiting after
//! [`Limits::pending_ttl`] seconds are counted as dropped. Every bound — scopes,
//! templates per scope, fields per template, pending sets — is a counted refusal, not
//! growth: a template flood costs a counter, not memory.
//!
//! Sans-IO and deterministic: the caller passes each datagram with its sender and its
//! arrival time (the capture's time when replaying a file). A malformed set stops its
//! datagram with an error naming the byte offset; the records decoded before it are
//! kept.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tunnelwatch_decode::{
    Decoded, Decoder as PacketDecoder, DecoderConfig, Encap, LinkType, Transport,
};
use tunnelwatch_model::{ipfix, Timestamp};

/// RFC 5103's private enterprise number for reverse information elements.
pub const REVERSE_PEN: u32 = 29305;

/// Bounds on what one collector keeps.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Exporter scopes (address × source id / observation domain) with templates; the
    /// least recently heard is forgotten when a new one comes.
    pub max_scopes: usize,
    /// Templates per scope; more are refused and counted.
    pub max_templates: usize,
    /// Fields per template; longer templates are refused.
    pub max_fields: usize,
    /// Data sets held per scope while their template is missing.
    pub max_pending: usize,
    /// Bytes of such sets held per scope.
    pub max_pending_bytes: usize,
    /// Seconds a held set waits for its template before it is dropped.
    pub pending_ttl: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_scopes: 1024,
            max_templates: 512,
            max_fields: 256,
            max_pending: 256,
            max_pending_bytes: 1 << 20,
            pending_ttl: 60.0,
        }
    }
}

/// Counters of everything the decoder saw, refused or dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Datagrams offered.
    pub datagrams: u64,
    /// Datagrams whose version is not 5, 9 or 10.
    pub unknown_version: u64,
    /// Datagrams stopped by a malformed header or set.
    pub malformed: u64,
    /// Flow records decoded.
    pub records: u64,
    /// Data records without a flow 5-tuple (no addresses), skipped.
    pub records_without_flow: u64,
    /// Templates (and options templates) learnt or refreshed.
    pub templates: u64,
    /// Templates refused (scope full, too many fields, bad layout).
    pub templates_refused: u64,
    /// Options data records read (sampling and the like).
    pub options_records: u64,
    /// Data sets held while their template was missing.
    pub pending_held: u64,
    /// Held sets decoded once their template came.
    pub pending_decoded: u64,
    /// Held sets dropped: waited too long, or the scope's pending room was full.
    pub pending_dropped: u64,
    /// Exporter scopes forgotten to make room for new ones.
    pub scopes_evicted: u64,
}

/// Why a datagram stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset in the datagram.
    pub offset: usize,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for WireError {}

fn err<T>(offset: usize, what: impl Into<String>) -> Result<T, WireError> {
    Err(WireError {
        offset,
        what: what.into(),
    })
}

/// Counters of the reverse direction of an RFC 5103 biflow (or of an ASA-style
/// initiator/responder record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reverse {
    /// Packets from the destination to the source.
    pub pkts: u64,
    /// IP bytes from the destination to the source.
    pub bytes: u64,
    /// TCP flags seen from the destination.
    pub tcp_flags: u8,
}

/// One flow record as an exporter sent it: one direction, unless `reverse` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct UniFlow {
    /// Export format: 5, 9 or 10.
    pub version: u16,
    /// The exporter's address.
    pub exporter: IpAddr,
    /// v9 source id or IPFIX observation domain (v5: engine type << 8 | engine id).
    pub domain: u32,
    /// When the datagram arrived.
    pub arrival: Timestamp,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when the protocol has none).
    pub sport: u16,
    /// Destination port (0 when the protocol has none).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// ICMP type and code (`type << 8 | code`), when the protocol is ICMP/ICMPv6.
    pub icmp: Option<u16>,
    /// Packets, as exported (not scaled by sampling).
    pub pkts: u64,
    /// IP bytes, as exported.
    pub bytes: u64,
    /// Union of TCP flags.
    pub tcp_flags: u8,
    /// First packet.
    pub start: Timestamp,
    /// Last packet.
    pub end: Timestamp,
    /// One packet in `sampling` was counted (1: unsampled).
    pub sampling: u32,
    /// IPFIX flowEndReason (136), if given.
    pub end_reason: Option<u8>,
    /// IPFIX biflowDirection (239), if given.
    pub biflow_direction: Option<u8>,
    /// The reverse direction's counters (RFC 5103 reverse elements, or ASA
    /// initiator/responder counters).
    pub reverse: Option<Reverse>,
    /// VLAN id, if given.
    pub vlan: Option<u16>,
    /// Packet dynamics sent by a tunnelwatch exporter (PEN 32473), source side first.
    pub dynamics: Option<[SideDynamics; 2]>,
}

/// Per-side packet dynamics from tunnelwatch's own elements ([`tunnelwatch_model::ipfix`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideDynamics {
    /// Transport payload bytes, exact.
    pub payload: Option<u64>,
    /// Keystrokes typed.
    pub keystrokes: u64,
    /// Retransmissions.
    pub retransmissions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    id: u16,
    pen: u32,
    /// 65535: variable length (IPFIX).
    len: u16,
}

#[derive(Clone, Debug)]
struct Template {
    fields: Vec<Field>,
    /// Options template: the first `scope` fields are scope fields.
    options: bool,
    /// Length of one record when no field is variable-length.
    fixed_len: Option<usize>,
}

struct Held {
    template: u16,
    arrival: Timestamp,
    /// Header facts needed to decode later: sys_uptime (v9), export time in ms.
    ctx: Ctx,
    body: Vec<u8>,
}

#[derive(Default)]
struct Scope {
    templates: HashMap<u16, Template>,
    /// Sampling rate for the whole scope, from an options record without a sampler id.
    sampling: Option<u32>,
    /// Sampling rate per sampler / selector id.
    samplers: HashMap<u64, u32>,
    /// systemInitTimeMilliseconds from an options record (IPFIX sysUpTime fields).
    system_init_ms: Option<i64>,
    pending: VecDeque<Held>,
    pending_bytes: usize,
    last_heard: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ScopeKey {
    exporter: IpAddr,
    version: u16,
    domain: u32,
}

#[derive(Clone, Copy, Debug)]
struct Ctx {
    version: u16,
    exporter: IpAddr,
    domain: u32,
    arrival: Timestamp,
    /// Export time, milliseconds since the epoch.
    export_ms: i64,
    /// v9: router uptime at export, milliseconds.
    uptime_ms: Option<u32>,
}

/// The decoder and its template cache.
pub struct Decoder {
    limits: Limits,
    /// Decodes packet sections exported by packet-sampling exporters (IE 313, 315).
    packets: PacketDecoder,
    scopes: HashMap<ScopeKey, Scope>,
    stats: WireStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Unsigned big-endian integer of 1–8 bytes (longer: its last 8 bytes).
fn uint(v: &[u8]) -> u64 {
    let v = if v.len() > 8 { &v[v.len() - 8..] } else { v };
    v.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
}

impl Decoder {
    /// A decoder with these bounds.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            packets: PacketDecoder::new(DecoderConfig::default()),
            scopes: HashMap::new(),
            stats: WireStats::default(),
        }
    }

    /// What has been counted so far.
    pub fn stats(&self) -> &WireStats {
        &self.stats
    }

    /// Templates cached over all scopes.
    pub fn templates(&self) -> usize {
        self.scopes.values().map(|s| s.templates.len()).sum()
    }

    /// Decodes one datagram from `exporter` that arrived at `arrival`, appending its
    /// flow records to `out` (including held sets its templates release). On error the
    /// records decoded before the bad byte stay in `out`.
    pub fn decode(
        &mut self,
        exporter: IpAddr,
        arrival: Timestamp,
        d: &[u8],
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        self.stats.datagrams += 1;
        self.expire(arrival);
        let r = if d.len() < 2 {
            err(0, "shorter than a NetFlow header")
        } else {
            match be16(d, 0) {
                5 => self.v5(exporter, arrival, d, out),
                9 => self.v9(exporter, arrival, d, out),
                10 => self.ipfix(exporter, arrival, d, out),
                v => {
                    self.stats.unknown_version += 1;
                    return err(0, format!("version {v} is not NetFlow v5, v9 or IPFIX"));
                }
            }
        };
        if r.is_err() {
            self.stats.malformed += 1;
        }
        r
    }

    /// Drops held sets older than the pending time-to-live at `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let ttl = (self.limits.pending_ttl * 1e9) as i64;
        for s in self.scopes.values_mut() {
            while let Some(h) = s.pending.pop_front() {
                if now.nanos_since(h.arrival) <= ttl {
                    s.pending.push_front(h); // the oldest is young enough: all are
                    break;
                }
                s.pending_bytes -= h.body.len();
                self.stats.pending_dropped += 1;
            }
        }
    }

    /// Drops every held set (end of input), counting them.
    pub fn finish(&mut self) {
        for s in self.scopes.values_mut() {
            self.stats.pending_dropped += s.pending.len() as u64;
            s.pending.clear();
            s.pending_bytes = 0;
        }
    }

    fn v5(
        &mut self,
        exporter: IpAddr,
        arrival: Timestamp,
        d: &[u8],
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        if d.len() < 24 {
            return err(d.len(), "NetFlow v5 header needs 24 bytes");
        }
        let count = usize::from(be16(d, 2));
        let uptime = be32(d, 4);
        let export_ms = i64::from(be32(d, 8)) * 1000 + i64::from(be32(d, 12) / 1_000_000);
        let domain = u32::from(be16(d, 20) >> 8) << 8 | u32::from(d[21]);
        let interval = u32::from(be16(d, 22) & 0x3fff).max(1);
        for i in 0..count {
            let at = 24 + 48 * i;
            let Some(r) = d.get(at..at + 48) else {
                return err(
                    d.len(),
                    format!("NetFlow v5 header announces {count} records, datagram holds {i}"),
                );
            };
            let proto = r[38];
            let dport = be16(r, 34);
            let icmp = is_icmp(proto).then_some(dport);
            let ts =
                |sw: u32| Timestamp(ms_to_nanos(export_ms - i64::from(uptime.wrapping_sub(sw))));
            out.push(UniFlow {
                version: 5,
                exporter,
                domain,
                arrival,
                src: IpAddr::V4(Ipv4Addr::from(be32(r, 0))),
                dst: IpAddr::V4(Ipv4Addr::from(be32(r, 4))),
                sport: if icmp.is_some() { 0 } else { be16(r, 32) },
                dport: if icmp.is_some() { 0 } else { dport },
                proto,
                icmp,
                pkts: u64::from(be32(r, 16)),
                bytes: u64::from(be32(r, 20)),
                tcp_flags: r[37],
                start: ts(be32(r, 24)),
                end: ts(be32(r, 28)),
                sampling: interval,
                end_reason: None,
                biflow_direction: None,
                reverse: None,
                vlan: None,
                dynamics: None,
            });
            self.stats.records += 1;
        }
        Ok(())
    }

    fn v9(
        &mut self,
        exporter: IpAddr,
        arrival: Timestamp,
        d: &[u8],
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        if d.len() < 20 {
            return err(d.len(), "NetFlow v9 header needs 20 bytes");
        }
        let ctx = Ctx {
            version: 9,
            exporter,
            domain: be32(d, 16),
            arrival,
            export_ms: i64::from(be32(d, 8)) * 1000,
            uptime_ms: Some(be32(d, 4)),
        };
        self.sets(ctx, d, 20, d.len(), out)
    }

    fn ipfix(
        &mut self,
        exporter: IpAddr,
        arrival: Timestamp,
        d: &[u8],
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        if d.len() < 16 {
            return err(d.len(), "IPFIX header needs 16 bytes");
        }
        let len = usize::from(be16(d, 2));
        if len < 16 || len > d.len() {
            return err(
                2,
                format!(
                    "IPFIX message length {len} but the datagram has {}",
                    d.len()
                ),
            );
        }
        let ctx = Ctx {
            version: 10,
            exporter,
            domain: be32(d, 12),
            arrival,
            export_ms: i64::from(be32(d, 4)) * 1000,
            uptime_ms: None,
        };
        self.sets(ctx, d, 16, len, out)
    }

    fn scope(&mut self, ctx: &Ctx) -> &mut Scope {
        let key = ScopeKey {
            exporter: ctx.exporter,
            version: ctx.version,
            domain: ctx.domain,
        };
        if !self.scopes.contains_key(&key) && self.scopes.len() >= self.limits.max_scopes {
            if let Some(old) = self
                .scopes
                .iter()
                .min_by_key(|(_, s)| s.last_heard)
                .map(|(k, _)| *k)
            {
                if let Some(s) = self.scopes.remove(&old) {
                    self.stats.pending_dropped += s.pending.len() as u64;
                    self.stats.scopes_evicted += 1;
                }
            }
        }
        let s = self.scopes.entry(key).or_default();
        s.last_heard = s.last_heard.max(ctx.arrival);
        s
    }

    fn sets(
        &mut self,
        ctx: Ctx,
        d: &[u8],
        mut at: usize,
        end: usize,
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        let v9 = ctx.version == 9;
        while at + 4 <= end {
            let id = be16(d, at);
            let len = usize::from(be16(d, at + 2));
            if len < 4 || at + len > end {
                // v9 exporters pad the datagram; trailing zeros are not a set.
                if v9 && d[at..end].iter().all(|b| *b == 0) {
                    return Ok(());
                }
                return err(
                    at + 2,
                    format!("set {id} has length {len}, {} bytes left", end - at),
                );
            }
            let body = &d[at + 4..at + len];
            match (v9, id) {
                (true, 0) | (false, 2) => self.template_set(&ctx, body, at + 4, false, out)?,
                (true, 1) | (false, 3) => self.template_set(&ctx, body, at + 4, true, out)?,
                (_, 256..) => self.data(&ctx, id, body, at + 4, out)?,
                _ => {} // reserved set ids are skipped, as RFC 7011 asks
            }
            at += len;
        }
        Ok(())
    }

    fn template_set(
        &mut self,
        ctx: &Ctx,
        b: &[u8],
        base: usize,
        options: bool,
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        let v9 = ctx.version == 9;
        let mut at = 0;
        // A set ends with padding shorter than a template header.
        let min = if options { 6 } else { 4 };
        while at + min <= b.len() {
            let id = be16(b, at);
            let count = usize::from(be16(b, at + 2));
            if id == 0 && count == 0 {
                break; // padding
            }
            at += 4;
            let n = if options {
                let second = usize::from(be16(b, at));
                at += 2;
                if v9 {
                    // v9: scope length and option length in bytes, 4 per field.
                    (count + second) / 4
                } else {
                    // IPFIX: all fields, then how many of them are scope fields.
                    count
                }
            } else {
                count
            };
            if id < 256 {
                return err(base + at - 4, format!("template id {id} is below 256"));
            }
            if !v9 && !options && n == 0 {
                // IPFIX template withdrawal.
                self.scope(ctx).templates.remove(&id);
                continue;
            }
            let mut fields = Vec::with_capacity(n.min(self.limits.max_fields));
            for _ in 0..n {
                if at + 4 > b.len() {
                    return err(
                        base + at,
                        format!("template {id} ends inside its field list"),
                    );
                }
                let raw = be16(b, at);
                let len = be16(b, at + 2);
                at += 4;
                let (fid, pen) = if !v9 && raw & 0x8000 != 0 {
                    if at + 4 > b.len() {
                        return err(
                            base + at,
                            format!("template {id} ends inside an enterprise number"),
                        );
                    }
                    let pen = be32(b, at);
                    at += 4;
                    (raw & 0x7fff, pen)
                } else {
                    (raw, 0)
                };
                if v9 && len == 65535 {
                    return err(base + at - 2, "NetFlow v9 has no variable-length fields");
                }
                fields.push(Field { id: fid, pen, len });
            }
            let fixed_len = fields.iter().try_fold(0usize, |a, f| {
                (f.len != 65535).then_some(a + usize::from(f.len))
            });
            if n > self.limits.max_fields || n == 0 || fixed_len == Some(0) {
                self.stats.templates_refused += 1;
                continue;
            }
            let max = self.limits.max_templates;
            let s = self.scope(ctx);
            if !s.templates.contains_key(&id) && s.templates.len() >= max {
                self.stats.templates_refused += 1;
                continue;
            }
            s.templates.insert(
                id,
                Template {
                    fields,
                    options,
                    fixed_len,
                },
            );
            self.stats.templates += 1;
            self.release(ctx, id, out);
        }
        Ok(())
    }

    /// Decodes the sets held for template `id` of this scope.
    fn release(&mut self, ctx: &Ctx, id: u16, out: &mut Vec<UniFlow>) {
        let s = self.scope(ctx);
        if !s.pending.iter().any(|h| h.template == id) {
            return;
        }
        let (ready, rest): (VecDeque<Held>, VecDeque<Held>) = std::mem::take(&mut s.pending)
            .into_iter()
            .partition(|h| h.template == id);
        s.pending = rest;
        s.pending_bytes = s.pending.iter().map(|h| h.body.len()).sum();
        for h in ready {
            self.stats.pending_decoded += 1;
            // A held set was checked for framing when it came; a record error now only
            // stops that set, and is counted.
            if self.data(&h.ctx, h.template, &h.body, 0, out).is_err() {
                self.stats.malformed += 1;
            }
        }
    }

    fn data(
        &mut self,
        ctx: &Ctx,
        id: u16,
        b: &[u8],
        base: usize,
        out: &mut Vec<UniFlow>,
    ) -> Result<(), WireError> {
        let limits = (self.limits.max_pending, self.limits.max_pending_bytes);
        let s = self.scope(ctx);
        let Some(t) = s.templates.get(&id).cloned() else {
            let room = s.pending.len() < limits.0 && s.pending_bytes + b.len() <= limits.1;
            if room {
                s.pending_bytes += b.len();
                s.pending.push_back(Held {
                    template: id,
                    arrival: ctx.arrival,
                    ctx: *ctx,
                    body: b.to_vec(),
                });
                self.stats.pending_held += 1;
            } else {
                self.stats.pending_dropped += 1;
            }
            return Ok(());
        };
        let mut at = 0;
        let min = t.fixed_len.unwrap_or(1);
        // One buffer for every record of the set.
        let mut values: Vec<(Field, &[u8])> = Vec::with_capacity(t.fields.len());
        while at + min <= b.len() {
            let start = at;
            values.clear();
            for f in &t.fields {
                let len = if f.len == 65535 {
                    let Some(&l) = b.get(at) else {
                        return err(
                            base + at,
                            format!("template {id}: record ends at a length byte"),
                        );
                    };
                    at += 1;
                    if l == 255 {
                        if at + 2 > b.len() {
                            return err(
                                base + at,
                                format!("template {id}: record ends at a length"),
                            );
                        }
                        at += 2;
                        usize::from(be16(b, at - 2))
                    } else {
                        usize::from(l)
                    }
                } else {
                    usize::from(f.len)
                };
                let Some(v) = b.get(at..at + len) else {
                    if t.fixed_len.is_none() && b[start..].iter().all(|x| *x == 0) {
                        return Ok(()); // padding after variable-length records
                    }
                    return err(
                        base + at,
                        format!("template {id}: field {} runs past its set", f.id),
                    );
                };
                values.push((*f, v));
                at += len;
            }
            if t.options {
                self.options(ctx, &values);
            } else {
                match self.record(ctx, &values) {
                    Some(r) => {
                        self.stats.records += 1;
                        out.push(r);
                    }
                    None => self.stats.records_without_flow += 1,
                }
            }
            if at == start {
                break;
            }
        }
        Ok(())
    }

    fn options(&mut self, ctx: &Ctx, values: &[(Field, &[u8])]) {
        self.stats.options_records += 1;
        let (mut sampler, mut sampling, mut init) = (None, Sampling::default(), None);
        for (f, v) in values {
            if f.pen != 0 {
                continue;
            }
            match f.id {
                48 | 302 => sampler = Some(uint(v)),
                160 => init = Some(ms(uint(v))),
                id => sampling.take(id, uint(v)),
            }
        }
        let rate = sampling.rate();
        let s = self.scope(ctx);
        if let Some(i) = init {
            s.system_init_ms = Some(i);
        }
        if let Some(r) = rate {
            match sampler {
                Some(id) => {
                    if s.samplers.len() < 4096 || s.samplers.contains_key(&id) {
                        s.samplers.insert(id, r);
                    }
                }
                None => s.sampling = Some(r),
            }
        }
    }

    fn record(&self, ctx: &Ctx, values: &[(Field, &[u8])]) -> Option<UniFlow> {
        let (mut src, mut dst) = (None, None);
        let (mut sport, mut dport, mut proto) = (0u16, 0u16, 0u8);
        let (mut pkts, mut bytes, mut flags) = (None, None, 0u8);
        let (mut icmp, mut icmp_t, mut icmp_c) = (None, None, None);
        let (mut first_up, mut last_up) = (None, None);
        let (mut start, mut end) = (None::<i64>, None::<i64>);
        let (mut d_start, mut d_end) = (None, None);
        let (mut sampler, mut sampling) = (None, Sampling::default());
        let (mut end_reason, mut biflow_direction, mut vlan, mut init) = (None, None, None, None);
        let mut rev = Reverse::default();
        let mut has_rev = false;
        let mut own: Option<[SideDynamics; 2]> = None;
        for (f, v) in values {
            let n = || uint(v);
            if f.pen == ipfix::PEN {
                let d = own.get_or_insert_default();
                let side = &mut d[usize::from(f.id & ipfix::REVERSE_BIT != 0)];
                match f.id & !ipfix::REVERSE_BIT {
                    ipfix::PAYLOAD_BYTES => side.payload = Some(n()),
                    ipfix::KEYSTROKES => side.keystrokes = n(),
                    ipfix::RETRANSMISSIONS => side.retransmissions = n(),
                    _ => {}
                }
                continue;
            }
            if f.pen == REVERSE_PEN {
                match f.id {
                    1 | 85 | 232 => max_into(&mut rev.bytes, n(), &mut has_rev),
                    2 | 86 | 299 => max_into(&mut rev.pkts, n(), &mut has_rev),
                    6 => {
                        rev.tcp_flags |= n() as u8;
                        has_rev = true;
                    }
                    _ => {}
                }
                continue;
            }
            if f.pen != 0 {
                continue;
            }
            match f.id {
                1 | 85 | 231 => bytes = Some(bytes.unwrap_or(0).max(n())),
                2 | 86 | 298 => pkts = Some(pkts.unwrap_or(0).max(n())),
                232 => max_into(&mut rev.bytes, n(), &mut has_rev),
                299 => max_into(&mut rev.pkts, n(), &mut has_rev),
                4 => proto = n() as u8,
                6 => flags |= n() as u8,
                7 => sport = n() as u16,
                11 => dport = n() as u16,
                8 | 12 if v.len() == 4 => {
                    let a = IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]));
                    if f.id == 8 {
                        src = Some(a)
                    } else {
                        dst = Some(a)
                    }
                }
                27 | 28 => {
                    let Ok(b) = <[u8; 16]>::try_from(*v) else {
                        continue; // not an IPv6 address's length
                    };
                    let a = IpAddr::V6(Ipv6Addr::from(b));
                    if f.id == 27 {
                        src = Some(a)
                    } else {
                        dst = Some(a)
                    }
                }
                32 | 139 => icmp = Some(n() as u16),
                176 | 178 => icmp_t = Some(n() as u8),
                177 | 179 => icmp_c = Some(n() as u8),
                22 => first_up = Some(n() as u32),
                21 => last_up = Some(n() as u32),
                150 => start = Some(ms(n().saturating_mul(1000))),
                151 => end = Some(ms(n().saturating_mul(1000))),
                152 => start = Some(ms(n())),
                153 => end = Some(ms(n())),
                154 | 156 => start = Some(ntp_ms(n())),
                155 | 157 => end = Some(ntp_ms(n())),
                158 => d_start = Some(ms(n())),
                159 => d_end = Some(ms(n())),
                160 => init = Some(ms(n())),
                48 | 302 => sampler = Some(n()),
                34 | 35 | 50 | 305..=310 => sampling.take(f.id, n()),
                136 => end_reason = Some(n() as u8),
                239 => biflow_direction = Some(n() as u8),
                58 | 243 => vlan = Some(n() as u16 & 0x0fff),
                _ => {}
            }
        }
        if src.is_none() {
            // Packet sampling (RFC 7133): the record carries the packet's first bytes.
            let section = values
                .iter()
                .find(|(f, _)| f.pen == 0 && matches!(f.id, 313 | 315));
            let (f, v) = section?;
            let mut view = Decoded::default();
            if f.id == 315 {
                self.packets.decode(LinkType::ETHERNET, v, &mut view);
            } else {
                self.packets
                    .decode_ip(v, v.first()? >> 4, Encap::None, &mut view);
            }
            let ip = view.layers.first()?;
            (src, dst, proto) = (Some(ip.src), Some(ip.dst), ip.proto.0);
            (sport, dport) = ip.ports();
            match &ip.transport {
                Transport::Tcp(t) => flags = t.flags.0 as u8,
                Transport::Icmp(i) => icmp = Some(u16::from(i.icmp_type) << 8 | u16::from(i.code)),
                _ => {}
            }
            pkts = pkts.or(Some(1));
            bytes = bytes.or(Some(u64::from(ip.ip_len)));
        }
        let (src, dst) = (src?, dst?);
        let s = self.scopes.get(&ScopeKey {
            exporter: ctx.exporter,
            version: ctx.version,
            domain: ctx.domain,
        });
        let sampling = sampling
            .rate()
            .map(u64::from)
            .or_else(|| {
                sampler.and_then(|id| s.and_then(|s| s.samplers.get(&id).map(|r| u64::from(*r))))
            })
            .or_else(|| s.and_then(|s| s.sampling.map(u64::from)))
            .unwrap_or(1)
            .clamp(1, u64::from(u32::MAX)) as u32;
        // sysUpTime fields: v9 against the header's uptime; IPFIX against
        // systemInitTimeMilliseconds (from the record or an options record). The
        // 32-bit uptime wraps (every 49.7 days, or at once for an exporter replaying
        // packets older than its start, as softflowd -r does): a flow cannot start
        // after it was exported, so such a time is taken one wrap earlier.
        let up = |u: u32| -> Option<i64> {
            match ctx.uptime_ms {
                Some(now_up) => Some(ctx.export_ms - i64::from(now_up.wrapping_sub(u))),
                None => init.or(s.and_then(|s| s.system_init_ms)).map(|i| {
                    let t = i.saturating_add(i64::from(u));
                    if t > ctx.export_ms + 1000 {
                        t - (1 << 32)
                    } else {
                        t
                    }
                }),
            }
        };
        let start = start
            .or_else(|| first_up.and_then(up))
            .or_else(|| d_start.map(|us| ctx.export_ms - us / 1000));
        let end = end
            .or_else(|| last_up.and_then(up))
            .or_else(|| d_end.map(|us| ctx.export_ms - us / 1000));
        let end_ms = end.or(start).unwrap_or(ctx.export_ms);
        let start_ms = start.unwrap_or(end_ms).min(end_ms);
        let icmp = is_icmp(proto).then(|| {
            icmp.or(icmp_t.map(|t| u16::from(t) << 8 | u16::from(icmp_c.unwrap_or(0))))
                .unwrap_or(dport)
        });
        if icmp.is_some() {
            (sport, dport) = (0, 0);
        }
        Some(UniFlow {
            version: ctx.version,
            exporter: ctx.exporter,
            domain: ctx.domain,
            arrival: ctx.arrival,
            src,
            dst,
            sport,
            dport,
            proto,
            icmp,
            pkts: pkts.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
            tcp_flags: flags,
            start: Timestamp(ms_to_nanos(start_ms)),
            end: Timestamp(ms_to_nanos(end_ms)),
            sampling,
            end_reason,
            biflow_direction,
            reverse: has_rev.then_some(rev),
            vlan,
            dynamics: own,
        })
    }
}

/// Sampling facts of a record or an options record.
#[derive(Default)]
struct Sampling {
    /// v9 SAMPLING_INTERVAL (34) or samplerRandomInterval (50).
    interval: Option<u64>,
    /// samplingPacketInterval and samplingPacketSpace (305, 306).
    packets: (Option<u64>, Option<u64>),
    /// samplingSize and samplingPopulation (309, 310).
    n_of: (Option<u64>, Option<u64>),
}

impl Sampling {
    fn take(&mut self, id: u16, v: u64) {
        match id {
            34 | 50 => self.interval = Some(v),
            305 => self.packets.0 = Some(v),
            306 => self.packets.1 = Some(v),
            309 => self.n_of.0 = Some(v),
            310 => self.n_of.1 = Some(v),
            _ => {}
        }
    }

    /// One packet in how many was counted, if the fields say.
    fn rate(&self) -> Option<u32> {
        let r = match (self.n_of, self.packets) {
            ((Some(n), Some(of)), _) if n > 0 => of / n,
            (_, (Some(i), Some(space))) if i > 0 => i.saturating_add(space) / i,
            _ => self.interval?,
        };
        Some(r.clamp(1, u64::from(u32::MAX)) as u32)
    }
}

/// Keeps the largest of the values given for one reverse counter (delta and total
/// elements may both be present) and notes that the record has a reverse side.
fn max_into(slot: &mut u64, v: u64, has: &mut bool) {
    *slot = (*slot).max(v);
    *has = true;
}

fn is_icmp(proto: u8) -> bool {
    proto == 1 || proto == 58
}

/// Milliseconds since the epoch this late are nonsense from an exporter; they are
/// clipped here (year 2255) so that time arithmetic never overflows.
const MAX_MS: i64 = 9_000_000_000_000;

/// An exported millisecond count, clipped to what time arithmetic can hold.
fn ms(v: u64) -> i64 {
    v.min(MAX_MS as u64) as i64
}

fn ms_to_nanos(ms: i64) -> i64 {
    ms.clamp(0, MAX_MS) * 1_000_000
}

/// NTP timestamp (seconds since 1900 and a binary fraction) to Unix milliseconds.
fn ntp_ms(v: u64) -> i64 {
    const NTP_UNIX: i64 = 2_208_988_800;
    let secs = (v >> 32) as i64 - NTP_UNIX;
    let frac = (v & 0xffff_ffff) as i64;
    secs * 1000 + ((frac * 1000) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: &str = "192.0.2.9";

    fn exporter() -> IpAddr {
        EXP.parse().unwrap()
    }

    /// An IPFIX message around `sets`.
    fn ipfix(domain: u32, export: u32, sets: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = sets.concat();
        let mut m = vec![0, 10];
        m.extend(((16 + body.len()) as u16).to_be_bytes());
        m.extend(export.to_be_bytes());
        m.extend(0u32.to_be_bytes());
        m.extend(domain.to_be_bytes());
        m.extend(body);
        m
    }

    fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend(((4 + body.len()) as u16).to_be_bytes());
        s.extend(body);
        s
    }

    /// Template 256: src v4, dst v4, sport, dport, proto, packets (4), octets (4),
    /// flowStart/EndMilliseconds, and a variable-length field (applicationName).
    fn template() -> Vec<u8> {
        let mut t = vec![1, 0, 0, 10];
        for (id, len) in [
            (8u16, 4u16),
            (12, 4),
            (7, 2),
            (11, 2),
            (4, 1),
            (2, 4),
            (1, 4),
            (152, 8),
            (153, 8),
            (96, 65535),
        ] {
            t.extend(id.to_be_bytes());
            t.extend(len.to_be_bytes());
        }
        set(2, &t)
    }

    fn data(n: u8) -> Vec<u8> {
        let mut d = Vec::new();
        for i in 0..n {
            d.extend([10, 0, 0, 1, 10, 0, 0, 2]);
            d.extend((40000u16 + u16::from(i)).to_be_bytes());
            d.extend(443u16.to_be_bytes());
            d.push(6);
            d.extend(5u32.to_be_bytes());
            d.extend(700u32.to_be_bytes());
            d.extend(1_700_000_000_000u64.to_be_bytes());
            d.extend(1_700_000_001_500u64.to_be_bytes());
            d.extend([3, b'w', b'e', b'b']);
        }
        set(256, &d)
    }

    fn decode(dec: &mut Decoder, at: i64, m: &[u8]) -> (Vec<UniFlow>, Result<(), WireError>) {
        let mut out = Vec::new();
        let r = dec.decode(exporter(), Timestamp(at * 1_000_000_000), m, &mut out);
        (out, r)
    }

    #[test]
    fn ipfix_records_decode_with_variable_length_fields() {
        let mut dec = Decoder::default();
        let (out, r) = decode(
            &mut dec,
            0,
            &ipfix(7, 1_700_000_002, &[template(), data(2)]),
        );
        r.unwrap();
        assert_eq!(out.len(), 2);
        let f = &out[1];
        assert_eq!(
            (f.src.to_string(), f.sport, f.dport, f.proto),
            ("10.0.0.1".into(), 40001, 443, 6)
        );
        assert_eq!((f.pkts, f.bytes, f.domain), (5, 700, 7));
        assert_eq!(f.start.as_nanos(), 1_700_000_000_000_000_000);
        assert_eq!(f.end.nanos_since(f.start), 1_500_000_000);
    }

    #[test]
    fn data_before_its_template_is_held_then_decoded_or_dropped_after_the_ttl() {
        let mut dec = Decoder::default();
        let (out, r) = decode(&mut dec, 0, &ipfix(1, 0, &[data(3)]));
        r.unwrap();
        assert!(out.is_empty());
        assert_eq!(dec.stats().pending_held, 1);
        let (out, _) = decode(&mut dec, 10, &ipfix(1, 0, &[template()]));
        assert_eq!(out.len(), 3, "held set decoded when its template came");
        assert_eq!(dec.stats().pending_decoded, 1);
        // Another scope (domain 2) never gets its template: dropped after 60 s.
        decode(&mut dec, 20, &ipfix(2, 0, &[data(1)])).1.unwrap();
        dec.expire(Timestamp(79 * 1_000_000_000));
        assert_eq!(dec.stats().pending_dropped, 0);
        dec.expire(Timestamp(81 * 1_000_000_000));
        assert_eq!(dec.stats().pending_dropped, 1);
    }

    #[test]
    fn templates_are_kept_per_observation_domain() {
        let mut dec = Decoder::default();
        decode(&mut dec, 0, &ipfix(1, 0, &[template()])).1.unwrap();
        let (out, _) = decode(&mut dec, 0, &ipfix(2, 0, &[data(1)]));
        assert!(out.is_empty(), "domain 2 has no template 256");
        assert_eq!(dec.stats().pending_held, 1);
    }

    #[test]
    fn a_template_flood_is_bounded_and_counted() {
        let mut dec = Decoder::new(Limits {
            max_templates: 8,
            ..Limits::default()
        });
        let mut body = Vec::new();
        for id in 256u16..356 {
            body.extend(id.to_be_bytes());
            body.extend([0, 1, 0, 8, 0, 4]);
        }
        decode(&mut dec, 0, &ipfix(0, 0, &[set(2, &body)]))
            .1
            .unwrap();
        assert_eq!(dec.templates(), 8);
        assert_eq!(dec.stats().templates_refused, 92);
    }

    #[test]
    fn malformed_sets_stop_the_datagram_but_keep_the_records_before_them() {
        let mut dec = Decoder::default();
        let mut bad = set(256, &[0; 8]);
        bad[3] = 200; // set length beyond the message
        let m = ipfix(0, 0, &[template(), data(2), bad]);
        let (out, r) = decode(&mut dec, 0, &m);
        assert_eq!(out.len(), 2);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("set 256 has length 200"), "{e}");
        assert_eq!(e.offset, m.len() - 12 + 2, "the bad set's length field");
        assert_eq!(dec.stats().malformed, 1);
        let (_, r) = decode(&mut dec, 0, &[0, 7, 1, 2]);
        assert!(r.unwrap_err().what.contains("version 7"));
    }

    #[test]
    fn netflow_v5_records_take_their_times_from_the_uptime() {
        let mut m = vec![0, 5, 0, 1];
        m.extend(100_000u32.to_be_bytes()); // uptime 100 s
        m.extend(1_700_000_000u32.to_be_bytes());
        m.extend(0u32.to_be_bytes());
        m.extend(0u32.to_be_bytes());
        m.extend([0, 0]);
        m.extend((0x4000u16 | 10).to_be_bytes()); // 1 in 10
        let mut r = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 2];
        r.extend(4u32.to_be_bytes());
        r.extend(200u32.to_be_bytes());
        r.extend(90_000u32.to_be_bytes()); // first: 10 s before export
        r.extend(99_000u32.to_be_bytes());
        r.extend([0x9c, 0x40, 0, 53, 0, 0x12, 17, 0]);
        r.extend([0; 8]);
        m.extend(r);
        let mut dec = Decoder::default();
        let (out, res) = decode(&mut dec, 0, &m);
        res.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start.as_nanos(), 1_699_999_990 * 1_000_000_000);
        assert_eq!((out[0].dport, out[0].proto, out[0].sampling), (53, 17, 10));
        // Truncated: the header announces two records.
        m[3] = 2;
        let (out, res) = decode(&mut dec, 0, &m);
        assert_eq!(out.len(), 1);
        assert!(res.unwrap_err().what.contains("announces 2 records"));
    }
}
