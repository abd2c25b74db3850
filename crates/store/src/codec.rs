//! The stored form of a flow record: a compact binary encoding of every field of
//! [`FlowRecord`], so that ingest does not write JSON (which cost ~2.2 µs of the ~7 µs
//! a record took to store, and made LZ4 compress five times more bytes).
//!
//! Queries decode it back into the record, and JSON comes from the record as `read
//! --flows` writes it, so the text is byte for byte what the sensor's record gives.
//! Times are kept to the nanosecond and floats as their 8 bytes, so nothing is rounded
//! that the JSON would not round the same way.
//!
//! A record's `uid` and `community_id` are not in it: the meta row beside it holds them
//! (random text, they were a fifth of the stored bytes twice over), and [`decode`]
//! takes them from there.
//!
//! Layout: unsigned integers as LEB128 varints, signed ones zigzag first, floats as 8
//! bytes little-endian, texts as a varint length and UTF-8, lists as a varint count and
//! their items, addresses as a byte 4 or 6 and 4 or 16 bytes, and each struct's
//! optional fields behind one presence varint (bit *i* set: the *i*-th optional field is
//! there). Every struct is taken apart field by field without `..`, so a field added
//! to the model is a compile error here until it is stored. The format is versioned by
//! the block's meta format byte (`blocks.rs`); [`decode`] checks every length and
//! reports damage as an error, never a panic (fuzz target `store_blocks`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tunnelwatch_model::{
    AppFacts, Bursts, Cause, ConnState, DirectionStats, DnsFacts, Dynamics, ExportFacts,
    FlowRecord, HttpFacts, IcmpFacts, Letters, SignatureHit, SshFacts, Stats, TcpFacts,
    TcpHeaderFacts, TcpOptionFault, Timestamp, TlsFacts,
};

/// Appends the stored form of `r` (all but its `uid` and `community_id`) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, r: &FlowRecord) {
    let FlowRecord {
        uid,
        community_id,
        ts,
        last_ts,
        duration,
        proto,
        ip_proto,
        orig_h,
        orig_p,
        resp_h,
        resp_p,
        service,
        orig_pkts,
        resp_pkts,
        orig_bytes,
        resp_bytes,
        orig_ip_bytes,
        resp_ip_bytes,
        conn_state,
        history,
        cause,
        missed_bytes,
        vlan,
        inner_vlan,
        tunnel_parents,
        signatures,
        dynamics,
        tcp,
        icmp,
        app,
        export,
    } = r;
    let mut w = W(out);
    w.present(&[
        service.is_some(),
        vlan.is_some(),
        inner_vlan.is_some(),
        tcp.is_some(),
        icmp.is_some(),
        app.is_some(),
        export.is_some(),
    ]);
    // Kept in the meta row.
    let _ = (uid, community_id);
    w.int(ts.0);
    w.int(last_ts.0.wrapping_sub(ts.0));
    w.f64(*duration);
    w.str(proto);
    w.uint(u64::from(*ip_proto));
    w.addr(orig_h);
    w.uint(u64::from(*orig_p));
    w.addr(resp_h);
    w.uint(u64::from(*resp_p));
    if let Some(s) = service {
        w.str(s);
    }
    for v in [
        orig_pkts,
        resp_pkts,
        orig_bytes,
        resp_bytes,
        orig_ip_bytes,
        resp_ip_bytes,
        missed_bytes,
    ] {
        w.uint(*v);
    }
    w.uint(conn_state_code(*conn_state));
    w.str(history);
    w.uint(cause_code(*cause));
    for v in [vlan, inner_vlan].into_iter().flatten() {
        w.uint(u64::from(*v));
    }
    w.strs(tunnel_parents);
    w.uint(signatures.len() as u64);
    for SignatureHit { name, dir, offset } in signatures {
        w.str(name);
        w.str(dir);
        w.uint(*offset);
    }
    let Dynamics { orig, resp } = dynamics;
    w.direction(orig);
    w.direction(resp);
    if let Some(t) = tcp {
        w.tcp(t);
    }
    if let Some(i) = icmp {
        w.icmp(i);
    }
    if let Some(a) = app {
        w.app(a);
    }
    if let Some(e) = export {
        w.export(e);
    }
}

