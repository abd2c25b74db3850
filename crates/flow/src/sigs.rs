//! Content signatures in the flow table: each rule's pattern is looked for in the
//! first bytes of each direction — TCP as a stream in arrival order (a pattern split
//! across segments is found: the last bytes of the previous segment are kept), UDP and
//! ICMP per payload in the first [`DATAGRAMS`] payloads of each direction. A rule
//! matches once per flow; the hits go on the record (`signatures`), the verdict is the
//! `signature` detector's.
//!
//! Searching stops for a direction once it has passed every rule's `offset + depth`,
//! so a bulk transfer costs its first few packets only. The state is a box per flow
//! with payload, allocated only when some rule may match the flow's protocol.
//!
//! All rules are looked for in one pass. The bytes are searched as given and, when a
//! rule is case-insensitive, once more in ASCII lower case; one leftmost-first
//! Aho-Corasick searcher of every pattern (the case-insensitive ones lowered), SIMD
//! accelerated, finds each position where some pattern starts, and there each rule not
//! yet matched is compared directly, so patterns that overlap or start together are all
//! seen. A rule takes its first occurrence inside its own window. (One `memmem` search
//! per rule and payload cost ~2,700 instructions a payload with the shipped eleven
//! rules, a fifteenth of the packet thread on the benchmark corpus; an overlapping
//! automaton search, byte by byte, as much.)

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};
use tunnelwatch_model::{IpProto, SignatureHit, SignatureRule};

/// Payloads per direction of a UDP or ICMP flow that are searched.
pub const DATAGRAMS: u16 = 16;

/// Most rules (a match is remembered as one bit).
pub const MAX_RULES: usize = 64;

/// Longest pattern; the bytes kept between TCP segments are one less.
const MAX_PATTERN: usize = 64;

struct Rule {
    name: String,
    /// The pattern (lowered when `nocase`).
    bytes: Vec<u8>,
    nocase: bool,
    /// `Some(true)`: originator only; `Some(false)`: responder only.
    orig: Option<bool>,
    start: u32,
    end: u32,
    ports: Vec<u16>,
    not_ports: Vec<u16>,
    proto: Option<&'static str>,
}

/// Compiled rules.
#[derive(Default)]
pub struct Signatures {
    rules: Vec<Rule>,
    /// Where any pattern starts (`None` without rules).
    starts: Option<AhoCorasick>,
    /// Largest `offset + depth` of any rule.
    end: u32,
    /// The case-insensitive rules (bit per rule).
    nocase: u64,
    /// Whether some rule may match TCP, UDP, ICMP, other protocols (see
    /// [`Signatures::covers`]).
    protos: [bool; 4],
}

impl std::fmt::Debug for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| &r.name))
            .finish()
    }
}

impl Signatures {
    /// Compiles `rules`, or says which one is unusable and why.
    pub fn compile(rules: &[SignatureRule]) -> Result<Self, String> {
        if rules.len() > MAX_RULES {
            return Err(format!("{} signatures; at most {MAX_RULES}", rules.len()));
        }
        let mut out = Signatures::default();
        for r in rules {
            let mut bytes = r
                .bytes()
                .map_err(|e| format!("signature {}: {e}", r.name))?;
            if r.nocase {
                bytes.make_ascii_lowercase();
                out.nocase |= 1 << out.rules.len();
            }
            let end = r.offset.saturating_add(r.depth);
            out.end = out.end.max(end);
            let proto = match r.proto.as_str() {
                "tcp" => Some("tcp"),
                "udp" => Some("udp"),
                "icmp" => Some("icmp"),
                _ => None,
            };
            match proto {
                Some("tcp") => out.protos[0] = true,
                Some("udp") => out.protos[1] = true,
                Some("icmp") => out.protos[2] = true,
                _ => out.protos = [true; 4],
            }
            out.rules.push(Rule {
                name: r.name.clone(),
                bytes,
                nocase: r.nocase,
                orig: match r.direction.as_str() {
                    "orig" => Some(true),
                    "resp" => Some(false),
                    _ => None,
                },
                start: r.offset,
                end,
                ports: r.ports.clone(),
                not_ports: r.not_ports.clone(),
                proto,
            });
        }
        if !out.rules.is_empty() {
            let starts = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostFirst)
                .build(out.rules.iter().map(|r| &r.bytes))
                .map_err(|e| format!("signatures: {e}"))?;
            out.starts = Some(starts);
        }
        Ok(out)
    }

    /// Whether any rule may match a flow of `proto` (a flow of another protocol gets
    /// no signature state).
    pub fn covers(&self, proto: IpProto) -> bool {
        match proto {
            IpProto::TCP => self.protos[0],
            IpProto::UDP => self.protos[1],
            IpProto::ICMP | IpProto::ICMPV6 => self.protos[2],
            _ => self.protos[3],
        }
    }
}

