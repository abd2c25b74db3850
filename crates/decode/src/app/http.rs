//! HTTP/1.x request heads and status lines at the start of a flow direction.
//!
//! [`parse_request`] recognises a request line and reads the `Host` and `User-Agent`
//! headers; [`parse_response`] reads the version and status code of a status line. Both
//! accept a head cut short by the end of the segment and report what was complete: the
//! request line must be whole (it is what makes the payload HTTP at all), header lines
//! count only once their line end was seen.
//!
//! The request line is checked here, in one forward pass that stops at the first byte
//! that cannot belong to it, because the caller tries this parser on arbitrary TCP
//! payload and the rules are ours: any RFC 9110 method token up to 32 bytes (exotic
//! methods are kept, they are a signal), a target of visible bytes, and `HTTP/` with
//! any one-digit major and minor version, so the HTTP/2 prior-knowledge preface
//! (`PRI * HTTP/2.0`) is reported rather than dropped. The header block and the status
//! line are left to `httparse`, which reads them without allocating; a head with more
//! header lines than one round of header slots is read in further rounds.

use httparse::{Header, EMPTY_HEADER};
use tunnelwatch_model::HttpFacts;

/// Longest method token taken for a request (longer is not a plausible request).
const MAX_METHOD_LEN: usize = 32;

/// Empty lines skipped before a request line (RFC 9112 §2.2 asks servers to ignore at
/// least one).
const MAX_LEADING_EMPTY_LINES: usize = 2;

/// Header slots handed to `httparse` per round. A head with more header lines is read
/// in further rounds, so this only bounds stack use, not what is found.
const HEADER_SLOTS: usize = 32;

/// Parses an HTTP/1.x request head at the start of `payload` (may be partial: a head cut
/// by the end of the segment still yields what was complete: method/uri/version from a
/// complete request line, and any complete header lines). Returns None unless the
/// payload starts with a plausible request line: a method token (any RFC 9110 token,
/// so exotic methods like "FOO" are kept, but at most 32 bytes), SP, a target, SP,
/// "HTTP/" + version, CRLF or LF.
///
/// Fills `method`, `uri`, `version` (e.g. `1.1`), and `host` and `user_agent` from the
/// first header of each name; the response fields stay `None`. Non-UTF-8 bytes in the
/// target or header values are replaced with U+FFFD.
pub fn parse_request(payload: &[u8]) -> Option<HttpFacts> {
    let line = RequestLine::parse(payload)?;
    let mut version = String::with_capacity(3);
    version.push(char::from(line.version.0));
    version.push('.');
    version.push(char::from(line.version.1));
    let mut facts = HttpFacts {
        method: Some(lossy(line.method)),
        uri: Some(lossy(line.target)),
        version: Some(version),
        ..HttpFacts::default()
    };
    // `line.len <= payload.len()` by construction; `get` keeps that a non-question.
    if let Some(block) = payload.get(line.len..) {
        scan_headers(block, &mut facts);
    }
    Some(facts)
}

/// Whether `payload`, the start of a request, holds the whole request head (the empty
/// line that ends the headers), so a missing `Host` is really missing.
pub fn head_complete(payload: &[u8]) -> bool {
    payload.windows(4).any(|w| w == b"\r\n\r\n") || payload.windows(2).any(|w| w == b"\n\n")
}

/// Parses an HTTP/1.x status line at the start of `payload`: returns (version like "1.1", status code).
///
/// The line must be complete (its line end seen); headers after it are not needed and
/// not checked. `httparse` accepts versions `1.0` and `1.1` only, and skips empty lines
/// before the status line.
pub fn parse_response(payload: &[u8]) -> Option<(String, u16)> {
    let mut no_headers: [Header<'_>; 0] = [];
    let mut response = httparse::Response::new(&mut no_headers);
    // The outcome is not needed: with no header slots a complete status line followed
    // by a header gives `TooManyHeaders`, and `reason` is set exactly when the status
    // line was read to its end.
    let _ = response.parse(payload);
    response.reason?;
    let minor = response.version?;
    let code = response.code?;
    Some((format!("1.{minor}"), code))
}

/// A request line that was read to its line end, borrowing from the payload.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    /// Major and minor version digits, as ASCII.
    version: (u8, u8),
    /// Bytes from the start of the payload to just after the line end.
    len: usize,
}

impl<'a> RequestLine<'a> {
    fn parse(payload: &'a [u8]) -> Option<Self> {
        let mut pos = 0;
        for _ in 0..MAX_LEADING_EMPTY_LINES {
            match payload.get(pos..) {
                Some([b'\r', b'\n', ..]) => pos += 2,
                Some([b'\n', ..]) => pos += 1,
                _ => break,
            }
        }
        let rest = payload.get(pos..)?;

        // The method is checked first and bounded, so binary payload fails within a
        // few bytes.
        let method_len = rest
            .iter()
            .take(MAX_METHOD_LEN + 1)
            .take_while(|&&b| is_tchar(b))
            .count();
        if method_len == 0 || method_len > MAX_METHOD_LEN || rest.get(method_len) != Some(&b' ') {
            return None;
        }
        let method = &rest[..method_len];

        let after_method = &rest[method_len + 1..];
        let target_len = after_method
            .iter()
            .take_while(|&&b| is_target_byte(b))
            .count();
        if target_len == 0 || after_method.get(target_len) != Some(&b' ') {
            return None;
        }
        let target = &after_method[..target_len];

        let after_target = &after_method[target_len + 1..];
        let (version, line_end) = match after_target {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor, tail @ ..]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                let end = match tail {
                    [b'\r', b'\n', ..] => 2,
                    [b'\n', ..] => 1,
                    _ => return None,
                };
                ((*major, *minor), end)
            }
            _ => return None,
        };
        let len = pos + method_len + 1 + target_len + 1 + 8 + line_end;
        Some(RequestLine {
            method,
            target,
            version,
            len,
        })
    }
}