/// The record stored as `buf` (all of it), with its `uid` and `community_id` from its
/// meta row.
pub(crate) fn decode(buf: &[u8], uid: &str, community_id: &str) -> Result<FlowRecord, String> {
    let mut r = R::new(buf);
    let p = r.present()?;
    let (uid, community_id) = (uid.to_string(), community_id.to_string());
    let ts = r.int()?;
    let last_ts = Timestamp(ts.wrapping_add(r.int()?));
    let ts = Timestamp(ts);
    let duration = r.f64()?;
    let proto = r.str()?;
    let ip_proto = r.small("ip_proto")?;
    let orig_h = r.addr()?;
    let orig_p = r.small("orig_p")?;
    let resp_h = r.addr()?;
    let resp_p = r.small("resp_p")?;
    let service = p.has(0).then(|| r.str()).transpose()?;
    let mut c = [0u64; 7];
    for v in &mut c {
        *v = r.uint()?;
    }
    let conn_state = conn_state_of(r.uint()?)?;
    let history = r.str()?;
    let cause = cause_of(r.uint()?)?;
    let vlan = p.has(1).then(|| r.small("vlan")).transpose()?;
    let inner_vlan = p.has(2).then(|| r.small("inner_vlan")).transpose()?;
    let tunnel_parents = r.strs()?;
    let n = r.count()?;
    let mut signatures = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        signatures.push(SignatureHit {
            name: r.str()?,
            dir: r.str()?,
            offset: r.uint()?,
        });
    }
    let dynamics = Dynamics {
        orig: r.direction()?,
        resp: r.direction()?,
    };
    let tcp = p.has(3).then(|| r.tcp()).transpose()?;
    let icmp = p.has(4).then(|| r.icmp()).transpose()?;
    let app = p.has(5).then(|| r.app().map(Box::new)).transpose()?;
    let export = p.has(6).then(|| r.export()).transpose()?;
    if !r.done() {
        return Err(format!(
            "record of {} bytes ends at byte {}",
            buf.len(),
            r.at
        ));
    }
    let [orig_pkts, resp_pkts, orig_bytes, resp_bytes, orig_ip_bytes, resp_ip_bytes, missed_bytes] =
        c;
    Ok(FlowRecord {
        uid,
        community_id,
        ts,
        last_ts,
        duration,
        proto,
        ip_proto,
        orig_h,
        orig_p,
        resp_h,
        resp_p,
        service,
        orig_pkts,
        resp_pkts,
        orig_bytes,
        resp_bytes,
        orig_ip_bytes,
        resp_ip_bytes,
        conn_state,
        history,
        cause,
        missed_bytes,
        vlan,
        inner_vlan,
        tunnel_parents,
        signatures,
        dynamics,
        tcp,
        icmp,
        app,
        export,
    })
}

const CONN_STATES: [ConnState; 13] = [
    ConnState::S0,
    ConnState::S1,
    ConnState::SF,
    ConnState::REJ,
    ConnState::S2,
    ConnState::S3,
    ConnState::RSTO,
    ConnState::RSTR,
    ConnState::RSTOS0,
    ConnState::RSTRH,
    ConnState::SH,
    ConnState::SHR,
    ConnState::OTH,
];

const CAUSES: [Cause; 4] = [Cause::End, Cause::Status, Cause::Timeout, Cause::Evicted];

fn conn_state_code(s: ConnState) -> u64 {
    CONN_STATES.iter().position(|&x| x == s).unwrap_or(0) as u64
}

fn conn_state_of(code: u64) -> Result<ConnState, String> {
    usize::try_from(code)
        .ok()
        .and_then(|i| CONN_STATES.get(i).copied())
        .ok_or_else(|| format!("conn_state code {code} is not known"))
}

fn cause_code(c: Cause) -> u64 {
    CAUSES.iter().position(|&x| x == c).unwrap_or(0) as u64
}

fn cause_of(code: u64) -> Result<Cause, String> {
    usize::try_from(code)
        .ok()
        .and_then(|i| CAUSES.get(i).copied())
        .ok_or_else(|| format!("cause code {code} is not known"))
}

