//! TLS ClientHello and ServerHello facts, with JA3 and JA4 client fingerprints.
//!
//! The first handshake record of each direction tells what the client is (versions,
//! server name, ALPN, and the JA3/JA4 fingerprints of its cipher and extension lists)
//! and what the server chose. This module reads those from the first record at the
//! start of a payload; [`handshake_bytes_needed`] tells the flow table how many bytes
//! to buffer first. A hello split across several records is read only as far as the
//! first record goes.
//!
//! `tls-parser` reads the record header, the fixed part of the hellos and the contents
//! of the extensions we use (server name, ALPN, groups, point formats, signature
//! algorithms, supported versions). The extension block itself is walked here, because
//! both fingerprints need every extension type in wire order and a cut block must
//! still give the extensions before the cut.
//!
//! Fingerprints are computed only from a complete extension block: a fingerprint of
//! part of a list is a different, wrong fingerprint, and a wrong JA3 that matches a
//! blocklist entry is worse than none. A cut ClientHello still reports its version,
//! SNI and ALPN if they came before the cut (the version then falls back to the legacy
//! `client_version` when `supported_versions` was not reached).
//!
//! JA3 follows the Salesforce definition (`SSLVersion,Ciphers,Extensions,
//! EllipticCurves,EllipticCurvePointFormats`, decimal, GREASE removed); JA4 follows
//! FoxIO's `technical_details/JA4.md` for TLS over TCP (`t`), ignoring GREASE in every
//! list including the signature algorithms. GREASE values are exactly those of RFC 8701
//! (`0x0a0a`, `0x1a1a`, … `0xfafa`).

use std::fmt::Write as _;

use md5::{Digest, Md5};
use sha2::Sha256;
use tls_parser::{
    parse_tls_client_hello_extension, parse_tls_handshake_client_hello,
    parse_tls_handshake_server_hello, parse_tls_record_header, parse_tls_server_hello_extension,
    SNIType, TlsExtension, TlsRecordType,
};
use tunnelwatch_model::TlsFacts;

/// Length of a TLS record header: type, version, length.
const RECORD_HEADER_LEN: usize = 5;
/// Length of a handshake message header: type and 24-bit length.
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record body taken into account (2^14, RFC 8446 §5.1).
const MAX_RECORD_LEN: usize = 16 * 1024;
/// Record versions accepted for a handshake record: SSL 3.0 to TLS 1.3.
const RECORD_VERSIONS: std::ops::RangeInclusive<u16> = 0x0300..=0x0304;
/// Record content type of handshake records.
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Handshake message types.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_SERVER_HELLO: u8 = 2;

/// Extension types this module reads (IANA TLS ExtensionType registry).
mod ext {
    pub const SERVER_NAME: u16 = 0x0000;
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    pub const EC_POINT_FORMATS: u16 = 0x000b;
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    pub const ALPN: u16 = 0x0010;
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
}

/// If `payload` starts with a TLS handshake record (content type 22, version 0x0300..=0x0304),
/// returns the number of bytes needed to hold the whole first handshake message
/// (record header + handshake length, allowing the message to span several records is NOT
/// required: just 5 + record length, capped at 16 KiB + 5), else None. Used to decide whether
/// to buffer more segments.
///
/// A payload of one to four bytes that could be the start of such a record gives 5:
/// the header is needed before anything else can be said. A record length of zero is
/// no handshake (`None`).
pub fn handshake_bytes_needed(payload: &[u8]) -> Option<usize> {
    if payload.len() < RECORD_HEADER_LEN {
        let plausible = match payload {
            [] => false,
            [kind] => *kind == CONTENT_TYPE_HANDSHAKE,
            [kind, major] => *kind == CONTENT_TYPE_HANDSHAKE && *major == 3,
            [kind, major, minor, ..] => {
                *kind == CONTENT_TYPE_HANDSHAKE && *major == 3 && *minor <= 4
            }
        };
        return plausible.then_some(RECORD_HEADER_LEN);
    }
    let len = handshake_record_len(payload)?;
    Some(RECORD_HEADER_LEN + len.min(MAX_RECORD_LEN))
}

