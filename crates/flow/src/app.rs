//! Application facts per flow: the first payloads of each direction are offered to the
//! light parsers of `tunnelwatch_decode::app` (HTTP, TLS, SSH, DNS) until each has
//! answered or a few payloads went by. State is allocated only for flows that carry
//! payload, and a TLS ClientHello split over segments is buffered up to 16 KiB.

use crate::config::is_dns_port;
use tunnelwatch_decode::app::{dns, http, ssh, tls};
use tunnelwatch_model::{AppFacts, DnsFacts, SshFacts, TlsFacts};

/// Payload packets examined per direction.
const MAX_TRIES: u8 = 4;
/// Largest TLS handshake buffered.
const MAX_TLS_BUFFER: usize = 16 * 1024 + 5;
/// Largest HTTP request head buffered when its first segment did not hold it all.
const MAX_HTTP_HEAD: usize = 8 * 1024;

/// Query names remembered exactly per flow for the distinct count.
const MAX_DNS_NAMES: usize = 1024;

/// Application-layer state of one flow.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Facts learnt so far.
    pub facts: AppFacts,
    tries: [u8; 2],
    tls_buf: Option<Vec<u8>>,
    /// A request head split over segments (some clients write each header piece
    /// separately), gathered until its empty line so Host and User-Agent are seen.
    http_buf: Option<Vec<u8>>,
    /// A DNS flow: every message is counted, not only the first ones. Inline, as are
    /// its first names: a DNS packet should not chase more pointers than its flow's.
    dns: Option<DnsTally>,
}

/// Running DNS counters of one flow (DNS tunnels are many queries in one flow).
#[derive(Clone, Debug, Default)]
struct DnsTally {
    /// Hashes of the first names seen (most DNS flows ask one name).
    first: [u64; FIRST_NAMES],
    firsts: u8,
    /// Hashes of the names seen after those (with them, at most [`MAX_DNS_NAMES`]).
    /// Boxed: 8 bytes in every application state instead of a set's 40.
    #[allow(clippy::box_collection)]
    more: Option<Box<std::collections::HashSet<u64, foldhash::fast::RandomState>>>,
    entropy_sum: f64,
    entropy_n: u64,
}

/// Name hashes a DNS flow keeps inline.
const FIRST_NAMES: usize = 4;

impl DnsTally {
    /// Remembers name hash `h`; whether it is new (a name past the bound is counted as
    /// new, as a tunnel's names are).
    fn add_name(&mut self, h: u64) -> bool {
        let firsts = usize::from(self.firsts);
        if self.first[..firsts].contains(&h) || self.more.as_ref().is_some_and(|m| m.contains(&h)) {
            return false;
        }
        if firsts < FIRST_NAMES {
            self.first[firsts] = h;
            self.firsts += 1;
        } else {
            let more = self.more.get_or_insert_with(Default::default);
            if FIRST_NAMES + more.len() < MAX_DNS_NAMES {
                more.insert(h);
            }
        }
        true
    }
}

/// Qtypes that carry room for data in answers: CNAME, NULL, MX, TXT, ANY, private use.
fn unusual_qtype(t: u16) -> bool {
    matches!(t, 5 | 10 | 15 | 16 | 255) || t >= 65280
}

/// A hash of a name, case-insensitive, fixed so that runs are reproducible. Eight
/// bytes at a time, lower-cased in the word: tunnels send names of 60–110 characters,
/// and a byte-at-a-time hash (FNV-1a) was a chain of as many dependent multiplications
/// for every query.
fn name_hash(name: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| {
        let h = (h ^ w).wrapping_mul(K);
        h ^ (h >> 29)
    };
    let mut words = name.as_bytes().chunks_exact(8);
    let mut h = name.len() as u64;
    for w in &mut words {
        h = mix(
            h,
            ascii_lower(u64::from_le_bytes([
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
            ])),
        );
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = mix(h, ascii_lower(u64::from_le_bytes(last)));
    }
    mix(h, K)
}

/// Each byte of `w` as [`u8::to_ascii_lowercase`] gives it: bit 5 set in the bytes
/// `A`..=`Z`, found without carries between bytes (seven-bit sums per byte).
fn ascii_lower(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = w & !HIGH;
    // High bit set where the byte's low seven bits are ≥ 'A', and where they are > 'Z'.
    let ge_a = low7 + ONES * u64::from(0x80 - b'A');
    let gt_z = low7 + ONES * u64::from(0x7f - b'Z');
    let upper = (ge_a & !gt_z) & !w & HIGH;
    w | (upper >> 2)
}

