//! Content signatures: byte patterns that should not appear where they do (an SSH
//! banner in a web connection, a shell's job-control message on port 443, a tunnelling
//! tool's magic). The rule format is the one of `docs/signatures.toml` (documented in
//! `docs/specs/signatures.md`); the flow table matches rules against the first bytes
//! of each direction and records [`SignatureHit`]s; the `signature` detector turns hits
//! into alerts with each rule's category and severity.

use serde::{Deserialize, Serialize};

use crate::{Category, Severity};

/// One content rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRule {
    /// Unique name, shown in records and alerts.
    pub name: String,
    /// The bytes as text (escapes `\r`, `\n`, `\t`, `\\`, `\xHH` allowed)...
    #[serde(default)]
    pub pattern: Option<String>,
    /// ...or as hex digits (spaces allowed). Exactly one of the two.
    #[serde(default)]
    pub hex: Option<String>,
    /// Which side sends it: `orig`, `resp` or `any`.
    #[serde(default = "any")]
    pub direction: String,
    /// Bytes of the direction's stream (TCP) or of each payload (UDP, ICMP) skipped
    /// before the pattern may start.
    #[serde(default)]
    pub offset: u32,
    /// How many bytes from `offset` are searched; the whole pattern must lie within.
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// ASCII case-insensitive.
    #[serde(default)]
    pub nocase: bool,
    /// Only flows whose server port (`resp_p`) is one of these (empty: any).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Never flows whose server port is one of these.
    #[serde(default)]
    pub not_ports: Vec<u16>,
    /// `tcp`, `udp`, `icmp` (v4 and v6) or `any`.
    #[serde(default = "any")]
    pub proto: String,
    /// The alert's category.
    #[serde(default = "tunnel")]
    pub category: Category,
    /// The alert's severity.
    #[serde(default = "medium")]
    pub severity: Severity,
    /// The alert's message.
    pub message: String,
}

fn any() -> String {
    "any".into()
}
fn default_depth() -> u32 {
    4096
}
fn tunnel() -> Category {
    Category::Tunnel
}
fn medium() -> Severity {
    Severity::Medium
}

impl SignatureRule {
    /// The bytes to look for, or why the rule is unusable.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let b = match (&self.pattern, &self.hex) {
            (Some(p), None) => unescape(p)?,
            (None, Some(h)) => {
                let digits: Vec<u8> = h.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
                if digits.len() % 2 != 0 {
                    return Err("hex: an odd number of digits".into());
                }
                digits
                    .chunks(2)
                    .map(|c| {
                        std::str::from_utf8(c)
                            .ok()
                            .and_then(|s| u8::from_str_radix(s, 16).ok())
                            .ok_or_else(|| {
                                format!("hex: '{}' is not a byte", String::from_utf8_lossy(c))
                            })
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err("give exactly one of pattern and hex".into()),
        };
        if b.is_empty() || b.len() > 64 {
            return Err(format!(
                "the pattern must be 1 to 64 bytes (it is {})",
                b.len()
            ));
        }
        if !matches!(self.direction.as_str(), "orig" | "resp" | "any") {
            return Err(format!(
                "direction '{}' is not orig, resp or any",
                self.direction
            ));
        }
        if !matches!(self.proto.as_str(), "tcp" | "udp" | "icmp" | "any") {
            return Err(format!(
                "proto '{}' is not tcp, udp, icmp or any",
                self.proto
            ));
        }
        if (self.depth as usize) < b.len() {
            return Err("depth is shorter than the pattern".into());
        }
        Ok(b)
    }
}

/// `\r`, `\n`, `\t`, `\\`, `\xHH`; anything else is itself.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let h = s
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad \\x escape at byte {i}"))?;
                out.push(h);
                i += 4;
                continue;
            }
            _ => return Err(format!("unknown escape at byte {i}")),
        }
        i += 2;
    }
    Ok(out)
}

/// A rule that matched a flow: where, first time only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureHit {
    /// The rule's name.
    pub name: String,
    /// `orig` or `resp`: the side that sent the bytes.
    pub dir: String,
    /// Where the match starts: the offset in that side's stream (TCP), or in its
    /// payload (UDP, ICMP).
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: Option<&str>, hex: Option<&str>) -> SignatureRule {
        SignatureRule {
            name: "t".into(),
            pattern: pattern.map(Into::into),
            hex: hex.map(Into::into),
            direction: "any".into(),
            offset: 0,
            depth: 100,
            nocase: false,
            ports: vec![],
            not_ports: vec![],
            proto: "any".into(),
            category: Category::Tunnel,
            severity: Severity::High,
            message: "m".into(),
        }
    }

    #[test]
    fn patterns_and_hex_decode_and_bad_ones_say_why() {
        assert_eq!(
            rule(Some("a\\r\\n\\x00"), None).bytes().unwrap(),
            b"a\r\n\0"
        );
        assert_eq!(
            rule(None, Some("de ad c0 de")).bytes().unwrap(),
            [0xde, 0xad, 0xc0, 0xde]
        );
        assert!(rule(None, Some("dea")).bytes().unwrap_err().contains("odd"));
        assert!(rule(Some("x"), Some("00")).bytes().is_err());
        assert!(rule(Some("\\q"), None)
            .bytes()
            .unwrap_err()
            .contains("escape"));
        assert!(rule(Some(""), None).bytes().is_err());
    }
}