/// Parses a ClientHello (in a TLS record at the start of payload). Fills:
///
/// - `version`: the highest non-GREASE version from supported_versions if present, else
///   the legacy client_version; spelled "TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0",
///   "SSLv3", and other values as lowercase hex (`0x7f1c` for a TLS 1.3 draft);
/// - `sni`; `alpn`: all offered protocols, as UTF-8 lossy strings;
/// - `ja3`: the JA3 string `SSLVersion,Ciphers,Extensions,EllipticCurves,
///   EllipticCurvePointFormats` with GREASE values (RFC 8701) removed, decimal values
///   joined by '-'; `ja3_hash`: the lowercase hex MD5 of `ja3`;
/// - `ja4`: FoxIO JA4 for TCP: "t" + 2-char version + 'd'/'i' (SNI present or not) +
///   2-digit cipher count + 2-digit extension count (both excluding GREASE, capped at
///   99) + 2-char ALPN (first and last char of the first ALPN value; "00" if none;
///   non-alphanumeric handled per the JA4 spec), then "_" and the first 12 hex chars of
///   the SHA-256 of the sorted cipher list (4-digit lowercase hex, comma-joined), then
///   "_" and the first 12 hex chars of the SHA-256 of the sorted extension list
///   (excluding GREASE, SNI 0x0000 and ALPN 0x0010, comma-joined) followed by "_" and
///   the signature algorithms in original order if any; "000000000000" for an empty
///   list.
///
/// If the ClientHello is cut short (record longer than the payload), what can be read is
/// still returned, but only if the cipher list and at least the extension block header
/// were complete; otherwise None. The fingerprints are `None` when the extension block
/// was cut (see the module doc). `server_version`/`server_cipher` stay None.
pub fn parse_client_hello(payload: &[u8]) -> Option<TlsFacts> {
    let handshake = first_handshake(payload)?;
    if handshake.msg_type != HANDSHAKE_CLIENT_HELLO {
        return None;
    }
    let (rest, hello) = parse_tls_handshake_client_hello(handshake.body).ok()?;
    // `tls-parser` gives the extension block only when it is whole; otherwise `rest`
    // starts at its length field.
    let (block, block_whole) = match hello.ext {
        Some(block) => (block, true),
        None => match rest.split_first_chunk::<2>() {
            Some((_, cut)) => (cut, false),
            // No extension block: normal for SSLv3 and old TLS clients.
            None if handshake.complete => (&[][..], true),
            None => return None,
        },
    };
    let mut extensions = ClientExtensions::default();
    let walked_whole = extensions.read(block);

    let legacy_version = hello.version.0;
    let version = highest_version(&extensions.versions).unwrap_or(legacy_version);
    let mut facts = TlsFacts {
        version: Some(version_name(version)),
        sni: extensions.sni.map(lossy),
        alpn: extensions.alpn.iter().map(|p| lossy(p)).collect(),
        ..TlsFacts::default()
    };
    if block_whole && walked_whole {
        let ciphers: Vec<u16> = hello
            .ciphers
            .iter()
            .map(|c| c.0)
            .filter(|&c| !is_grease(c))
            .collect();
        let ja3 = ja3_string(legacy_version, &ciphers, &extensions);
        let mut ja3_hash = String::with_capacity(32);
        push_hex(&mut ja3_hash, &Md5::digest(ja3.as_bytes()));
        facts.ja3 = Some(ja3);
        facts.ja3_hash = Some(ja3_hash);
        facts.ja4 = Some(ja4(version, &ciphers, &extensions));
    }
    Some(facts)
}

/// Parses a ServerHello: returns (selected version string as above, honouring the
/// supported_versions extension; cipher suite as "0x1301"-style lowercase hex string).
///
/// A ServerHello cut before its extension block is `None` (the version it selects may
/// be in the block); one without extensions at all reports its legacy version.
pub fn parse_server_hello(payload: &[u8]) -> Option<(String, String)> {
    let handshake = first_handshake(payload)?;
    if handshake.msg_type != HANDSHAKE_SERVER_HELLO {
        return None;
    }
    let (_, hello) = parse_tls_handshake_server_hello(handshake.body).ok()?;
    let mut version = hello.version.0;
    match hello.ext {
        Some(block) => {
            for (ext_type, raw) in ExtensionWalk::new(block) {
                if ext_type != ext::SUPPORTED_VERSIONS {
                    continue;
                }
                if let Ok((_, TlsExtension::SupportedVersions(selected))) =
                    parse_tls_server_hello_extension(raw)
                {
                    if let [selected] = selected.as_slice() {
                        version = selected.0;
                    }
                }
            }
        }
        None if !handshake.complete => return None,
        None => {}
    }
    Some((version_name(version), format!("0x{:04x}", hello.cipher.0)))
}

/// True for the GREASE values of RFC 8701: `0x0a0a`, `0x1a1a`, … `0xfafa`.
fn is_grease(value: u16) -> bool {
    let [high, low] = value.to_be_bytes();
    high == low && low & 0x0f == 0x0a
}

/// The body length of the handshake record at the start of `payload`, if it is one.
fn handshake_record_len(payload: &[u8]) -> Option<usize> {
    let (_, header) = parse_tls_record_header(payload).ok()?;
    let plausible = header.record_type == TlsRecordType::Handshake
        && RECORD_VERSIONS.contains(&header.version.0)
        && header.len > 0;
    plausible.then_some(usize::from(header.len))
}

/// The first handshake message of the first record, as far as the payload and the
/// record hold it.
struct Handshake<'a> {
    msg_type: u8,
    /// The message body, cut to what the record and payload hold.
    body: &'a [u8],
    /// True when `body` is the whole message.
    complete: bool,
}