/// Shannon entropy (bits per character) of the part of `name` left of its last two
/// labels, or `None` when there is no such part.
pub fn subdomain_entropy(name: &str) -> Option<f64> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(|&b| b != b'.').map_or(0, |i| i + 1);
    let last = bytes[..end].iter().rposition(|&b| b == b'.')?;
    let cut = bytes[..last].iter().rposition(|&b| b == b'.')?;
    let sub = &bytes[..cut];
    // Each distinct byte is summed once, in the order of first occurrence (kept while
    // counting, so that the sum runs over the distinct bytes only); counts of u16 (a
    // name from the wire is at most 1,020 characters as text). Whether a byte is new
    // is added, not branched on: in a random tunnel name it is a coin toss for the
    // first few dozen characters, which a branch mispredicts. `order[distinct]` is
    // written every time and kept only when the byte was new (fewer than 256 distinct
    // lower-case bytes exist, so it stays in bounds).
    let mut counts = [0u16; 256];
    let mut order = [0u8; 256];
    let mut distinct = 0;
    let mut n = 0u32;
    for &b in sub {
        if b != b'.' {
            let l = b.to_ascii_lowercase();
            let c = &mut counts[usize::from(l)];
            order[distinct] = l;
            distinct += usize::from(*c == 0);
            *c = c.saturating_add(1);
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let terms = ENTROPY_TERMS.get_or_init(entropy_terms);
    let row = terms.get(terms_row(n as usize)..terms_row(n as usize + 1));
    let n = f64::from(n);
    let mut h = 0.0;
    for &l in &order[..distinct] {
        let c = counts[usize::from(l)];
        // The same term as computed here, from the table for short names.
        h -= match row {
            Some(row) => row[usize::from(c)],
            None => entropy_term(f64::from(c) / n),
        };
    }
    Some(h)
}

/// `p · log2 p`, one term of the entropy sum.
fn entropy_term(p: f64) -> f64 {
    p * p.log2()
}

/// Names up to this many characters (without dots) take their entropy terms from a
/// table: one `log2` per distinct character was most of a DNS query's cost. Tunnels
/// send long names (60–110 characters before the registered domain is the common
/// shape), so the table goes past them: 8,256 terms, 66 KB.
const TERMS_MAX: usize = 127;

/// Where the row for `n` characters starts in `ENTROPY_TERMS`: row `n` holds the
/// terms of counts `0..=n`.
const fn terms_row(n: usize) -> usize {
    n * (n + 1) / 2
}

/// [`entropy_term`]`(c / n)` for every `1 <= c <= n <= TERMS_MAX` (index 0 of a row
/// unused); rows past the table's end are `None` in the lookup.
static ENTROPY_TERMS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();

fn entropy_terms() -> Vec<f64> {
    let mut t = Vec::with_capacity(terms_row(TERMS_MAX + 1));
    for n in 0..=TERMS_MAX {
        t.push(0.0);
        for c in 1..=n {
            t.push(entropy_term(c as f64 / n as f64));
        }
    }
    t
}

/// Shannon entropy, bits per byte, of the differences between successive bytes of
/// `bytes` (0 for fewer than two): random data scores near 8 either way, but a counting
/// pattern — iputils ping fills its payload with 0x10, 0x11, 0x12, … — scores 0 where
/// plain byte entropy would call it random.
pub fn delta_entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for w in bytes.windows(2) {
        counts[usize::from(w[1].wrapping_sub(w[0]))] += 1;
    }
    let n = bytes.len().saturating_sub(1).max(1) as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Transport of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// TCP stream bytes.
    Tcp,
    /// One UDP datagram.
    Udp,
}

impl AppState {
    /// Heap bytes held beyond the struct: the ClientHello buffer, the DNS name hashes
    /// and the learnt strings (estimated by their lengths).
    pub fn heap_bytes(&self) -> usize {
        self.tls_buf.as_ref().map_or(0, Vec::capacity)
            + self.http_buf.as_ref().map_or(0, Vec::capacity)
            + self.facts.heap_len()
            + self
                .dns
                .as_ref()
                .and_then(|d| d.more.as_ref())
                .map_or(0, |m| 9 * m.capacity())
    }