/// Reads `Host` and `User-Agent` from the header block that follows a request line.
/// Stops at the end of the head, at the first malformed or incomplete line, or once
/// both are known; a head with more lines than [`HEADER_SLOTS`] is read in rounds.
fn scan_headers(mut block: &[u8], facts: &mut HttpFacts) {
    loop {
        let mut slots = [EMPTY_HEADER; HEADER_SLOTS];
        // Whatever the outcome, the slots `httparse` filled hold complete header lines
        // (it writes a slot only after the line end) and the others keep their empty
        // name: `Partial` and malformed lines leave the earlier headers readable.
        let more = matches!(
            httparse::parse_headers(block, &mut slots),
            Err(httparse::Error::TooManyHeaders)
        );
        for header in slots.iter().take_while(|h| !h.name.is_empty()) {
            if facts.host.is_none() && header.name.eq_ignore_ascii_case("host") {
                facts.host = Some(lossy(header.value));
            } else if facts.user_agent.is_none() && header.name.eq_ignore_ascii_case("user-agent") {
                facts.user_agent = Some(lossy(header.value));
            }
        }
        if !more || (facts.host.is_some() && facts.user_agent.is_some()) {
            return;
        }
        match after_header_line(block, &slots[HEADER_SLOTS - 1]) {
            // Strictly shorter than `block`, so the loop ends.
            Some(next) => block = next,
            None => return,
        }
    }
}

/// The part of `block` after the line of `last`, a header parsed from `block`: its
/// value is a subslice of `block`, and in a request head (no obsolete line folding)
/// the next LF ends its line.
fn after_header_line<'a>(block: &'a [u8], last: &Header<'_>) -> Option<&'a [u8]> {
    let value_start = (last.value.as_ptr() as usize).checked_sub(block.as_ptr() as usize)?;
    let tail = block.get(value_start.checked_add(last.value.len())?..)?;
    let newline = tail.iter().position(|&b| b == b'\n')?;
    tail.get(newline + 1..)
}