fn first_handshake(payload: &[u8]) -> Option<Handshake<'_>> {
    let record_len = handshake_record_len(payload)?;
    let available = payload.get(RECORD_HEADER_LEN..)?;
    let record = &available[..record_len.min(available.len())];
    let (header, rest) = record.split_first_chunk::<HANDSHAKE_HEADER_LEN>()?;
    let msg_len =
        usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
    Some(Handshake {
        msg_type: header[0],
        body: &rest[..msg_len.min(rest.len())],
        complete: rest.len() >= msg_len,
    })
}

/// Iterates over the extensions of a block in wire order as (type, raw bytes including
/// the 4-byte header). Stops before the first extension cut short; `rest` is then what
/// was left unread (empty when the block was walked whole).
struct ExtensionWalk<'a> {
    rest: &'a [u8],
}

impl<'a> ExtensionWalk<'a> {
    fn new(block: &'a [u8]) -> Self {
        ExtensionWalk { rest: block }
    }
}

impl<'a> Iterator for ExtensionWalk<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (header, data) = self.rest.split_first_chunk::<4>()?;
        let ext_type = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if data.len() < len {
            return None;
        }
        let (raw, rest) = self.rest.split_at(4 + len);
        self.rest = rest;
        Some((ext_type, raw))
    }
}

/// What the fingerprints and facts need from a ClientHello's extensions.
#[derive(Default)]
struct ClientExtensions<'a> {
    /// Every extension type in wire order, GREASE included.
    types: Vec<u16>,
    /// The server_name extension is present (whatever its contents).
    has_sni: bool,
    sni: Option<&'a [u8]>,
    alpn: Vec<&'a [u8]>,
    /// Supported groups in offered order, GREASE included.
    groups: Vec<u16>,
    point_formats: &'a [u8],
    /// Signature algorithms in offered order, GREASE included.
    signature_algorithms: Vec<u16>,
    /// supported_versions in offered order, GREASE included.
    versions: Vec<u16>,
}

impl<'a> ClientExtensions<'a> {
    /// Reads the extensions of `block`; returns true when it was walked to its end.
    fn read(&mut self, block: &'a [u8]) -> bool {
        let mut walk = ExtensionWalk::new(block);
        for (ext_type, raw) in walk.by_ref() {
            self.types.push(ext_type);
            self.read_one(ext_type, raw);
        }
        walk.rest.is_empty()
    }

    /// Takes the contents of the extensions we use; a malformed one keeps only its type.
    fn read_one(&mut self, ext_type: u16, raw: &'a [u8]) {
        if ext_type == ext::SERVER_NAME {
            self.has_sni = true;
        }
        let used = matches!(
            ext_type,
            ext::SERVER_NAME
                | ext::SUPPORTED_GROUPS
                | ext::EC_POINT_FORMATS
                | ext::SIGNATURE_ALGORITHMS
                | ext::ALPN
                | ext::SUPPORTED_VERSIONS
        );
        if !used {
            return;
        }
        let Ok((_, parsed)) = parse_tls_client_hello_extension(raw) else {
            return;
        };
        match parsed {
            TlsExtension::SNI(names) => {
                self.sni = names
                    .iter()
                    .find(|(kind, _)| *kind == SNIType::HostName)
                    .map(|n| n.1);
            }
            TlsExtension::ALPN(protocols) => self.alpn = protocols,
            TlsExtension::EllipticCurves(groups) => {
                self.groups = groups.iter().map(|g| g.0).collect();
            }
            TlsExtension::EcPointFormats(formats) => self.point_formats = formats,
            TlsExtension::SignatureAlgorithms(algorithms) => {
                self.signature_algorithms = algorithms;
            }
            TlsExtension::SupportedVersions(versions) => {
                self.versions = versions.iter().map(|v| v.0).collect();
            }
            _ => {}
        }
    }
}

/// The highest non-GREASE value of a supported_versions list.
fn highest_version(versions: &[u16]) -> Option<u16> {
    versions.iter().copied().filter(|&v| !is_grease(v)).max()
}

/// The name of a protocol version as Wireshark and Zeek print it.
fn version_name(version: u16) -> String {
    match version {
        0x0304 => "TLSv1.3".to_string(),
        0x0303 => "TLSv1.2".to_string(),
        0x0302 => "TLSv1.1".to_string(),
        0x0301 => "TLSv1.0".to_string(),
        0x0300 => "SSLv3".to_string(),
        other => format!("0x{other:04x}"),
    }
}

/// The JA3 string; `ciphers` are already free of GREASE.
fn ja3_string(legacy_version: u16, ciphers: &[u16], extensions: &ClientExtensions<'_>) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{legacy_version},");
    push_decimal_list(&mut out, ciphers.iter().copied());
    out.push(',');
    push_decimal_list(
        &mut out,
        extensions.types.iter().copied().filter(|&t| !is_grease(t)),
    );
    out.push(',');
    push_decimal_list(
        &mut out,
        extensions.groups.iter().copied().filter(|&g| !is_grease(g)),
    );
    out.push(',');
    push_decimal_list(
        &mut out,
        extensions.point_formats.iter().map(|&f| u16::from(f)),
    );
    out
}