    /// True when nothing more will be learnt (a DNS flow keeps counting).
    pub fn done(&self) -> bool {
        self.tries[0] >= MAX_TRIES
            && self.tries[1] >= MAX_TRIES
            && self.dns.is_none()
            && self.http_buf.is_none()
    }

    /// Offers one payload of direction `orig` (true: originator).
    pub fn offer(
        &mut self,
        orig: bool,
        payload: &[u8],
        carrier: Carrier,
        ports: (u16, u16),
    ) -> bool {
        let d = usize::from(!orig);
        if payload.is_empty() {
            return false;
        }
        if self.dns.is_some() {
            return self.dns(payload, carrier == Carrier::Tcp);
        }
        if orig && self.http_buf.is_some() {
            self.http_head(payload);
            return true;
        }
        if self.tries[d] >= MAX_TRIES {
            return false;
        }
        self.tries[d] += 1;
        match carrier {
            Carrier::Udp => {
                let grew =
                    (is_dns_port(ports.0) || is_dns_port(ports.1)) && self.dns(payload, false);
                // One datagram per direction says what it is.
                self.tries[d] = MAX_TRIES;
                grew
            }
            Carrier::Tcp if orig => {
                self.tcp_orig(payload, ports);
                true
            }
            Carrier::Tcp => {
                self.tcp_resp(payload, ports);
                true
            }
        }
    }

    /// Tallies one DNS message; whether the state may have grown on the heap (facts
    /// begun, the query name kept, a name hash past the inline ones).
    fn dns(&mut self, payload: &[u8], over_tcp: bool) -> bool {
        let named = self.facts.dns.as_ref().is_none_or(|f| f.query.is_none());
        let Some(m) = dns::parse_with(payload, over_tcp, named) else {
            return false;
        };
        let mut grew = self.facts.dns.is_none() || named;
        let f = self.facts.dns.get_or_insert_with(DnsFacts::default);
        let tally = self.dns.get_or_insert_with(Default::default);
        if m.is_response {
            f.responses += 1;
            if m.rcode == 3 {
                f.nxdomain += 1;
            }
            if f.rcode.is_none() {
                f.rcode = Some(m.rcode);
                f.answers = Some(m.answers);
            }
        } else {
            f.queries += 1;
            if let Some(name) = &m.query {
                f.name_bytes += name.len() as u64;
                let h = name_hash(name);
                grew |= usize::from(tally.firsts) >= FIRST_NAMES;
                if tally.add_name(h) {
                    f.distinct_names += 1;
                }
                if let Some(e) = subdomain_entropy(name) {
                    tally.entropy_sum += e;
                    tally.entropy_n += 1;
                    let mean = tally.entropy_sum / tally.entropy_n as f64;
                    f.subdomain_entropy = (mean * 1e3).round() / 1e3;
                }
            }
            if m.qtype.is_some_and(unusual_qtype) {
                f.unusual_qtypes += 1;
            }
        }
        if f.query.is_none() {
            f.query = m.query;
            f.qtype = m.qtype;
        }
        grew
    }

    fn tcp_orig(&mut self, payload: &[u8], ports: (u16, u16)) {
        if let Some(buf) = self.tls_buf.as_mut() {
            let room = MAX_TLS_BUFFER.saturating_sub(buf.len());
            buf.extend_from_slice(&payload[..payload.len().min(room)]);
            let need = tls::handshake_bytes_needed(buf).unwrap_or(0);
            if buf.len() >= need || buf.len() >= MAX_TLS_BUFFER {
                let buf = self.tls_buf.take().unwrap_or_default();
                self.client_hello(&buf);
            }
            return;
        }
        match self.facts.http.as_mut() {
            None => {
                if let Some(h) = http::parse_request(payload) {
                    self.facts.http = Some(Box::new(h));
                    if !http::head_complete(payload) && payload.len() < MAX_HTTP_HEAD {
                        self.http_buf = Some(payload.to_vec());
                    }
                    return;
                }
            }
            // The first payload through a proxy tunnel: a browser starts TLS here.
            Some(h) if h.method.as_deref() == Some("CONNECT") && h.after_connect.is_none() => {
                let kind = if tls::handshake_bytes_needed(payload).is_some() {
                    "tls"
                } else if ssh::parse_banner(payload).is_some() {
                    "ssh"
                } else if http::parse_request(payload).is_some() {
                    "http"
                } else {
                    "other"
                };
                h.after_connect = Some(kind.to_string());
                if kind == "http" {
                    return;
                }
            }
            Some(_) => {}
        }
        if self.facts.tls.is_none() {
            if let Some(need) = tls::handshake_bytes_needed(payload) {
                if payload.len() < need && need <= MAX_TLS_BUFFER {
                    self.tls_buf = Some(payload.to_vec());
                    return;
                }
                self.client_hello(payload);
                return;
            }
        }
        if let Some(banner) = ssh::parse_banner(payload) {
            self.facts
                .ssh
                .get_or_insert_with(SshFacts::default)
                .client
                .get_or_insert(banner);
            return;
        }
        if ports.0 == 53 || ports.1 == 53 {
            self.dns(payload, true);
        }
    }

