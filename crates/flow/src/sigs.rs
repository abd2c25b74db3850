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

use memchr::memmem::Finder;
use tunnelwatch_model::{IpProto, SignatureHit, SignatureRule};

/// Payloads per direction of a UDP or ICMP flow that are searched.
pub const DATAGRAMS: u16 = 16;

/// Most rules (a match is remembered as one bit).
pub const MAX_RULES: usize = 64;

/// Longest pattern; the bytes kept between TCP segments are one less.
const MAX_PATTERN: usize = 64;

struct Rule {
    name: String,
    finder: Finder<'static>,
    len: usize,
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
    /// Largest `offset + depth` of any rule.
    end: u32,
    nocase: bool,
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
                out.nocase = true;
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
                len: bytes.len(),
                finder: Finder::new(&bytes).into_owned(),
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
        let plain = scratch.len();
        if set.nocase {
            scratch.extend_from_within(..plain);
            scratch[plain..].make_ascii_lowercase();
        }
        for (i, r) in set.rules.iter().enumerate() {
            if self.matched & (1 << i) != 0
                || r.orig.is_some_and(|o| o != orig)
                || r.proto.is_some_and(|p| p != proto_name)
                || (!r.ports.is_empty() && !r.ports.contains(&port))
                || r.not_ports.contains(&port)
            {
                continue;
            }
            let hay = if r.nocase {
                &scratch[plain..]
            } else {
                &scratch[..plain]
            };
            let lo = (r.start.saturating_sub(base) as usize).min(hay.len());
            let hi = (r.end.saturating_sub(base) as usize).min(hay.len());
            if hi < lo + r.len {
                continue;
            }
            if let Some(pos) = r.finder.find(&hay[lo..hi]) {
                self.matched |= 1 << i;
                self.hits
                    .push((i as u8, orig, base.saturating_add((lo + pos) as u32)));
            }
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

    #[test]
    fn bad_rules_name_themselves() {
        let mut r = rule("broken", "x");
        r.hex = Some("00".into());
        assert!(Signatures::compile(&[r])
            .unwrap_err()
            .contains("signature broken"));
    }
}