fn push_decimal_list(out: &mut String, values: impl Iterator<Item = u16>) {
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push('-');
        }
        let _ = write!(out, "{value}");
    }
}

/// The JA4 fingerprint; `ciphers` are already free of GREASE.
fn ja4(version: u16, ciphers: &[u16], extensions: &ClientExtensions<'_>) -> String {
    let mut out = String::with_capacity(36);
    out.push('t');
    out.push_str(ja4_version(version));
    out.push(if extensions.has_sni { 'd' } else { 'i' });
    let ext_count = extensions.types.iter().filter(|&&t| !is_grease(t)).count();
    let _ = write!(out, "{:02}{:02}", ciphers.len().min(99), ext_count.min(99));
    let [first, last] = ja4_alpn(extensions.alpn.first().copied());
    out.push(char::from(first));
    out.push(char::from(last));

    out.push('_');
    let mut sorted_ciphers = ciphers.to_vec();
    sorted_ciphers.sort_unstable();
    push_ja4_hash(&mut out, &sorted_ciphers, &[]);

    out.push('_');
    let mut sorted_extensions: Vec<u16> = extensions
        .types
        .iter()
        .copied()
        .filter(|&t| !is_grease(t) && t != ext::SERVER_NAME && t != ext::ALPN)
        .collect();
    sorted_extensions.sort_unstable();
    let signature_algorithms: Vec<u16> = extensions
        .signature_algorithms
        .iter()
        .copied()
        .filter(|&a| !is_grease(a))
        .collect();
    push_ja4_hash(&mut out, &sorted_extensions, &signature_algorithms);
    out
}

/// JA4's two-character version code.
fn ja4_version(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's ALPN code: first and last byte of the first protocol if both are ASCII
/// alphanumeric, else the first and last digit of its hex form; `00` when none.
fn ja4_alpn(first_protocol: Option<&[u8]>) -> [u8; 2] {
    match first_protocol {
        Some([first, .., last]) | Some([first @ last]) => {
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                [*first, *last]
            } else {
                [
                    HEX_DIGITS[usize::from(first >> 4)],
                    HEX_DIGITS[usize::from(last & 0x0f)],
                ]
            }
        }
        _ => *b"00",
    }
}

/// Appends the first 12 hex digits of the SHA-256 of `list` as 4-digit hex values,
/// comma-joined, followed by `_` and `suffix` likewise when `suffix` is not empty; or
/// `000000000000` when `list` is empty.
fn push_ja4_hash(out: &mut String, list: &[u16], suffix: &[u16]) {
    if list.is_empty() {
        out.push_str("000000000000");
        return;
    }
    let mut hasher = Sha256::new();
    feed_hex_list(&mut hasher, list);
    if !suffix.is_empty() {
        hasher.update(b"_");
        feed_hex_list(&mut hasher, suffix);
    }
    push_hex(out, &hasher.finalize()[..6]);
}

fn feed_hex_list(hasher: &mut Sha256, values: &[u16]) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        let [high, low] = value.to_be_bytes();
        hasher.update([
            HEX_DIGITS[usize::from(high >> 4)],
            HEX_DIGITS[usize::from(high & 0x0f)],
            HEX_DIGITS[usize::from(low >> 4)],
            HEX_DIGITS[usize::from(low & 0x0f)],
        ]);
    }
}