/// The writer (also of compact rollup segments, `rollup.rs`).
pub(crate) struct W<'a>(pub(crate) &'a mut Vec<u8>);

impl W<'_> {
    pub(crate) fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub(crate) fn int(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn strs(&mut self, v: &[impl AsRef<str>]) {
        self.uint(v.len() as u64);
        for s in v {
            self.str(s.as_ref());
        }
    }

    fn opt_str(&mut self, s: &Option<String>) {
        if let Some(s) = s {
            self.str(s);
        }
    }

    fn present(&mut self, bits: &[bool]) {
        let mask = bits
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, &b)| m | (u64::from(b) << i));
        self.uint(mask);
    }

    fn addr(&mut self, a: &IpAddr) {
        match a {
            IpAddr::V4(v4) => {
                self.0.push(4);
                self.0.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.0.push(6);
                self.0.extend_from_slice(&v6.octets());
            }
        }
    }

    fn stats(&mut self, s: &Stats) {
        let Stats {
            mean,
            min,
            max,
            stddev,
        } = s;
        for v in [mean, min, max, stddev] {
            self.f64(*v);
        }
    }

    fn direction(&mut self, d: &DirectionStats) {
        let DirectionStats {
            payload_bytes,
            link_bytes,
            flags,
            first_flags,
            iat,
            size,
            idle_periods,
            zero_windows,
            retransmissions,
            ttl_min,
            ttl_max,
            fragments,
            truncated,
            keystrokes,
            bursts,
            onsets,
        } = d;
        self.present(&[
            iat.is_some(),
            size.is_some(),
            ttl_min.is_some(),
            ttl_max.is_some(),
            bursts.is_some(),
        ]);
        for v in [
            payload_bytes,
            link_bytes,
            idle_periods,
            zero_windows,
            retransmissions,
            fragments,
            truncated,
            keystrokes,
        ] {
            self.uint(*v);
        }
        self.str(flags);
        self.strs(first_flags);
        for s in [iat, size].into_iter().flatten() {
            self.stats(s);
        }
        for t in [ttl_min, ttl_max].into_iter().flatten() {
            self.uint(u64::from(*t));
        }
        if let Some(Bursts {
            count,
            small,
            typed,
        }) = bursts
        {
            for v in [count, small, typed] {
                self.uint(*v);
            }
        }
        self.uint(onsets.len() as u64);
        for v in onsets {
            self.f64(*v);
        }
    }

    fn header(&mut self, h: &TcpHeaderFacts) {
        let TcpHeaderFacts {
            reserved_bits,
            urg_without_pointer,
            pointer_without_urg,
            bad_options,
            first_bad_option,
            zero_window_run,
        } = h;
        for v in [
            reserved_bits,
            urg_without_pointer,
            pointer_without_urg,
            bad_options,
            zero_window_run,
        ] {
            self.uint(*v);
        }
        // 0: none; then the fault's kind and its bytes.
        match first_bad_option {
            None => self.uint(0),
            Some(TcpOptionFault::Unknown { kind, offset }) => {
                self.uint(1);
                self.0.extend_from_slice(&[*kind, *offset]);
            }
            Some(TcpOptionFault::Truncated { kind, offset }) => {
                self.uint(2);
                self.0.extend_from_slice(&[*kind, *offset]);
            }
            Some(TcpOptionFault::BadLength { kind, offset, len }) => {
                self.uint(3);
                self.0.extend_from_slice(&[*kind, *offset, *len]);
            }
        }
    }

    fn tcp(&mut self, t: &TcpFacts) {
        let TcpFacts {
            syn_synack,
            synack_ack,
            teardown,
            orig_mss,
            resp_mss,
            orig_wscale,
            resp_wscale,
            first_packets,
            orig_header,
            resp_header,
            ack_storm_run,
            first_data,
        } = t;
        self.present(&[
            syn_synack.is_some(),
            synack_ack.is_some(),
            teardown.is_some(),
            orig_mss.is_some(),
            resp_mss.is_some(),
            orig_wscale.is_some(),
            resp_wscale.is_some(),
            first_data.is_some(),
        ]);
        for v in [syn_synack, synack_ack, teardown].into_iter().flatten() {
            self.f64(*v);
        }
        for v in [orig_mss, resp_mss].into_iter().flatten() {
            self.uint(u64::from(*v));
        }
        for v in [orig_wscale, resp_wscale].into_iter().flatten() {
            self.uint(u64::from(*v));
        }
        self.strs(first_packets);
        self.header(orig_header);
        self.header(resp_header);
        self.uint(*ack_storm_run);
        self.opt_str(first_data);
    }

    fn icmp(&mut self, i: &IcmpFacts) {
        let IcmpFacts {
            errors,
            last_error_type,
            last_error_code,
            last_error_from,
            echo_ids,
            payload_entropy,
            entropy_samples,
        } = i;
        self.present(&[
            last_error_type.is_some(),
            last_error_code.is_some(),
            last_error_from.is_some(),
            payload_entropy.is_some(),
        ]);
        self.uint(*errors);
        for v in [last_error_type, last_error_code].into_iter().flatten() {
            self.uint(u64::from(*v));
        }
        if let Some(a) = last_error_from {
            self.addr(a);
        }
        self.uint(echo_ids.len() as u64);
        for v in echo_ids {
            self.uint(u64::from(*v));
        }
        if let Some(v) = payload_entropy {
            self.f64(*v);
        }
        self.uint(*entropy_samples);
    }

    fn app(&mut self, a: &AppFacts) {
        let AppFacts {
            http,
            tls,
            ssh,
            dns,
        } = a;
        self.present(&[http.is_some(), tls.is_some(), ssh.is_some(), dns.is_some()]);
        if let Some(HttpFacts {
            method,
            uri,
            version,
            host,
            user_agent,
            status,
            resp_version,
            after_connect,
        }) = http.as_deref()
        {
            let texts = [
                method,
                uri,
                version,
                host,
                user_agent,
                resp_version,
                after_connect,
            ];
            let mut bits: Vec<bool> = texts.iter().map(|t| t.is_some()).collect();
            bits.push(status.is_some());
            self.present(&bits);
            for t in texts {
                self.opt_str(t);
            }
            if let Some(s) = status {
                self.uint(u64::from(*s));
            }
        }
        if let Some(TlsFacts {
            version,
            sni,
            alpn,
            ja3,
            ja3_hash,
            ja4,
            server_version,
            server_cipher,
        }) = tls.as_deref()
        {
            let texts = [
                version,
                sni,
                ja3,
                ja3_hash,
                ja4,
                server_version,
                server_cipher,
            ];
            let bits: Vec<bool> = texts.iter().map(|t| t.is_some()).collect();
            self.present(&bits);
            for t in texts {
                self.opt_str(t);
            }
            self.strs(alpn);
        }
        if let Some(SshFacts { client, server }) = ssh {
            self.present(&[client.is_some(), server.is_some()]);
            self.opt_str(client);
            self.opt_str(server);
        }
        if let Some(DnsFacts {
            query,
            qtype,
            rcode,
            answers,
            queries,
            responses,
            distinct_names,
            name_bytes,
            unusual_qtypes,
            nxdomain,
            subdomain_entropy,
        }) = dns
        {
            self.present(&[
                query.is_some(),
                qtype.is_some(),
                rcode.is_some(),
                answers.is_some(),
            ]);
            self.opt_str(query);
            for v in [qtype, answers].into_iter().flatten() {
                self.uint(u64::from(*v));
            }
            if let Some(v) = rcode {
                self.uint(u64::from(*v));
            }
            for v in [
                queries,
                responses,
                distinct_names,
                name_bytes,
                unusual_qtypes,
                nxdomain,
            ] {
                self.uint(*v);
            }
            self.f64(*subdomain_entropy);
        }
    }

    fn export(&mut self, e: &ExportFacts) {
        let ExportFacts {
            source,
            exporter,
            domain,
            records,
            sampling,
            join,
            join_confidence,
            end_reason,
        } = e;
        self.present(&[join_confidence.is_some(), end_reason.is_some()]);
        self.str(source);
        self.addr(exporter);
        for v in [domain, records, sampling] {
            self.uint(u64::from(*v));
        }
        self.str(join);
        if let Some(v) = join_confidence {
            self.f64(*v);
        }
        if let Some(v) = end_reason {
            self.uint(u64::from(*v));
        }
    }
}