/// RFC 9110 `tchar`: the bytes of a token such as a method.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Bytes taken in a request target: visible ASCII and any non-ASCII byte (some clients
/// send raw UTF-8), never a space or control.
fn is_target_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_get_fills_line_and_headers() {
        let head = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\
                     User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
        let facts = parse_request(head).unwrap();
        assert_eq!(facts.method.as_deref(), Some("GET"));
        assert_eq!(facts.uri.as_deref(), Some("/index.html?q=1"));
        assert_eq!(facts.version.as_deref(), Some("1.1"));
        assert_eq!(facts.host.as_deref(), Some("example.com"));
        assert_eq!(facts.user_agent.as_deref(), Some("curl/8.5.0"));
        assert_eq!(facts.status, None);
        assert_eq!(facts.resp_version, None);
    }

    #[test]
    fn request_exotic_method_without_host_keeps_method() {
        let facts = parse_request(b"FOO /x HTTP/1.0\r\nX-A: b\r\n\r\n").unwrap();
        assert_eq!(facts.method.as_deref(), Some("FOO"));
        assert_eq!(facts.version.as_deref(), Some("1.0"));
        assert_eq!(facts.host, None);
        assert_eq!(facts.user_agent, None);
    }

    #[test]
    fn request_method_of_32_bytes_is_kept_and_33_is_none() {
        let m32 = "M".repeat(32);
        let ok = format!("{m32} / HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse_request(ok.as_bytes()).unwrap().method.as_deref(),
            Some(&*m32)
        );
        let bad = format!("{}M / HTTP/1.1\r\n\r\n", m32);
        assert_eq!(parse_request(bad.as_bytes()), None);
    }

    #[test]
    fn request_cut_in_header_keeps_complete_lines() {
        let head = b"POST /upload HTTP/1.1\r\nHost: a.example\r\nUser-Ag";
        let facts = parse_request(head).unwrap();
        assert_eq!(facts.method.as_deref(), Some("POST"));
        assert_eq!(facts.host.as_deref(), Some("a.example"));
        assert_eq!(facts.user_agent, None);
    }

    #[test]
    fn request_cut_in_header_value_drops_that_header() {
        let facts = parse_request(b"GET / HTTP/1.1\r\nHost: a.exa").unwrap();
        assert_eq!(facts.uri.as_deref(), Some("/"));
        assert_eq!(facts.host, None);
    }

    #[test]
    fn request_cut_in_request_line_is_none() {
        assert_eq!(parse_request(b"GET /index.html HTTP/1."), None);
        assert_eq!(parse_request(b"GET /index.html HTTP/1.1"), None);
        assert_eq!(parse_request(b"GET /index.html HTTP/1.1\r"), None);
        assert_eq!(parse_request(b"GET"), None);
        assert_eq!(parse_request(b""), None);
    }

    #[test]
    fn request_malformed_lines_are_none() {
        assert_eq!(parse_request(b"GET  / HTTP/1.1\r\n\r\n"), None); // double space
        assert_eq!(parse_request(b"GET /\r\n\r\n"), None); // HTTP/0.9
        assert_eq!(parse_request(b"GET / HTTX/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b"GET / HTTP/1.1 \r\n\r\n"), None);
        assert_eq!(parse_request(b"G(T / HTTP/1.1\r\n\r\n"), None); // '(' is no tchar
        assert_eq!(parse_request(b"HTTP/1.1 200 OK\r\n\r\n"), None); // a response
    }

    #[test]
    fn request_binary_junk_is_none() {
        assert_eq!(
            parse_request(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]),
            None
        );
        assert_eq!(parse_request(b"SSH-2.0-OpenSSH_9.2p1\r\n"), None);
    }

    #[test]
    fn request_bare_lf_lines_parse() {
        let facts = parse_request(b"GET / HTTP/1.1\nHost: lf.example\n\n").unwrap();
        assert_eq!(facts.host.as_deref(), Some("lf.example"));
    }

    #[test]
    fn request_leading_empty_line_is_skipped() {
        let facts = parse_request(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(facts.method.as_deref(), Some("GET"));
        assert_eq!(facts.host.as_deref(), Some("h"));
    }

    #[test]
    fn request_h2_preface_reports_pri_and_version() {
        let facts = parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        assert_eq!(facts.method.as_deref(), Some("PRI"));
        assert_eq!(facts.uri.as_deref(), Some("*"));
        assert_eq!(facts.version.as_deref(), Some("2.0"));
    }

    #[test]
    fn request_host_after_many_headers_is_found() {
        // More header lines than one round of slots: the later rounds must find Host.
        let mut head = b"CONNECT tunnel.example:443 HTTP/1.1\r\n".to_vec();
        for i in 0..(3 * HEADER_SLOTS + 5) {
            head.extend_from_slice(format!("X-Filler-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Host: tunnel.example:443\r\nUser-Agent: ua/1\r\n\r\n");
        let facts = parse_request(&head).unwrap();
        assert_eq!(facts.method.as_deref(), Some("CONNECT"));
        assert_eq!(facts.host.as_deref(), Some("tunnel.example:443"));
        assert_eq!(facts.user_agent.as_deref(), Some("ua/1"));
    }

    #[test]
    fn request_host_with_empty_filler_values_after_many_headers_is_found() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(HEADER_SLOTS + 1) {
            head.extend_from_slice(format!("X-{i}:\r\n").as_bytes());
        }
        head.extend_from_slice(b"Host: late\r\n\r\n");
        assert_eq!(parse_request(&head).unwrap().host.as_deref(), Some("late"));
    }

    #[test]
    fn request_malformed_header_keeps_earlier_headers() {
        let facts =
            parse_request(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nBad Header\r\nHost: h\r\n\r\n")
                .unwrap();
        assert_eq!(facts.user_agent.as_deref(), Some("x"));
        assert_eq!(facts.host, None);
    }

    #[test]
    fn request_first_host_wins() {
        let facts = parse_request(b"GET / HTTP/1.1\r\nhost: one\r\nHost: two\r\n\r\n").unwrap();
        assert_eq!(facts.host.as_deref(), Some("one"));
    }

    #[test]
    fn response_status_line_gives_version_and_code() {
        let head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(head), Some(("1.1".to_string(), 404)));
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n"),
            Some(("1.0".to_string(), 200))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 204\r\n\r\n"),
            Some(("1.1".to_string(), 204))
        );
    }

    #[test]
    fn response_cut_status_line_is_none() {
        assert_eq!(parse_response(b"HTTP/1.1 200 O"), None);
        assert_eq!(parse_response(b"HTTP/1.1 20"), None);
        assert_eq!(parse_response(b""), None);
    }

    #[test]
    fn response_request_or_junk_is_none() {
        assert_eq!(parse_response(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n"), None);
        assert_eq!(parse_response(&[0x00, 0xff, 0x10, 0x20]), None);
    }

    proptest! {
        #[test]
        fn request_arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_request(&v);
        }

        #[test]
        fn request_arbitrary_head_after_valid_line_never_panics(
            v in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let mut head = b"GET / HTTP/1.1\r\n".to_vec();
            head.extend_from_slice(&v);
            prop_assert!(parse_request(&head).is_some());
        }

        #[test]
        fn request_every_truncation_never_panics(cut in 0usize..80) {
            let head = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n";
            let _ = parse_request(&head[..cut.min(head.len())]);
        }

        #[test]
        fn response_arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_response(&v);
        }
    }
}