    /// More of a request head that began in an earlier segment.
    fn http_head(&mut self, payload: &[u8]) {
        let Some(buf) = self.http_buf.as_mut() else {
            return;
        };
        let room = MAX_HTTP_HEAD.saturating_sub(buf.len());
        buf.extend_from_slice(&payload[..payload.len().min(room)]);
        if http::head_complete(buf) || buf.len() >= MAX_HTTP_HEAD {
            let buf = self.http_buf.take().unwrap_or_default();
            if let (Some(h), Some(whole)) = (self.facts.http.as_mut(), http::parse_request(&buf)) {
                h.host = h.host.take().or(whole.host);
                h.user_agent = h.user_agent.take().or(whole.user_agent);
            }
        }
    }

    fn client_hello(&mut self, bytes: &[u8]) {
        if let Some(t) = tls::parse_client_hello(bytes) {
            let prev = self.facts.tls.take().unwrap_or_default();
            self.facts.tls = Some(Box::new(TlsFacts {
                server_version: prev.server_version,
                server_cipher: prev.server_cipher,
                ..t
            }));
        }
    }

    fn tcp_resp(&mut self, payload: &[u8], ports: (u16, u16)) {
        // The far end of a proxy tunnel spoke before the client: TLS never does that
        // (a shell listener or an SSH server does).
        if let Some(h) = self.facts.http.as_mut() {
            if h.method.as_deref() == Some("CONNECT")
                && h.status.is_some()
                && h.after_connect.is_none()
            {
                let kind = if ssh::parse_banner(payload).is_some() {
                    "ssh"
                } else {
                    "server_first"
                };
                h.after_connect = Some(kind.to_string());
            }
        }
        if let Some((version, status)) = http::parse_response(payload) {
            let h = self.facts.http.get_or_insert_with(Default::default);
            if h.status.is_none() {
                h.status = Some(status);
                h.resp_version = Some(version);
            }
            return;
        }
        if let Some((version, cipher)) = tls::parse_server_hello(payload) {
            let t = self.facts.tls.get_or_insert_with(Box::default);
            t.server_version = Some(version);
            t.server_cipher = Some(cipher);
            return;
        }
        if let Some(banner) = ssh::parse_banner(payload) {
            self.facts
                .ssh
                .get_or_insert_with(SshFacts::default)
                .server
                .get_or_insert(banner);
            return;
        }
        if ports.0 == 53 || ports.1 == 53 {
            self.dns(payload, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_entropy_calls_counting_patterns_low_and_noise_high() {
        let ping: Vec<u8> = (0..1024u32).map(|i| (i + 16) as u8).collect();
        let windows: Vec<u8> = b"abcdefghijklmnopqrstuvw"
            .iter()
            .copied()
            .cycle()
            .take(1024)
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(delta_entropy(&ping) < 0.01);
        assert!(delta_entropy(&windows) < 1.0, "{}", delta_entropy(&windows));
        assert!(delta_entropy(&noise) > 7.5, "{}", delta_entropy(&noise));
    }

    #[test]
    fn http_request_and_response_fill_one_fact() {
        let mut a = AppState::default();
        a.offer(
            true,
            b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            Carrier::Tcp,
            (40000, 80),
        );
        a.offer(
            false,
            b"HTTP/1.1 404 Not Found\r\n\r\n",
            Carrier::Tcp,
            (40000, 80),
        );
        let h = a.facts.http.unwrap();
        assert_eq!(h.host.as_deref(), Some("example.com"));
        assert_eq!(h.status, Some(404));
    }

    #[test]
    fn connect_records_what_the_tunnel_carried_first() {
        for (first, kind) in [
            (&b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"[..], "tls"),
            (b"SSH-2.0-OpenSSH_9.2p1\r\n", "ssh"),
            (b"EHLO x\r\n", "other"),
        ] {
            let mut a = AppState::default();
            let ports = (40000, 3128);
            a.offer(
                true,
                b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
                Carrier::Tcp,
                ports,
            );
            a.offer(
                false,
                b"HTTP/1.1 200 Connection established\r\n\r\n",
                Carrier::Tcp,
                ports,
            );
            a.offer(true, first, Carrier::Tcp, ports);
            let h = a.facts.http.unwrap();
            assert_eq!(h.after_connect.as_deref(), Some(kind));
        }
    }

    #[test]
    fn a_request_head_split_over_segments_is_gathered() {
        let ports = (40000, 3128);
        let mut a = AppState::default();
        for piece in [
            &b"POST http://h:80/index.html?crap=1 HTTP/1.1\r\n"[..],
            b"Host",
            b": ",
            b"h:80",
            b"\r\n",
            b"Content-Length: 102400\r\n",
            b"\r\n",
        ] {
            a.offer(true, piece, Carrier::Tcp, ports);
        }
        let h = a.facts.http.as_ref().unwrap();
        assert_eq!(
            (h.method.as_deref(), h.host.as_deref()),
            (Some("POST"), Some("h:80"))
        );
        assert!(a.http_buf.is_none());
        // A whole head without Host stays without Host.
        let mut a = AppState::default();
        a.offer(
            true,
            b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
            Carrier::Tcp,
            ports,
        );
        assert!(a.http_buf.is_none() && a.facts.http.unwrap().host.is_none());
    }

    #[test]
    fn connect_notes_a_far_end_that_speaks_first() {
        let ports = (40000, 3128);
        let mut a = AppState::default();
        a.offer(true, b"CONNECT h:443 HTTP/1.0\r\n\r\n", Carrier::Tcp, ports);
        a.offer(
            false,
            b"HTTP/1.0 200 Connection established\r\n\r\n",
            Carrier::Tcp,
            ports,
        );
        a.offer(false, b"id\n", Carrier::Tcp, ports);
        a.offer(true, b"uid=0(root) gid=0(root)\n", Carrier::Tcp, ports);
        let h = a.facts.http.unwrap();
        assert_eq!(h.after_connect.as_deref(), Some("server_first"));
    }

    #[test]
    fn dns_flow_counts_every_message() {
        let q = |id: u8, name: &[u8], qtype: u8| {
            let mut m = vec![0, id, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in name.split(|b| *b == b'.') {
                m.push(label.len() as u8);
                m.extend_from_slice(label);
            }
            m.extend_from_slice(&[0, 0, qtype, 0, 1]);
            m
        };
        let mut a = AppState::default();
        let ports = (40000, 53);
        a.offer(true, &q(1, b"aaaa.t.example", 10), Carrier::Udp, ports);
        a.offer(true, &q(2, b"zq9x.t.example", 10), Carrier::Udp, ports);
        a.offer(true, &q(3, b"aaaa.t.example", 1), Carrier::Udp, ports);
        let mut nx = q(3, b"aaaa.t.example", 1);
        nx[2] = 0x81;
        nx[3] = 0x83;
        a.offer(false, &nx, Carrier::Udp, ports);
        assert!(!a.done());
        let d = a.facts.dns.unwrap();
        assert_eq!((d.queries, d.responses, d.distinct_names), (3, 1, 2));
        assert_eq!((d.unusual_qtypes, d.nxdomain, d.name_bytes), (2, 1, 42));
        assert_eq!(d.query.as_deref(), Some("aaaa.t.example"));
        // "aaaa": 0 bits, "aaaa": 0, "zq9x": 2 bits → mean 2/3.
        assert_eq!(d.subdomain_entropy, 0.667);
    }

    #[test]
    fn distinct_names_are_counted_past_the_inline_ones_and_the_bound() {
        let mut t = DnsTally::default();
        // Each name twice: only the first time is new, inline or in the set.
        for i in 0..20u64 {
            assert!(t.add_name(i * 7919), "{i}");
            assert!(!t.add_name(i * 7919), "{i}");
        }
        assert_eq!(usize::from(t.firsts), FIRST_NAMES);
        assert_eq!(t.more.as_ref().map(|m| m.len()), Some(20 - FIRST_NAMES));
        // Past the bound every other name counts as new and nothing more is kept.
        for i in 20..(MAX_DNS_NAMES as u64 + 100) {
            assert!(t.add_name(i * 7919));
        }
        assert_eq!(
            t.more.as_ref().map(|m| m.len()),
            Some(MAX_DNS_NAMES - FIRST_NAMES)
        );
        assert!(!t.add_name(3 * 7919));
        assert!(t.add_name(u64::MAX));
    }

    #[test]
    fn subdomain_entropy_from_the_table_is_the_computed_one() {
        // The former computation, one log2 per distinct character.
        fn direct(sub: &str) -> f64 {
            let mut counts = [0u32; 256];
            let bytes: Vec<u8> = sub.bytes().filter(|&b| b != b'.').collect();
            for &b in &bytes {
                counts[usize::from(b.to_ascii_lowercase())] += 1;
            }
            let n = bytes.len() as f64;
            let mut h = 0.0;
            for &b in &bytes {
                let c = &mut counts[usize::from(b.to_ascii_lowercase())];
                if *c > 0 {
                    let p = f64::from(*c) / n;
                    h -= p * p.log2();
                    *c = 0;
                }
            }
            h
        }
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-.AZ";
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in (1..=140).chain([253]) {
            for skew in 1..=6u64 {
                let sub: String = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        char::from(alphabet[(x % (alphabet.len() as u64 / skew)) as usize])
                    })
                    .collect();
                let sub = sub.trim_matches('.');
                if sub.bytes().all(|b| b == b'.') {
                    continue;
                }
                let name = format!("{sub}.example.com");
                let got = subdomain_entropy(&name).unwrap();
                assert_eq!(got.to_bits(), direct(sub).to_bits(), "{name}");
            }
        }
    }

    #[test]
    fn word_lowercasing_is_the_byte_one() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut bytes = [b'q'; 8];
                bytes[at] = b;
                let want = u64::from_le_bytes(bytes.map(|x| x.to_ascii_lowercase()));
                assert_eq!(ascii_lower(u64::from_le_bytes(bytes)), want, "{b} at {at}");
            }
        }
    }