/// Per-flow state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigState {
    /// Stream bytes seen per direction (TCP), payloads searched (others).
    seen: [u32; 2],
    /// The last bytes of each direction's previous TCP segment.
    tail: [Vec<u8>; 2],
    matched: u64,
    hits: Vec<(u8, bool, u32)>,
}

impl SigState {
    /// Whether any more bytes of direction `orig` could match.
    pub fn wants(&self, set: &Signatures, orig: bool, stream: bool) -> bool {
        let d = usize::from(!orig);
        if stream {
            self.seen[d] < set.end
        } else {
            self.seen[d] < u32::from(DATAGRAMS)
        }
    }

    /// Searches one payload. `wire_len`: its length on the wire (`payload` may be cut
    /// by the snap length); `port`: the flow's server port; `scratch`: reused buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        set: &Signatures,
        proto: IpProto,
        port: u16,
        orig: bool,
        payload: &[u8],
        wire_len: u32,
        scratch: &mut Vec<u8>,
    ) {
        let d = usize::from(!orig);
        let stream = proto == IpProto::TCP;
        let proto_name = proto.transport_name();
        scratch.clear();
        let base = if stream {
            let start = self.seen[d];
            if start >= set.end {
                return;
            }
            let take = payload.len().min((set.end - start) as usize);
            scratch.extend_from_slice(&self.tail[d]);
            scratch.extend_from_slice(&payload[..take]);
            self.seen[d] = start.saturating_add(wire_len);
            let keep = scratch.len().min(MAX_PATTERN - 1);
            self.tail[d].clear();
            self.tail[d].extend_from_slice(&scratch[scratch.len() - keep..]);
            start - (scratch.len() - take) as u32
        } else {
            if self.seen[d] >= u32::from(DATAGRAMS) {
                return;
            }
            self.seen[d] += 1;
            scratch.extend_from_slice(&payload[..payload.len().min(set.end as usize)]);
            0
        };
        // The rules this payload can still match: not matched yet, for this side,
        // protocol and port, and with room for the pattern where their window (stream or
        // payload offsets) and these bytes overlap.
        let plain = scratch.len();
        let end = u64::from(base) + plain as u64;
        let mut want = 0u64;
        for (i, r) in set.rules.iter().enumerate() {
            if self.matched & (1 << i) == 0
                && u64::from(base).max(r.start.into()) + r.bytes.len() as u64
                    <= end.min(r.end.into())
                && r.orig.is_none_or(|o| o == orig)
                && r.proto.is_none_or(|p| p == proto_name)
                && (r.ports.is_empty() || r.ports.contains(&port))
                && !r.not_ports.contains(&port)
            {
                want |= 1 << i;
            }
        }
        if want == 0 {
            return;
        }
        // Lower-cased bytes only for a case-insensitive rule.
        if want & set.nocase != 0 {
            scratch.extend_from_within(..plain);
            scratch[plain..].make_ascii_lowercase();
        }
        // Each wanted rule's first occurrence inside its window (`offset..offset+depth`
        // of the direction, here relative to `base`): every position where some pattern
        // starts, in order, and there every rule still wanted.
        let mut found = 0u64;
        let mut at = [0u32; MAX_RULES];
        let mut from = 0;
        while let Some(m) = set
            .starts
            .as_ref()
            .and_then(|s| s.find(Input::new(&scratch[..]).span(from..scratch.len())))
        {
            let (half, lowered) = if m.start() < plain {
                (&scratch[..plain], false)
            } else {
                (&scratch[plain..], true)
            };
            let p = m.start() - if lowered { plain } else { 0 };
            let mut left = want & !found;
            while left != 0 {
                let i = left.trailing_zeros() as usize;
                left &= left - 1;
                let r = &set.rules[i];
                let (abs, end) = (u64::from(base) + p as u64, p + r.bytes.len());
                if r.nocase == lowered
                    && abs >= u64::from(r.start)
                    && abs + r.bytes.len() as u64 <= u64::from(r.end)
                    && half.get(p..end) == Some(&r.bytes[..])
                {
                    found |= 1 << i;
                    at[i] = base.saturating_add(p as u32);
                }
            }
            if want & !found == 0 {
                break;
            }
            from = m.start() + 1;
        }
        // In rule order, as one search per rule gave them.
        self.matched |= found;
        while found != 0 {
            let i = found.trailing_zeros() as usize;
            found &= found - 1;
            self.hits.push((i as u8, orig, at[i]));
        }
    }

    /// Swaps the roles of the two sides.
    pub fn flip(&mut self) {
        self.seen.swap(0, 1);
        self.tail.swap(0, 1);
        for h in &mut self.hits {
            h.1 = !h.1;
        }
    }

    /// The hits, as the record shows them.
    pub fn hits(&self, set: &Signatures) -> Vec<SignatureHit> {
        self.hits
            .iter()
            .filter_map(|&(i, orig, offset)| {
                Some(SignatureHit {
                    name: set.rules.get(usize::from(i))?.name.clone(),
                    dir: if orig { "orig" } else { "resp" }.into(),
                    offset: u64::from(offset),
                })
            })
            .collect()
    }

    /// Whether nothing matched and nothing more can (the box may go).
    pub fn spent(&self, set: &Signatures, stream: bool) -> bool {
        self.hits.is_empty() && !self.wants(set, true, stream) && !self.wants(set, false, stream)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.tail[0].capacity() + self.tail[1].capacity() + 9 * self.hits.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnelwatch_model::{Category, Severity};

    fn rule(name: &str, pattern: &str) -> SignatureRule {
        SignatureRule {
            name: name.into(),
            pattern: Some(pattern.into()),
            hex: None,
            direction: "any".into(),
            offset: 0,
            depth: 4096,
            nocase: false,
            ports: vec![],
            not_ports: vec![22],
            proto: "any".into(),
            category: Category::Tunnel,
            severity: Severity::High,
            message: "m".into(),
        }
    }

    fn feed(
        set: &Signatures,
        proto: IpProto,
        port: u16,
        parts: &[(bool, &[u8])],
    ) -> Vec<SignatureHit> {
        let mut s = SigState::default();
        let mut scratch = Vec::new();
        for (orig, p) in parts {
            s.observe(set, proto, port, *orig, p, p.len() as u32, &mut scratch);
        }
        s.hits(set)
    }

    #[test]
    fn flows_of_a_protocol_no_rule_names_get_no_state() {
        let mut tcp = rule("ssh", "SSH-2.0-");
        tcp.proto = "tcp".into();
        let set = Signatures::compile(&[tcp.clone()]).unwrap();
        assert!(set.covers(IpProto::TCP));
        for p in [IpProto::UDP, IpProto::ICMP, IpProto::ICMPV6, IpProto(47)] {
            assert!(!set.covers(p), "{p:?}");
        }
        let mut udp = rule("dns", "x");
        udp.proto = "udp".into();
        let set = Signatures::compile(&[tcp.clone(), udp]).unwrap();
        assert!(set.covers(IpProto::UDP) && !set.covers(IpProto::ICMP));
        // A rule for any protocol covers them all, also those without ports.
        let set = Signatures::compile(&[tcp, rule("any", "x")]).unwrap();
        for p in [IpProto::UDP, IpProto::ICMPV6, IpProto(47)] {
            assert!(set.covers(p), "{p:?}");
        }
        assert!(!Signatures::default().covers(IpProto::TCP));
    }

    #[test]
    fn a_banner_split_across_segments_is_found_with_its_stream_offset() {
        let set = Signatures::compile(&[rule("ssh", "SSH-2.0-")]).unwrap();
        let connect = b"CONNECT 10.0.0.3:22 HTTP/1.1\r\nHost: x\r\n\r\n";
        let hits = feed(
            &set,
            IpProto::TCP,
            3128,
            &[
                (true, connect),
                (false, b"HTTP/1.0 200 OK\r\n\r\n"),
                (true, b"SSH-2."),
                (true, b"0-OpenSSH_9.2\r\n"),
            ],
        );
        assert_eq!(hits.len(), 1);
        assert_eq!(
            (hits[0].dir.as_str(), hits[0].offset),
            ("orig", connect.len() as u64)
        );
        // Not on the SSH port, and not past the depth.
        assert!(feed(&set, IpProto::TCP, 22, &[(true, b"SSH-2.0-x")]).is_empty());
        let mut deep = rule("ssh", "SSH-2.0-");
        deep.depth = 10;
        let set = Signatures::compile(&[deep]).unwrap();
        assert!(feed(
            &set,
            IpProto::TCP,
            80,
            &[(true, b"GET / HTTP/1.1\r\n"), (true, b"SSH-2.0-")]
        )
        .is_empty());
    }

    #[test]
    fn nocase_direction_offset_and_datagrams() {
        let mut cmd = rule("cmd", "microsoft windows [version");
        cmd.nocase = true;
        cmd.direction = "orig".into();
        let mut magic = rule("ptunnel", "x");
        magic.pattern = None;
        magic.hex = Some("de ad c0 de".into());
        magic.depth = 4;
        magic.proto = "icmp".into();
        let set = Signatures::compile(&[cmd, magic]).unwrap();
        let banner = b"Microsoft Windows [Version 10.0.19045.3570]\r\n";
        assert_eq!(feed(&set, IpProto::TCP, 443, &[(true, banner)]).len(), 1);
        assert!(
            feed(&set, IpProto::TCP, 443, &[(false, banner)]).is_empty(),
            "responder side"
        );
        let echo = [0xde, 0xad, 0xc0, 0xde, 0, 0, 0, 1];
        let hits = feed(&set, IpProto::ICMP, 0, &[(false, &echo[..])]);
        assert_eq!((hits.len(), hits[0].offset), (1, 0));
        // At offset 4 of a payload: past the rule's depth.
        let late = [0, 0, 0, 0, 0xde, 0xad, 0xc0, 0xde];
        assert!(feed(&set, IpProto::ICMP, 0, &[(true, &late[..])]).is_empty());
        assert!(
            feed(&set, IpProto::UDP, 0, &[(true, &echo[..])]).is_empty(),
            "icmp only"
        );
    }

    /// The definition, one rule at a time: a rule's hit is the first occurrence of its
    /// pattern wholly inside its window of the direction's stream (TCP: the bytes so
    /// far, reported with the segment its last byte arrived in) or of one of the first
    /// payloads (others); a segment's hits in rule order.
    fn reference(
        rules: &[SignatureRule],
        proto: IpProto,
        port: u16,
        parts: &[(bool, Vec<u8>)],
    ) -> Vec<(String, bool, u64)> {
        let pats: Vec<Vec<u8>> = rules.iter().map(|r| r.bytes().unwrap()).collect();
        let stream = proto == IpProto::TCP;
        let mut seen: [Vec<u8>; 2] = Default::default();
        let mut count = [0u16; 2];
        let mut matched = vec![false; rules.len()];
        let mut out = Vec::new();
        for (orig, p) in parts {
            let d = usize::from(!orig);
            let (hay, cut) = if stream {
                seen[d].extend_from_slice(p);
                (seen[d].clone(), seen[d].len() - p.len())
            } else {
                count[d] += 1;
                if count[d] > DATAGRAMS {
                    continue;
                }
                (p.clone(), 0)
            };
            for (i, r) in rules.iter().enumerate() {
                let dir_ok = match r.direction.as_str() {
                    "orig" => *orig,
                    "resp" => !orig,
                    _ => true,
                };
                let proto_ok = r.proto == "any" || r.proto == proto.transport_name();
                if matched[i] || !dir_ok || !proto_ok || r.not_ports.contains(&port) {
                    continue;
                }
                let pat = &pats[i];
                let fold = |b: &u8| if r.nocase { b.to_ascii_lowercase() } else { *b };
                let lo = r.offset as usize;
                let hi = (r.offset + r.depth) as usize;
                let first = (lo..hay.len().min(hi).saturating_sub(pat.len() - 1)).find(|&at| {
                    at + pat.len() <= hi
                        && hay[at..at + pat.len()]
                            .iter()
                            .map(fold)
                            .eq(pat.iter().map(fold))
                });
                // A stream occurrence counts with the segment that completes it.
                if let Some(at) = first.filter(|&at| !stream || at + pat.len() > cut) {
                    matched[i] = true;
                    out.push((r.name.clone(), *orig, at as u64));
                }
            }
        }
        out
    }

    #[test]
    fn one_pass_finds_what_one_search_per_rule_finds() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // A small alphabet in both cases, so that patterns overlap, repeat and nest.
        let alphabet = b"abAB";
        for case in 0..3000 {
            let mut rules = Vec::new();
            for i in 0..1 + next(6) {
                let len = 1 + next(4) as usize;
                let pat: String = (0..len)
                    .map(|_| alphabet[next(4) as usize] as char)
                    .collect();
                let mut r = rule(&format!("r{i}"), &pat);
                r.nocase = next(2) == 0;
                r.offset = next(12) as u32;
                r.depth = len as u32 + next(20) as u32;
                r.direction = ["any", "orig", "resp"][next(3) as usize].into();
                r.proto = ["any", "tcp", "udp"][next(3) as usize].into();
                rules.push(r);
            }
            let set = Signatures::compile(&rules).unwrap();
            let proto = [IpProto::TCP, IpProto::UDP][next(2) as usize];
            let parts: Vec<(bool, Vec<u8>)> = (0..next(8))
                .map(|_| {
                    let n = next(10) as usize;
                    (
                        next(2) == 0,
                        (0..n).map(|_| alphabet[next(4) as usize]).collect(),
                    )
                })
                .collect();
            let refs: Vec<(bool, &[u8])> = parts.iter().map(|(o, p)| (*o, &p[..])).collect();
            let got: Vec<(String, bool, u64)> = feed(&set, proto, 80, &refs)
                .into_iter()
                .map(|h| (h.name, h.dir == "orig", h.offset))
                .collect();
            assert_eq!(
                got,
                reference(&rules, proto, 80, &parts),
                "case {case}: {rules:?} {parts:?}"
            );
        }
    }

    #[test]
    fn bad_rules_name_themselves() {
        let mut r = rule("broken", "x");
        r.hex = Some("00".into());
        assert!(Signatures::compile(&[r])
            .unwrap_err()
            .contains("signature broken"));
    }
}