/// Presence bits of a struct's optional fields.
#[derive(Clone, Copy)]
struct Present(u64);

impl Present {
    fn has(self, i: u32) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// The reader: a cursor that checks every length (also of compact rollup segments and
/// of the text fields of meta rows).
pub(crate) struct R<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> R<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> R<'a> {
        R::at(buf, 0)
    }

    /// A reader at byte `at` of `buf` (beyond its end: every read fails).
    pub(crate) fn at(buf: &'a [u8], at: usize) -> R<'a> {
        R { buf, at }
    }

    /// Whether every byte was read.
    pub(crate) fn done(&self) -> bool {
        self.at == self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("record truncated at byte {}", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn uint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.at))
    }

    pub(crate) fn int(&mut self) -> Result<i64, String> {
        let z = self.uint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A varint that must fit `T` (a port, a TTL…), named in the error.
    fn small<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T, String> {
        let v = self.uint()?;
        T::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
    }

    /// A list's item count, at most the bytes left (every item takes one or more).
    fn count(&mut self) -> Result<usize, String> {
        let n = self.uint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len().saturating_sub(self.at))
            .ok_or_else(|| format!("a list of {n} items at byte {} is too long", self.at))
    }

    fn f64(&mut self) -> Result<f64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// A length-prefixed UTF-8 text, borrowed.
    pub(crate) fn text(&mut self) -> Result<&'a str, String> {
        let n = self.count()?;
        let at = self.at;
        std::str::from_utf8(self.take(n)?).map_err(|_| format!("text at byte {at} is not UTF-8"))
    }

    fn str(&mut self) -> Result<String, String> {
        self.text().map(str::to_string)
    }

    fn opt_str(&mut self, p: Present, bit: u32) -> Result<Option<String>, String> {
        p.has(bit).then(|| self.str()).transpose()
    }

    fn strs(&mut self) -> Result<Vec<String>, String> {
        let n = self.count()?;
        (0..n).map(|_| self.str()).collect()
    }

    /// TCP flag letters ([`Letters`]: a longer text is damage, not flags).
    fn letters(&mut self) -> Result<Letters, String> {
        let s = self.text()?;
        Letters::new(s).ok_or_else(|| format!("flag letters of {} bytes", s.len()))
    }

    fn letters_list(&mut self) -> Result<Vec<Letters>, String> {
        let n = self.count()?;
        (0..n).map(|_| self.letters()).collect()
    }

    fn present(&mut self) -> Result<Present, String> {
        self.uint().map(Present)
    }

    fn addr(&mut self) -> Result<IpAddr, String> {
        match self.byte()? {
            4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(self.take(4)?);
                Ok(IpAddr::V4(Ipv4Addr::from(a)))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(IpAddr::V6(Ipv6Addr::from(a)))
            }
            v => Err(format!(
                "address family {v} at byte {} is not known",
                self.at - 1
            )),
        }
    }

    fn stats(&mut self) -> Result<Stats, String> {
        Ok(Stats {
            mean: self.f64()?,
            min: self.f64()?,
            max: self.f64()?,
            stddev: self.f64()?,
        })
    }

    fn direction(&mut self) -> Result<DirectionStats, String> {
        let p = self.present()?;
        let mut c = [0u64; 8];
        for v in &mut c {
            *v = self.uint()?;
        }
        let [payload_bytes, link_bytes, idle_periods, zero_windows, retransmissions, fragments, truncated, keystrokes] =
            c;
        let flags = self.letters()?;
        let first_flags = self.letters_list()?;
        let iat = p.has(0).then(|| self.stats()).transpose()?;
        let size = p.has(1).then(|| self.stats()).transpose()?;
        let ttl_min = p.has(2).then(|| self.small("ttl_min")).transpose()?;
        let ttl_max = p.has(3).then(|| self.small("ttl_max")).transpose()?;
        let bursts = p
            .has(4)
            .then(|| -> Result<Bursts, String> {
                Ok(Bursts {
                    count: self.uint()?,
                    small: self.uint()?,
                    typed: self.uint()?,
                })
            })
            .transpose()?;
        let n = self.count()?;
        let onsets = (0..n).map(|_| self.f64()).collect::<Result<_, _>>()?;
        Ok(DirectionStats {
            payload_bytes,
            link_bytes,
            flags,
            first_flags,
            iat,
            size,
            idle_periods,
            zero_windows,
            retransmissions,
            ttl_min,
            ttl_max,
            fragments,
            truncated,
            keystrokes,
            bursts,
            onsets,
        })
    }

    fn header(&mut self) -> Result<TcpHeaderFacts, String> {
        let mut c = [0u64; 5];
        for v in &mut c {
            *v = self.uint()?;
        }
        let [reserved_bits, urg_without_pointer, pointer_without_urg, bad_options, zero_window_run] =
            c;
        let first_bad_option = match self.uint()? {
            0 => None,
            1 => Some(TcpOptionFault::Unknown {
                kind: self.byte()?,
                offset: self.byte()?,
            }),
            2 => Some(TcpOptionFault::Truncated {
                kind: self.byte()?,
                offset: self.byte()?,
            }),
            3 => Some(TcpOptionFault::BadLength {
                kind: self.byte()?,
                offset: self.byte()?,
                len: self.byte()?,
            }),
            v => return Err(format!("TCP option fault {v} is not known")),
        };
        Ok(TcpHeaderFacts {
            reserved_bits,
            urg_without_pointer,
            pointer_without_urg,
            bad_options,
            first_bad_option,
            zero_window_run,
        })
    }

    fn tcp(&mut self) -> Result<TcpFacts, String> {
        let p = self.present()?;
        let syn_synack = p.has(0).then(|| self.f64()).transpose()?;
        let synack_ack = p.has(1).then(|| self.f64()).transpose()?;
        let teardown = p.has(2).then(|| self.f64()).transpose()?;
        let orig_mss = p.has(3).then(|| self.small("orig_mss")).transpose()?;
        let resp_mss = p.has(4).then(|| self.small("resp_mss")).transpose()?;
        let orig_wscale = p.has(5).then(|| self.small("orig_wscale")).transpose()?;
        let resp_wscale = p.has(6).then(|| self.small("resp_wscale")).transpose()?;
        Ok(TcpFacts {
            syn_synack,
            synack_ack,
            teardown,
            orig_mss,
            resp_mss,
            orig_wscale,
            resp_wscale,
            first_packets: self.letters_list()?,
            orig_header: self.header()?,
            resp_header: self.header()?,
            ack_storm_run: self.uint()?,
            first_data: self.opt_str(p, 7)?,
        })
    }

    fn icmp(&mut self) -> Result<IcmpFacts, String> {
        let p = self.present()?;
        let errors = self.uint()?;
        let last_error_type = p.has(0).then(|| self.small("icmp type")).transpose()?;
        let last_error_code = p.has(1).then(|| self.small("icmp code")).transpose()?;
        let last_error_from = p.has(2).then(|| self.addr()).transpose()?;
        let n = self.count()?;
        let echo_ids = (0..n)
            .map(|_| self.small("echo id"))
            .collect::<Result<_, _>>()?;
        Ok(IcmpFacts {
            errors,
            last_error_type,
            last_error_code,
            last_error_from,
            echo_ids,
            payload_entropy: p.has(3).then(|| self.f64()).transpose()?,
            entropy_samples: self.uint()?,
        })
    }

    fn app(&mut self) -> Result<AppFacts, String> {
        let p = self.present()?;
        let http = p
            .has(0)
            .then(|| -> Result<Box<HttpFacts>, String> {
                let q = self.present()?;
                Ok(Box::new(HttpFacts {
                    method: self.opt_str(q, 0)?,
                    uri: self.opt_str(q, 1)?,
                    version: self.opt_str(q, 2)?,
                    host: self.opt_str(q, 3)?,
                    user_agent: self.opt_str(q, 4)?,
                    resp_version: self.opt_str(q, 5)?,
                    after_connect: self.opt_str(q, 6)?,
                    status: q.has(7).then(|| self.small("http status")).transpose()?,
                }))
            })
            .transpose()?;
        let tls = p
            .has(1)
            .then(|| -> Result<Box<TlsFacts>, String> {
                let q = self.present()?;
                Ok(Box::new(TlsFacts {
                    version: self.opt_str(q, 0)?,
                    sni: self.opt_str(q, 1)?,
                    ja3: self.opt_str(q, 2)?,
                    ja3_hash: self.opt_str(q, 3)?,
                    ja4: self.opt_str(q, 4)?,
                    server_version: self.opt_str(q, 5)?,
                    server_cipher: self.opt_str(q, 6)?,
                    alpn: self.strs()?,
                }))
            })
            .transpose()?;
        let ssh = p
            .has(2)
            .then(|| -> Result<SshFacts, String> {
                let q = self.present()?;
                Ok(SshFacts {
                    client: self.opt_str(q, 0)?,
                    server: self.opt_str(q, 1)?,
                })
            })
            .transpose()?;
        let dns = p
            .has(3)
            .then(|| -> Result<DnsFacts, String> {
                let q = self.present()?;
                Ok(DnsFacts {
                    query: self.opt_str(q, 0)?,
                    qtype: q.has(1).then(|| self.small("qtype")).transpose()?,
                    answers: q.has(3).then(|| self.small("answers")).transpose()?,
                    rcode: q.has(2).then(|| self.small("rcode")).transpose()?,
                    queries: self.uint()?,
                    responses: self.uint()?,
                    distinct_names: self.uint()?,
                    name_bytes: self.uint()?,
                    unusual_qtypes: self.uint()?,
                    nxdomain: self.uint()?,
                    subdomain_entropy: self.f64()?,
                })
            })
            .transpose()?;
        Ok(AppFacts {
            http,
            tls,
            ssh,
            dns,
        })
    }

    fn export(&mut self) -> Result<ExportFacts, String> {
        let p = self.present()?;
        Ok(ExportFacts {
            source: self.str()?,
            exporter: self.addr()?,
            domain: self.small("domain")?,
            records: self.small("records")?,
            sampling: self.small("sampling")?,
            join: self.str()?,
            join_confidence: p.has(0).then(|| self.f64()).transpose()?,
            end_reason: p.has(1).then(|| self.small("end_reason")).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with every optional field and list filled (and odd values: negative
    /// nanoseconds, IPv6, NaN-free extremes), so a field the codec forgets shows.
    fn full() -> FlowRecord {
        let mut r = crate::test_flow("Cfull", "2001:db8::1", "192.0.2.7", 53, 1234, true);
        r.ts = Timestamp(-1_234_567_891);
        r.last_ts = Timestamp(i64::MAX);
        r.duration = 1e300;
        r.service = Some("dns,http,ssh,ssl".into());
        r.missed_bytes = u64::MAX;
        r.vlan = Some(4095);
        r.inner_vlan = Some(7);
        r.tunnel_parents = vec!["Cparent".into(), "Cgrand".into()];
        r.signatures = vec![SignatureHit {
            name: "sig".into(),
            dir: "resp".into(),
            offset: 99,
        }];
        let st = |m: f64| Stats {
            mean: m,
            min: -m,
            max: m * 2.0,
            stddev: 0.5,
        };
        r.dynamics.orig = DirectionStats {
            payload_bytes: 1,
            link_bytes: 2,
            flags: "SAPF".into(),
            first_flags: vec!["S".into(), "A".into()],
            iat: Some(st(0.25)),
            size: Some(st(100.0)),
            idle_periods: 3,
            zero_windows: 4,
            retransmissions: 5,
            ttl_min: Some(1),
            ttl_max: Some(255),
            fragments: 6,
            truncated: 7,
            keystrokes: 8,
            bursts: Some(Bursts {
                count: 9,
                small: 10,
                typed: 11,
            }),
            onsets: vec![0.1, 2.5],
        };
        let hdr = |f| TcpHeaderFacts {
            reserved_bits: 1,
            urg_without_pointer: 2,
            pointer_without_urg: 3,
            bad_options: 4,
            first_bad_option: Some(f),
            zero_window_run: 5,
        };
        r.tcp = Some(TcpFacts {
            syn_synack: Some(0.001),
            synack_ack: Some(0.002),
            teardown: Some(0.003),
            orig_mss: Some(1460),
            resp_mss: Some(536),
            orig_wscale: Some(7),
            resp_wscale: Some(14),
            first_packets: vec![">S".into(), "<AS".into()],
            orig_header: hdr(TcpOptionFault::BadLength {
                kind: 8,
                offset: 2,
                len: 40,
            }),
            resp_header: hdr(TcpOptionFault::Truncated { kind: 3, offset: 1 }),
            ack_storm_run: 12,
            first_data: Some("orig".into()),
        });
        r.icmp = Some(IcmpFacts {
            errors: 2,
            last_error_type: Some(3),
            last_error_code: Some(13),
            last_error_from: Some("198.51.100.1".parse().unwrap()),
            echo_ids: vec![1, 65535],
            payload_entropy: Some(7.5),
            entropy_samples: 4,
        });
        r.app = Some(Box::new(AppFacts {
            http: Some(Box::new(HttpFacts {
                method: Some("CONNECT".into()),
                uri: Some("host:443".into()),
                version: Some("1.1".into()),
                host: Some("host".into()),
                user_agent: Some("ua \"quoted\" ☃".into()),
                status: Some(200),
                resp_version: Some("1.0".into()),
                after_connect: Some("ssh".into()),
            })),
            tls: Some(Box::new(TlsFacts {
                version: Some("TLSv13".into()),
                sni: Some("example.org".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
                ja3: Some("771,4865".into()),
                ja3_hash: Some("abc".into()),
                ja4: Some("t13d".into()),
                server_version: Some("TLSv12".into()),
                server_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            })),
            ssh: Some(SshFacts {
                client: Some("SSH-2.0-OpenSSH_9.2".into()),
                server: None,
            }),
            dns: Some(DnsFacts {
                query: Some("a.b.example".into()),
                qtype: Some(16),
                rcode: Some(3),
                answers: Some(0),
                queries: 1,
                responses: 2,
                distinct_names: 3,
                name_bytes: 4,
                unusual_qtypes: 5,
                nxdomain: 6,
                subdomain_entropy: 3.25,
            }),
        }));
        r.export = Some(ExportFacts {
            source: "ipfix".into(),
            exporter: "::1".parse().unwrap(),
            domain: u32::MAX,
            records: 2,
            sampling: 1,
            join: "biflow".into(),
            join_confidence: Some(0.9),
            end_reason: Some(3),
        });
        r
    }

    #[test]
    fn every_field_comes_back() {
        for r in [
            full(),
            crate::test_flow("C1", "10.0.0.1", "10.0.0.2", 80, 5, false),
        ] {
            let mut b = Vec::new();
            encode(&mut b, &r);
            assert_eq!(decode(&b, &r.uid, &r.community_id).unwrap(), r);
        }
        // Each fault kind and none.
        let mut r = full();
        for f in [
            None,
            Some(TcpOptionFault::Unknown {
                kind: 254,
                offset: 0,
            }),
        ] {
            r.tcp.as_mut().unwrap().orig_header.first_bad_option = f;
            let mut b = Vec::new();
            encode(&mut b, &r);
            assert_eq!(decode(&b, &r.uid, &r.community_id).unwrap(), r);
        }
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut b = Vec::new();
        encode(&mut b, &full());
        for cut in 0..b.len() {
            assert!(decode(&b[..cut], "", "").is_err(), "cut at {cut} decoded");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer, "", "")
            .unwrap_err()
            .contains("ends at byte"));
        // Every single-byte change decodes or is refused, without a panic.
        for i in 0..b.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = b.clone();
                bad[i] = v;
                let _ = decode(&bad, "", "");
            }
        }
    }
}
