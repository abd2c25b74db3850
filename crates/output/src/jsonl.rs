//! JSON lines: one flow record per line, fields as in `docs/specs/flow-record.md`.
//!
//! The line is written by hand rather than through serde: field names are literals, and
//! numbers go through `itoa` and `zmij`, the formatters `serde_json` uses, so the bytes
//! are exactly those of `serde_json::to_writer` on the record (a test holds the two
//! together) at a fraction of the cost — this runs once per flow on the writer thread.

use std::io::{self, Write};
use std::net::IpAddr;

use tunnelwatch_model::{
    AppFacts, DirectionStats, FlowRecord, IcmpFacts, IpText, Stats, TcpFacts, TcpHeaderFacts,
    TcpOptionFault, Timestamp,
};

/// Writes one record as a JSON line. The line is built in `line` (cleared first, kept
/// for reuse) and written with one call.
pub fn write_record(out: &mut impl Write, line: &mut Vec<u8>, rec: &FlowRecord) -> io::Result<()> {
    line.clear();
    Line(line).record(rec);
    line.push(b'\n');
    out.write_all(line)
}

/// Appends one record as JSON (no newline) to `buf`.
pub fn write_json(buf: &mut Vec<u8>, rec: &FlowRecord) {
    Line(buf).record(rec);
}