    #[test]
    fn name_hash_ignores_case_and_tells_names_apart() {
        // Every name of up to 6 characters over a four-letter alphabet (with a dot and
        // a capital), and each of them padded to longer lengths: lengths and the
        // zero-padded last word must count.
        let alphabet = ['a', 'Z', '.', '0'];
        let mut names = vec![String::new()];
        for len in 1..=6u32 {
            for pick in 0..4u32.pow(len) {
                names.push(
                    (0..len)
                        .map(|i| alphabet[(pick / 4u32.pow(i) % 4) as usize])
                        .collect(),
                );
            }
        }
        let long: Vec<String> = names
            .iter()
            .map(|n| format!("{}{n}", "x".repeat(9)))
            .collect();
        names.extend(long);
        let mut hashes = std::collections::HashSet::new();
        for n in &names {
            let h = name_hash(n);
            assert_eq!(h, name_hash(&n.to_ascii_lowercase()), "{n}");
            assert_eq!(h, name_hash(&n.to_ascii_uppercase()), "{n}");
            hashes.insert(h);
        }
        let distinct: std::collections::HashSet<String> =
            names.iter().map(|n| n.to_ascii_lowercase()).collect();
        assert_eq!(hashes.len(), distinct.len());
    }

    #[test]
    fn subdomain_entropy_skips_registered_domain() {
        assert_eq!(subdomain_entropy("example.com"), None);
        assert_eq!(subdomain_entropy("ab.example.com."), Some(1.0));
    }

    #[test]
    fn ssh_banners_both_directions() {
        let mut a = AppState::default();
        a.offer(true, b"SSH-2.0-OpenSSH_9.2\r\n", Carrier::Tcp, (40000, 22));
        a.offer(false, b"SSH-2.0-dropbear\r\n", Carrier::Tcp, (40000, 22));
        let s = a.facts.ssh.unwrap();
        assert_eq!(s.client.as_deref(), Some("SSH-2.0-OpenSSH_9.2"));
        assert_eq!(s.server.as_deref(), Some("SSH-2.0-dropbear"));
    }
}