const HEX_DIGITS: [u8; 16] = *b"0123456789abcdef";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TLS 1.0 ClientHello written out byte by byte, made to carry the first example
    /// of the JA3 README (github.com/salesforce/ja3, README.md, "How it works"):
    /// `769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0`
    /// whose published MD5 is `ada70206e40642a3e4461f35503241d5`.
    #[rustfmt::skip]
    const CLIENT_HELLO_JA3_README: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x6b, // record: handshake, TLS 1.0, 107 bytes
        0x01, 0x00, 0x00, 0x67, // handshake: ClientHello, 103 bytes
        0x03, 0x01, // client_version TLS 1.0 (769)
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
        0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
        0x1c, 0x1d, 0x1e, 0x1f, // random
        0x00, // session id: empty
        0x00, 0x18, // cipher suites: 24 bytes, 12 suites
        0x00, 0x2f, 0x00, 0x35, 0x00, 0x05, 0x00, 0x0a, 0xc0, 0x09, 0xc0, 0x0a, // 47 53 5 10 49161 49162
        0xc0, 0x13, 0xc0, 0x14, 0x00, 0x32, 0x00, 0x38, 0x00, 0x13, 0x00, 0x04, // 49171 49172 50 56 19 4
        0x01, 0x00, // compression methods: 1, null
        0x00, 0x26, // extensions: 38 bytes
        0x00, 0x00, 0x00, 0x10, // server_name, 16 bytes
        0x00, 0x0e, 0x00, 0x00, 0x0b, // list of 14 bytes, host_name of 11 bytes
        b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x18, 0x00, 0x19, // groups 23, 24, 25
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed (0)
    ];

    /// One extension: type, 2-byte length, data.
    fn extension(ext_type: u16, data: &[u8]) -> Vec<u8> {
        let mut out = ext_type.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A list of u16 values behind a length prefix of `prefix_len` (1 or 2) bytes.
    fn u16_list(prefix_len: usize, values: &[u16]) -> Vec<u8> {
        let len = (values.len() * 2) as u16;
        let mut out = len.to_be_bytes()[2 - prefix_len..].to_vec();
        values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_be_bytes()));
        out
    }

    /// server_name with one host_name entry.
    fn sni(name: &str) -> Vec<u8> {
        let mut entry = vec![0x00];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        extension(ext::SERVER_NAME, &data)
    }

    /// ALPN with the given protocols.
    fn alpn(protocols: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for p in protocols {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        extension(ext::ALPN, &data)
    }

    /// A record holding one handshake message.
    fn record(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0x16, 0x03, 0x01];
        out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        out.push(msg_type);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out
    }

    /// A ClientHello record: TLS 1.2 legacy version, a 32-byte session id (as browsers
    /// send), null compression, and the extension block if given.
    fn client_hello(ciphers: &[u16], extensions: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(32);
        body.extend_from_slice(&[0x24; 32]); // session id
        body.extend_from_slice(&u16_list(2, ciphers));
        body.extend_from_slice(&[0x01, 0x00]);
        if let Some(block) = extensions {
            body.extend_from_slice(&(block.len() as u16).to_be_bytes());
            body.extend_from_slice(block);
        }
        record(HANDSHAKE_CLIENT_HELLO, &body)
    }

    /// The cipher suites of the JA4 example (FoxIO-LLC/ja4, technical_details/JA4.md),
    /// in offered order, behind a GREASE value as Chrome sends them.
    const FOXIO_CIPHERS: &[u16] = &[
        0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];

    /// A ClientHello with the cipher suites, extensions (in the original order
    /// `001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015`)
    /// and signature algorithms of the JA4 example in FoxIO-LLC/ja4
    /// technical_details/JA4.md, whose published fingerprint is
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1`. GREASE values are added where Chrome puts
    /// them (cipher list, first and last extension, groups, versions); contents the
    /// fingerprint does not read (key share, ALPS, padding) are short placeholders.
    fn foxio_example_hello() -> Vec<u8> {
        let mut block = Vec::new();
        block.extend(extension(0x0a0a, &[]));
        block.extend(extension(0x001b, &[0x02, 0x00, 0x02]));
        block.extend(sni("example.com"));
        block.extend(extension(0x0033, &[0x00, 0x00]));
        block.extend(alpn(&[b"h2", b"http/1.1"]));
        block.extend(extension(0x4469, &[0x00, 0x03, 0x02, b'h', b'2']));
        block.extend(extension(0x0017, &[]));
        block.extend(extension(0x002d, &[0x01, 0x01]));
        block.extend(extension(
            ext::SIGNATURE_ALGORITHMS,
            &u16_list(
                2,
                &[
                    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                ],
            ),
        ));
        block.extend(extension(0x0005, &[0x01, 0x00, 0x00, 0x00, 0x00]));
        block.extend(extension(0x0023, &[]));
        block.extend(extension(0x0012, &[]));
        block.extend(extension(
            ext::SUPPORTED_VERSIONS,
            &u16_list(1, &[0x3a3a, 0x0304, 0x0303]),
        ));
        block.extend(extension(0xff01, &[0x00]));
        block.extend(extension(ext::EC_POINT_FORMATS, &[0x01, 0x00]));
        block.extend(extension(
            ext::SUPPORTED_GROUPS,
            &u16_list(2, &[0x4a4a, 0x001d, 0x0017, 0x0018]),
        ));
        block.extend(extension(0x0015, &[0x00; 16]));
        block.extend(extension(0x1a1a, &[0x00]));
        client_hello(FOXIO_CIPHERS, Some(&block))
    }

    /// A ClientHello rebuilt from the decoded Chrome 143 hello that browserleaks.com/tls
    /// reported, as recorded in github.com/service0427/v2_cp_app `tls.md`: GREASE
    /// cipher 0xaaaa, GREASE extensions 0x4a4a first and 0x6a6a last, GREASE group
    /// 0x3a3a, GREASE version 0x6a6a, ECH (0xfe0d) with outer SNI
    /// `tls-outer.browserleaks.com`. The same record gives the expected
    /// `ja3_text`, `ja3_hash` and `ja4`. Key share, ECH payload and ALPS contents are
    /// shortened placeholders (the fingerprints do not read them).
    fn browserleaks_chrome_143_hello() -> Vec<u8> {
        let ciphers = [
            0xaaaa, 4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156,
            157, 47, 53,
        ];
        let mut block = Vec::new();
        block.extend(extension(0x4a4a, &[]));
        block.extend(extension(45, &[0x01, 0x01]));
        block.extend(extension(51, &[0x00, 0x05, 0x3a, 0x3a, 0x00, 0x01, 0x00]));
        block.extend(alpn(&[b"h2", b"http/1.1"]));
        block.extend(extension(65037, &[0x00, 0x00, 0x01, 0x00, 0x01, 0xfe]));
        block.extend(extension(23, &[]));
        block.extend(extension(17613, &[0x00, 0x03, 0x02, b'h', b'2']));
        block.extend(sni("tls-outer.browserleaks.com"));
        block.extend(extension(11, &[0x01, 0x00]));
        block.extend(extension(10, &u16_list(2, &[14906, 4588, 29, 23, 24])));
        block.extend(extension(43, &u16_list(1, &[27242, 772, 771])));
        block.extend(extension(65281, &[0x00]));
        block.extend(extension(35, &[]));
        block.extend(extension(18, &[]));
        block.extend(extension(5, &[0x01, 0x00, 0x00, 0x00, 0x00]));
        block.extend(extension(
            13,
            &u16_list(2, &[1027, 2052, 1025, 1283, 2053, 1281, 2054, 1537]),
        ));
        block.extend(extension(27, &[0x02, 0x00, 0x02]));
        block.extend(extension(27242, &[0x00]));
        client_hello(&ciphers, Some(&block))
    }

    #[test]
    fn client_hello_ja3_readme_example_gives_published_ja3_and_hash() {
        let facts = parse_client_hello(CLIENT_HELLO_JA3_README).unwrap();
        assert_eq!(facts.version.as_deref(), Some("TLSv1.0"));
        assert_eq!(facts.sni.as_deref(), Some("example.com"));
        assert!(facts.alpn.is_empty());
        assert_eq!(
            facts.ja3.as_deref(),
            Some("769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0")
        );
        assert_eq!(
            facts.ja3_hash.as_deref(),
            Some("ada70206e40642a3e4461f35503241d5")
        );
        // JA4 computed by hand from the definition (no published vector for this hello):
        // t, 10, d, 12 ciphers, 3 extensions, no ALPN; the extension list without SNI is
        // "000a,000b" and there are no signature algorithms. Hash checked with
        // Python's hashlib.
        assert_eq!(
            facts.ja4.as_deref(),
            Some("t10d120300_d94e65cdb899_33a13ba74d1c")
        );
        assert_eq!(facts.server_version, None);
        assert_eq!(facts.server_cipher, None);
    }

    #[test]
    fn client_hello_without_extensions_gives_published_ja3_hash() {
        // Second example of the JA3 README: `769,4-5-10-9-100-98-3-6-19-18-99,,,` ->
        // de350869b8c85de67a350c8d186f11e6. A TLS 1.0 hello with no extension block.
        let mut hello = client_hello(&[4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], None);
        hello[RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + 1] = 0x01; // client_version 0x0301
        let facts = parse_client_hello(&hello).unwrap();
        assert_eq!(facts.version.as_deref(), Some("TLSv1.0"));
        assert_eq!(facts.sni, None);
        assert_eq!(
            facts.ja3.as_deref(),
            Some("769,4-5-10-9-100-98-3-6-19-18-99,,,")
        );
        assert_eq!(
            facts.ja3_hash.as_deref(),
            Some("de350869b8c85de67a350c8d186f11e6")
        );
        let ja4 = facts.ja4.unwrap();
        assert!(ja4.starts_with("t10i110000_"), "{ja4}");
        assert!(ja4.ends_with("_000000000000"), "{ja4}");
    }

    #[test]
    fn client_hello_foxio_example_gives_published_ja4() {
        let facts = parse_client_hello(&foxio_example_hello()).unwrap();
        assert_eq!(
            facts.ja4.as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
        assert_eq!(facts.version.as_deref(), Some("TLSv1.3"));
        assert_eq!(facts.sni.as_deref(), Some("example.com"));
        assert_eq!(facts.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
        // JA3 of the same hello, GREASE removed everywhere (expected string by hand from
        // the definition, MD5 checked with Python's hashlib).
        assert_eq!(
            facts.ja3.as_deref(),
            Some(
                "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
                 27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0"
            )
        );
        assert_eq!(
            facts.ja3_hash.as_deref(),
            Some("c000e2caf3a25423f9de6c8a4b12a975")
        );
    }

    #[test]
    fn client_hello_chrome_with_grease_gives_published_ja3_and_ja4() {
        let facts = parse_client_hello(&browserleaks_chrome_143_hello()).unwrap();
        assert_eq!(
            facts.ja3.as_deref(),
            Some(
                "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
                 45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
            )
        );
        assert_eq!(
            facts.ja3_hash.as_deref(),
            Some("98487aa16281980e7d1120d399efb6a4")
        );
        assert_eq!(
            facts.ja4.as_deref(),
            Some("t13d1516h2_8daaf6152771_d8a2da3f94cd")
        );
        assert_eq!(facts.version.as_deref(), Some("TLSv1.3"));
        assert_eq!(facts.sni.as_deref(), Some("tls-outer.browserleaks.com"));
    }

    #[test]
    fn ja4_hash_parts_match_spec_examples() {
        // FoxIO-LLC/ja4 technical_details/JA4.md, "Cipher hash" and "Extension hash".
        let mut ciphers = FOXIO_CIPHERS[1..].to_vec();
        ciphers.sort_unstable();
        let mut out = String::new();
        push_ja4_hash(&mut out, &ciphers, &[]);
        assert_eq!(out, "8daaf6152771");
        let extensions = [
            0x0005, 0x000a, 0x000b, 0x000d, 0x0012, 0x0015, 0x0017, 0x001b, 0x0023, 0x002b, 0x002d,
            0x0033, 0x4469, 0xff01,
        ];
        out.clear();
        push_ja4_hash(&mut out, &extensions, &[]);
        assert_eq!(out, "6d807ffa2a79");
        out.clear();
        let sigalgs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        push_ja4_hash(&mut out, &extensions, &sigalgs);
        assert_eq!(out, "e5627efa2ab1");
        out.clear();
        push_ja4_hash(&mut out, &[], &[]);
        assert_eq!(out, "000000000000");
    }

    #[test]
    fn ja4_alpn_matches_spec_examples() {
        // FoxIO-LLC/ja4 technical_details/JA4.md, "ALPN Extension Value".
        assert_eq!(&ja4_alpn(Some(b"h2")), b"h2");
        assert_eq!(&ja4_alpn(Some(b"http/1.1")), b"h1");
        assert_eq!(&ja4_alpn(Some(b"h")), b"hh");
        assert_eq!(&ja4_alpn(Some(&[0xab])), b"ab");
        assert_eq!(&ja4_alpn(Some(&[0xab, 0xcd])), b"ad");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0xab])), b"3b");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0x31, 0xab, 0xcd])), b"3d");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0xab, 0xcd, 0x31])), b"01");
        assert_eq!(&ja4_alpn(Some(&[])), b"00");
        assert_eq!(&ja4_alpn(None), b"00");
    }

    #[test]
    fn grease_values_are_exactly_rfc_8701() {
        let grease: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        let expected: Vec<u16> = (0..16u16).map(|i| 0x0a0a | (i << 12) | (i << 4)).collect();
        assert_eq!(grease, expected);
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1a0a));
    }

    #[test]
    fn client_hello_only_grease_versions_falls_back_to_legacy() {
        let block = extension(ext::SUPPORTED_VERSIONS, &u16_list(1, &[0x0a0a]));
        let facts = parse_client_hello(&client_hello(&[0x1301], Some(&block))).unwrap();
        assert_eq!(facts.version.as_deref(), Some("TLSv1.2"));
    }

    #[test]
    fn client_hello_cut_in_extensions_keeps_early_facts_without_fingerprints() {
        let hello = foxio_example_hello();
        // Cut in the signature algorithms: SNI and ALPN came before, supported_versions
        // after.
        let sigalgs_at = hello.windows(2).position(|w| w == [0x00, 0x0d]).unwrap();
        let facts = parse_client_hello(&hello[..sigalgs_at + 6]).unwrap();
        assert_eq!(facts.sni.as_deref(), Some("example.com"));
        assert_eq!(facts.alpn.len(), 2);
        assert_eq!(facts.version.as_deref(), Some("TLSv1.2"));
        assert_eq!(facts.ja3, None);
        assert_eq!(facts.ja3_hash, None);
        assert_eq!(facts.ja4, None);
    }

    #[test]
    fn client_hello_cut_before_extension_header_is_none() {
        let hello = CLIENT_HELLO_JA3_README;
        let ext_header_at = hello.len() - 38 - 2;
        assert_eq!(parse_client_hello(&hello[..ext_header_at]), None);
        assert_eq!(parse_client_hello(&hello[..ext_header_at + 1]), None);
        let facts = parse_client_hello(&hello[..ext_header_at + 2]).unwrap();
        assert_eq!(facts.version.as_deref(), Some("TLSv1.0"));
        assert_eq!(facts.sni, None);
        assert_eq!(facts.ja3, None);
        // In the cipher list.
        assert_eq!(parse_client_hello(&hello[..60]), None);
    }

    #[test]
    fn client_hello_other_messages_and_junk_are_none() {
        assert_eq!(
            parse_client_hello(&record(HANDSHAKE_SERVER_HELLO, &[0x03, 0x03])),
            None
        );
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            parse_client_hello(&[0x17, 0x03, 0x03, 0x00, 0x10, 0x01]),
            None
        );
        assert_eq!(parse_client_hello(&[]), None);
    }

    /// A ServerHello record; `extensions` is appended with its length when given.
    fn server_hello(version: u16, cipher: u16, extensions: Option<&[u8]>) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[0x55; 32]);
        body.push(0);
        body.extend_from_slice(&cipher.to_be_bytes());
        body.push(0);
        if let Some(block) = extensions {
            body.extend_from_slice(&(block.len() as u16).to_be_bytes());
            body.extend_from_slice(block);
        }
        record(HANDSHAKE_SERVER_HELLO, &body)
    }

    #[test]
    fn server_hello_tls13_reports_supported_version() {
        let mut block = extension(0x0033, &[0x00, 0x1d, 0x00, 0x02, 0xaa, 0xbb]);
        block.extend(extension(ext::SUPPORTED_VERSIONS, &[0x03, 0x04]));
        let hello = server_hello(0x0303, 0x1301, Some(&block));
        assert_eq!(
            parse_server_hello(&hello),
            Some(("TLSv1.3".into(), "0x1301".into()))
        );
    }

    #[test]
    fn server_hello_tls12_without_extensions_reports_legacy_version() {
        let hello = server_hello(0x0303, 0xc02f, None);
        assert_eq!(
            parse_server_hello(&hello),
            Some(("TLSv1.2".into(), "0xc02f".into()))
        );
    }

    #[test]
    fn server_hello_cut_before_extensions_is_none() {
        let block = extension(ext::SUPPORTED_VERSIONS, &[0x03, 0x04]);
        let hello = server_hello(0x0303, 0x1301, Some(&block));
        assert_eq!(parse_server_hello(&hello[..hello.len() - 4]), None);
    }

    #[test]
    fn server_hello_client_hello_and_junk_are_none() {
        assert_eq!(parse_server_hello(CLIENT_HELLO_JA3_README), None);
        assert_eq!(parse_server_hello(b"SSH-2.0-x\r\n"), None);
        assert_eq!(parse_server_hello(&[0x16, 0x03, 0x03, 0x00, 0x00]), None);
    }

    #[test]
    fn handshake_bytes_needed_reads_record_length() {
        assert_eq!(handshake_bytes_needed(CLIENT_HELLO_JA3_README), Some(112));
        assert_eq!(
            handshake_bytes_needed(&CLIENT_HELLO_JA3_README[..40]),
            Some(112)
        );
        assert_eq!(
            handshake_bytes_needed(&[0x16, 0x03, 0x03, 0x48, 0x00]),
            Some(16 * 1024 + 5)
        );
    }

    #[test]
    fn handshake_bytes_needed_short_prefix_asks_for_header() {
        assert_eq!(handshake_bytes_needed(&[0x16]), Some(5));
        assert_eq!(handshake_bytes_needed(&[0x16, 0x03, 0x01, 0x02]), Some(5));
        assert_eq!(handshake_bytes_needed(&[0x16, 0x04]), None);
        assert_eq!(handshake_bytes_needed(&[]), None);
    }

    #[test]
    fn handshake_bytes_needed_other_records_are_none() {
        assert_eq!(
            handshake_bytes_needed(&[0x17, 0x03, 0x03, 0x00, 0x20]),
            None
        );
        assert_eq!(
            handshake_bytes_needed(&[0x16, 0x03, 0x05, 0x00, 0x20]),
            None
        );
        assert_eq!(
            handshake_bytes_needed(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            None
        );
        assert_eq!(handshake_bytes_needed(b"GET / HTTP/1.1\r\n"), None);
    }

    proptest! {
        #[test]
        fn handshake_bytes_needed_arbitrary_bytes_never_panic(
            v in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            if let Some(n) = handshake_bytes_needed(&v) {
                prop_assert!((RECORD_HEADER_LEN..=RECORD_HEADER_LEN + MAX_RECORD_LEN).contains(&n));
            }
        }

        #[test]
        fn client_hello_arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_client_hello(&v);
        }

        #[test]
        fn client_hello_arbitrary_body_never_panics(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_client_hello(&record(HANDSHAKE_CLIENT_HELLO, &v));
        }

        #[test]
        fn client_hello_arbitrary_extensions_never_panic(
            v in proptest::collection::vec(any::<u8>(), 0..1024)
        ) {
            let _ = parse_client_hello(&client_hello(FOXIO_CIPHERS, Some(&v)));
        }

        #[test]
        fn client_hello_every_truncation_never_panics(cut in 0usize..400) {
            let hello = browserleaks_chrome_143_hello();
            let _ = parse_client_hello(&hello[..cut.min(hello.len())]);
        }

        #[test]
        fn server_hello_arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_server_hello(&v);
        }

        #[test]
        fn server_hello_arbitrary_body_never_panics(v in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_server_hello(&record(HANDSHAKE_SERVER_HELLO, &v));
            let mut body = vec![0x03, 0x03];
            body.extend_from_slice(&v);
            let _ = parse_server_hello(&record(HANDSHAKE_SERVER_HELLO, &body));
        }
    }
}