/// A JSON text under construction. Object writers start each member with `,` and the
/// caller removes nothing: the first member of an object is written with `first`.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// `"key":` preceded by a comma unless the object was just opened. Inlined: the
    /// names are literals, so each copy has a constant length (no `memcpy` call per
    /// member, of which a record has about seventy).
    #[inline(always)]
    fn key(&mut self, k: &str) {
        if self.0.last() != Some(&b'{') {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn uint(&mut self, v: impl itoa::Integer) {
        let mut b = itoa::Buffer::new();
        self.raw(b.format(v));
    }

    fn float(&mut self, v: f64) {
        // Whole numbers (sizes, many rounded statistics) are a good part of a record's
        // floats: `zmij` writes them as the integer and `.0` below 1e16.
        let n = v as u64;
        if v.is_sign_positive() && v < 1e15 && n as f64 == v {
            self.uint(n);
            self.0.extend_from_slice(b".0");
            return;
        }
        if v.is_finite() {
            let mut b = zmij::Buffer::new();
            self.raw(b.format_finite(v));
        } else {
            self.raw("null");
        }
    }

    fn ts(&mut self, t: Timestamp) {
        self.float(t.as_secs_f64_micros());
    }

    /// A JSON string with `serde_json`'s escapes.
    fn str(&mut self, s: &str) {
        self.str_bytes(s.as_bytes());
    }

    /// [`Line::str`] of a text's bytes (they are UTF-8: every caller has a `str`).
    fn str_bytes(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut *self.0;
        out.push(b'"');
        // Most strings need no escape; this test runs over whole words at a time.
        let plain = !bytes
            .iter()
            .fold(false, |e, &b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
        if plain {
            out.extend_from_slice(bytes);
            out.push(b'"');
            return;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => &[],
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            if esc.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.extend_from_slice(esc);
            }
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }

    /// An address as a string ([`IpText`]: the standard library's text).
    fn ip(&mut self, a: IpAddr) {
        self.0.push(b'"');
        self.0.extend_from_slice(IpText::new(a).as_bytes());
        self.0.push(b'"');
    }

    fn opt_str(&mut self, k: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.key(k);
            self.str(v);
        }
    }

    fn opt_uint(&mut self, k: &str, v: Option<impl itoa::Integer>) {
        if let Some(v) = v {
            self.key(k);
            self.uint(v);
        }
    }

    fn opt_float(&mut self, k: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.key(k);
            self.float(v);
        }
    }

    fn str_list(&mut self, k: &str, v: &[impl AsRef<[u8]>]) {
        if !v.is_empty() {
            self.key(k);
            self.0.push(b'[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    self.0.push(b',');
                }
                self.str_bytes(s.as_ref());
            }
            self.0.push(b']');
        }
    }

    fn record(&mut self, r: &FlowRecord) {
        self.0.push(b'{');
        self.key("uid");
        self.str(&r.uid);
        self.key("community_id");
        self.str(&r.community_id);
        self.key("ts");
        self.ts(r.ts);
        self.key("last_ts");
        self.ts(r.last_ts);
        self.key("duration");
        self.float(r.duration);
        self.key("proto");
        self.str(&r.proto);
        self.key("ip_proto");
        self.uint(r.ip_proto);
        self.key("orig_h");
        self.ip(r.orig_h);
        self.key("orig_p");
        self.uint(r.orig_p);
        self.key("resp_h");
        self.ip(r.resp_h);
        self.key("resp_p");
        self.uint(r.resp_p);
        self.opt_str("service", &r.service);
        for (k, v) in [
            ("orig_pkts", r.orig_pkts),
            ("resp_pkts", r.resp_pkts),
            ("orig_bytes", r.orig_bytes),
            ("resp_bytes", r.resp_bytes),
            ("orig_ip_bytes", r.orig_ip_bytes),
            ("resp_ip_bytes", r.resp_ip_bytes),
        ] {
            self.key(k);
            self.uint(v);
        }
        self.key("conn_state");
        self.str(r.conn_state.as_str());
        self.key("history");
        self.str(&r.history);
        self.key("cause");
        self.str(r.cause.as_str());
        self.key("missed_bytes");
        self.uint(r.missed_bytes);
        self.opt_uint("vlan", r.vlan);
        self.opt_uint("inner_vlan", r.inner_vlan);
        self.str_list("tunnel_parents", &r.tunnel_parents);
        if !r.signatures.is_empty() {
            self.key("signatures");
            self.0.push(b'[');
            for (i, h) in r.signatures.iter().enumerate() {
                if i > 0 {
                    self.0.push(b',');
                }
                self.0.push(b'{');
                self.key("name");
                self.str(&h.name);
                self.key("dir");
                self.str(&h.dir);
                self.key("offset");
                self.uint(h.offset);
                self.0.push(b'}');
            }
            self.0.push(b']');
        }
        self.key("dynamics");
        self.0.push(b'{');
        self.key("orig");
        self.direction(&r.dynamics.orig);
        self.key("resp");
        self.direction(&r.dynamics.resp);
        self.0.push(b'}');
        if let Some(t) = &r.tcp {
            self.key("tcp");
            self.tcp(t);
        }
        if let Some(i) = &r.icmp {
            self.key("icmp");
            self.icmp(i);
        }
        if let Some(a) = &r.app {
            self.key("app");
            self.app(a);
        }
        if let Some(e) = &r.export {
            self.key("export");
            self.0.push(b'{');
            self.key("source");
            self.str(&e.source);
            self.key("exporter");
            self.ip(e.exporter);
            for (k, v) in [
                ("domain", e.domain),
                ("records", e.records),
                ("sampling", e.sampling),
            ] {
                self.key(k);
                self.uint(v);
            }
            self.key("join");
            self.str(&e.join);
            if let Some(c) = e.join_confidence {
                self.key("join_confidence");
                self.float(c);
            }
            self.opt_uint("end_reason", e.end_reason);
            self.0.push(b'}');
        }
        self.0.push(b'}');
    }

    fn direction(&mut self, d: &DirectionStats) {
        self.0.push(b'{');
        self.key("payload_bytes");
        self.uint(d.payload_bytes);
        self.key("link_bytes");
        self.uint(d.link_bytes);
        self.key("flags");
        self.str_bytes(d.flags.as_bytes());
        self.str_list("first_flags", &d.first_flags);
        self.stats("iat", &d.iat);
        self.stats("size", &d.size);
        self.key("idle_periods");
        self.uint(d.idle_periods);
        self.key("zero_windows");
        self.uint(d.zero_windows);
        self.key("retransmissions");
        self.uint(d.retransmissions);
        self.opt_uint("ttl_min", d.ttl_min);
        self.opt_uint("ttl_max", d.ttl_max);
        self.opt_uint("fragments", Some(d.fragments).filter(|v| *v != 0));
        self.opt_uint("truncated", Some(d.truncated).filter(|v| *v != 0));
        self.opt_uint("keystrokes", Some(d.keystrokes).filter(|v| *v != 0));
        if let Some(b) = &d.bursts {
            self.key("bursts");
            self.0.push(b'{');
            self.key("count");
            self.uint(b.count);
            self.key("small");
            self.uint(b.small);
            self.key("typed");
            self.uint(b.typed);
            self.0.push(b'}');
        }
        if !d.onsets.is_empty() {
            self.key("onsets");
            self.0.push(b'[');
            for (i, t) in d.onsets.iter().enumerate() {
                if i > 0 {
                    self.0.push(b',');
                }
                self.float(*t);
            }
            self.0.push(b']');
        }
        self.0.push(b'}');
    }

    fn stats(&mut self, k: &str, s: &Option<Stats>) {
        if let Some(s) = s {
            self.key(k);
            self.0.push(b'{');
            for (k, v) in [
                ("mean", s.mean),
                ("min", s.min),
                ("max", s.max),
                ("stddev", s.stddev),
            ] {
                self.key(k);
                self.float(v);
            }
            self.0.push(b'}');
        }
    }

    fn tcp(&mut self, t: &TcpFacts) {
        self.0.push(b'{');
        self.opt_float("syn_synack", t.syn_synack);
        self.opt_float("synack_ack", t.synack_ack);
        self.opt_float("teardown", t.teardown);
        self.opt_uint("orig_mss", t.orig_mss);
        self.opt_uint("resp_mss", t.resp_mss);
        self.opt_uint("orig_wscale", t.orig_wscale);
        self.opt_uint("resp_wscale", t.resp_wscale);
        self.str_list("first_packets", &t.first_packets);
        for (k, h) in [
            ("orig_header", &t.orig_header),
            ("resp_header", &t.resp_header),
        ] {
            if !h.is_empty() {
                self.key(k);
                self.header(h);
            }
        }
        if t.ack_storm_run != 0 {
            self.key("ack_storm_run");
            self.uint(t.ack_storm_run);
        }
        if let Some(f) = &t.first_data {
            self.key("first_data");
            self.str(f);
        }
        self.0.push(b'}');
    }

    fn header(&mut self, h: &TcpHeaderFacts) {
        self.0.push(b'{');
        for (k, v) in [
            ("reserved_bits", h.reserved_bits),
            ("urg_without_pointer", h.urg_without_pointer),
            ("pointer_without_urg", h.pointer_without_urg),
            ("bad_options", h.bad_options),
        ] {
            if v != 0 {
                self.key(k);
                self.uint(v);
            }
        }
        if let Some(f) = h.first_bad_option {
            self.key("first_bad_option");
            let (name, kind, offset, len) = match f {
                TcpOptionFault::Unknown { kind, offset } => ("unknown", kind, offset, None),
                TcpOptionFault::Truncated { kind, offset } => ("truncated", kind, offset, None),
                TcpOptionFault::BadLength { kind, offset, len } => {
                    ("bad_length", kind, offset, Some(len))
                }
            };
            self.0.push(b'{');
            self.key("fault");
            self.str(name);
            self.key("kind");
            self.uint(kind);
            self.key("offset");
            self.uint(offset);
            self.opt_uint("len", len);
            self.0.push(b'}');
        }
        if h.zero_window_run != 0 {
            self.key("zero_window_run");
            self.uint(h.zero_window_run);
        }
        self.0.push(b'}');
    }

    fn icmp(&mut self, i: &IcmpFacts) {
        self.0.push(b'{');
        self.key("errors");
        self.uint(i.errors);
        self.opt_uint("last_error_type", i.last_error_type);
        self.opt_uint("last_error_code", i.last_error_code);
        if let Some(a) = i.last_error_from {
            self.key("last_error_from");
            self.ip(a);
        }
        if !i.echo_ids.is_empty() {
            self.key("echo_ids");
            self.0.push(b'[');
            for (n, id) in i.echo_ids.iter().enumerate() {
                if n > 0 {
                    self.0.push(b',');
                }
                self.uint(*id);
            }
            self.0.push(b']');
        }
        if let Some(e) = i.payload_entropy {
            self.key("payload_entropy");
            self.float(e);
        }
        if i.entropy_samples != 0 {
            self.key("entropy_samples");
            self.uint(i.entropy_samples);
        }
        self.0.push(b'}');
    }

    fn app(&mut self, a: &AppFacts) {
        self.0.push(b'{');
        if let Some(h) = &a.http {
            self.key("http");
            self.0.push(b'{');
            self.opt_str("method", &h.method);
            self.opt_str("uri", &h.uri);
            self.opt_str("version", &h.version);
            self.opt_str("host", &h.host);
            self.opt_str("user_agent", &h.user_agent);
            self.opt_uint("status", h.status);
            self.opt_str("resp_version", &h.resp_version);
            self.opt_str("after_connect", &h.after_connect);
            self.0.push(b'}');
        }
        if let Some(t) = &a.tls {
            self.key("tls");
            self.0.push(b'{');
            self.opt_str("version", &t.version);
            self.opt_str("sni", &t.sni);
            self.str_list("alpn", &t.alpn);
            self.opt_str("ja3", &t.ja3);
            self.opt_str("ja3_hash", &t.ja3_hash);
            self.opt_str("ja4", &t.ja4);
            self.opt_str("server_version", &t.server_version);
            self.opt_str("server_cipher", &t.server_cipher);
            self.0.push(b'}');
        }
        if let Some(s) = &a.ssh {
            self.key("ssh");
            self.0.push(b'{');
            self.opt_str("client", &s.client);
            self.opt_str("server", &s.server);
            self.0.push(b'}');
        }
        if let Some(d) = &a.dns {
            self.key("dns");
            self.0.push(b'{');
            self.opt_str("query", &d.query);
            self.opt_uint("qtype", d.qtype);
            self.opt_uint("rcode", d.rcode);
            self.opt_uint("answers", d.answers);
            for (k, v) in [
                ("queries", d.queries),
                ("responses", d.responses),
                ("distinct_names", d.distinct_names),
                ("name_bytes", d.name_bytes),
                ("unusual_qtypes", d.unusual_qtypes),
                ("nxdomain", d.nxdomain),
            ] {
                if v != 0 {
                    self.key(k);
                    self.uint(v);
                }
            }
            if d.subdomain_entropy != 0.0 {
                self.key("subdomain_entropy");
                self.float(d.subdomain_entropy);
            }
            self.0.push(b'}');
        }
        self.0.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnelwatch_model::{
        Bursts, DnsFacts, ExportFacts, HttpFacts, SignatureHit, SshFacts, TlsFacts,
    };

    fn line(rec: &FlowRecord) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut line = b"stale".to_vec();
        write_record(&mut buf, &mut line, rec).unwrap();
        assert_eq!(buf, line);
        buf
    }

    fn serde_line(rec: &FlowRecord) -> Vec<u8> {
        let mut v = serde_json::to_vec(rec).unwrap();
        v.push(b'\n');
        v
    }

    #[test]
    fn whole_numbers_are_written_as_zmij_writes_them() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut cases: Vec<f64> = (0..100_000).map(f64::from).collect();
        cases.extend([
            -0.0,
            -1.0,
            1e15 - 1.0,
            1e15,
            1e16,
            2f64.powi(53),
            f64::MIN_POSITIVE,
        ]);
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x % 1_000_000_000_000_000) as f64);
            cases.push((x >> (x % 64)) as f64);
        }
        for v in cases {
            let mut buf = Vec::new();
            Line(&mut buf).float(v);
            let want = zmij::Buffer::new().format_finite(v).to_string();
            assert_eq!(String::from_utf8(buf).unwrap(), want, "{v:?}");
        }
    }

    #[test]
    fn record_round_trips_through_json() {
        let rec = crate::zeek::tests::sample();
        let buf = line(&rec);
        assert!(buf.ends_with(b"\n"));
        let back: FlowRecord = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, rec);
    }

    /// Every optional member present, strings needing every kind of escape, IPv6,
    /// floats of all magnitudes: the bytes must be serde_json's.
    #[test]
    fn bytes_match_serde_json_with_every_member() {
        let mut rec = crate::zeek::tests::sample();
        rec.orig_h = "2001:db8::1".parse().unwrap();
        rec.service = Some("dns,http".into());
        rec.vlan = Some(10);
        rec.inner_vlan = Some(20);
        rec.tunnel_parents = vec!["Cabc".into(), "Cdef".into()];
        rec.signatures = vec![
            SignatureHit {
                name: "ssh_banner".into(),
                dir: "orig".into(),
                offset: 80,
            },
            SignatureHit {
                name: "x\"y".into(),
                dir: "resp".into(),
                offset: 0,
            },
        ];
        rec.history = "Sh\"\\\u{1}\u{8}\u{c}\n\r\té".into();
        rec.duration = 1e-7;
        for d in [&mut rec.dynamics.orig, &mut rec.dynamics.resp] {
            d.first_flags = vec!["S".into(), "AP".into()];
            d.iat = Some(Stats {
                mean: 0.000001,
                min: 0.0,
                max: 123456789.5,
                stddev: f64::NAN,
            });
            d.size = Some(Stats {
                mean: 14.333333,
                min: 1.0,
                max: 1e21,
                stddev: 0.1,
            });
            d.ttl_min = Some(1);
            d.ttl_max = Some(255);
            d.fragments = 3;
            d.truncated = 4;
            d.keystrokes = 7;
            d.bursts = Some(Bursts {
                count: 30,
                small: 20,
                typed: 12,
            });
            d.onsets = vec![1_700_000_000.123456, 1_700_000_003.5];
        }
        rec.tcp = Some(TcpFacts {
            syn_synack: Some(9e-6),
            synack_ack: Some(0.00001),
            teardown: Some(2.5),
            orig_mss: Some(1460),
            resp_mss: Some(536),
            orig_wscale: Some(7),
            resp_wscale: Some(14),
            first_packets: vec![">S".into(), "<AS".into()],
            orig_header: TcpHeaderFacts {
                reserved_bits: 1,
                urg_without_pointer: 2,
                pointer_without_urg: 3,
                bad_options: 4,
                first_bad_option: Some(TcpOptionFault::BadLength {
                    kind: 2,
                    offset: 0,
                    len: 1,
                }),
                zero_window_run: 5,
            },
            resp_header: TcpHeaderFacts {
                first_bad_option: Some(TcpOptionFault::Unknown {
                    kind: 99,
                    offset: 3,
                }),
                ..Default::default()
            },
            ack_storm_run: 6,
            first_data: Some("resp".into()),
        });
        rec.icmp = Some(IcmpFacts {
            errors: 2,
            last_error_type: Some(3),
            last_error_code: Some(1),
            last_error_from: Some("192.0.2.1".parse().unwrap()),
            echo_ids: vec![1, 65535],
            payload_entropy: Some(7.412),
            entropy_samples: 16,
        });
        let s = |v: &str| Some(v.to_string());
        rec.app = Some(Box::new(AppFacts {
            http: Some(Box::new(HttpFacts {
                method: s("GET"),
                uri: s("/a?b=\"c\""),
                version: s("1.1"),
                host: s("h"),
                user_agent: s("ua\u{7f}"),
                status: Some(200),
                resp_version: s("1.0"),
                after_connect: s("ssh"),
            })),
            tls: Some(Box::new(TlsFacts {
                version: s("TLSv1.3"),
                sni: s("example.org"),
                alpn: vec!["h2".into(), "http/1.1".into()],
                ja3: s("771,4865"),
                ja3_hash: s("abc"),
                ja4: s("t13d"),
                server_version: s("TLSv1.2"),
                server_cipher: s("0x1301"),
            })),
            ssh: Some(SshFacts {
                client: s("SSH-2.0-a"),
                server: s("SSH-2.0-b"),
            }),
            dns: Some(DnsFacts {
                query: s("x.example"),
                qtype: Some(16),
                rcode: Some(3),
                answers: Some(0),
                queries: 7,
                responses: 6,
                distinct_names: 5,
                name_bytes: 300,
                unusual_qtypes: 4,
                nxdomain: 2,
                subdomain_entropy: 3.912345,
            }),
        }));
        rec.export = Some(ExportFacts {
            source: "ipfix".into(),
            exporter: "2001:db8::1".parse().unwrap(),
            domain: 7,
            records: 3,
            sampling: 1000,
            join: "paired".into(),
            join_confidence: Some(0.85),
            end_reason: Some(3),
        });
        assert_eq!(
            String::from_utf8(line(&rec)).unwrap(),
            String::from_utf8(serde_line(&rec)).unwrap()
        );
    }

    #[test]
    fn bytes_match_serde_json_with_optional_members_absent() {
        let mut rec = crate::zeek::tests::sample();
        rec.service = None;
        rec.tcp = None;
        rec.icmp = None;
        rec.app = Some(Box::new(AppFacts {
            http: Some(Box::default()),
            tls: Some(Box::default()),
            ssh: Some(SshFacts::default()),
            dns: Some(DnsFacts::default()),
        }));
        rec.dynamics.orig = DirectionStats::default();
        rec.dynamics.resp.iat = None;
        rec.dynamics.resp.first_flags.clear();
        assert_eq!(line(&rec), serde_line(&rec));
        rec.app = None;
        rec.export = Some(ExportFacts {
            source: "netflow_v5".into(),
            exporter: "192.0.2.9".parse().unwrap(),
            domain: 0,
            records: 1,
            sampling: 1,
            join: "one_way".into(),
            join_confidence: None,
            end_reason: None,
        });
        rec.tcp = Some(TcpFacts::default());
        rec.icmp = Some(IcmpFacts::default());
        assert_eq!(line(&rec), serde_line(&rec));
    }
}
