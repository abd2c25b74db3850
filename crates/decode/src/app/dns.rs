//! DNS message summaries: header and first question of a query or response.
//!
//! [`parse`] reads what the flow table keeps of a DNS exchange (query name and type,
//! response code, answer count) from a UDP payload or a TCP payload with its two-byte
//! length prefix. It rejects payloads that are clearly not DNS (short header, a query
//! without a question, an unassigned opcode, a malformed question name) and tolerates
//! messages cut short by the snap length: what was complete is reported, so a long
//! tunnelling query still gives its header even when its name was cut.
//!
//! Why by hand rather than with `simple-dns`: `Packet::parse` accepts only a complete
//! message and decodes every record of every section, allocating vectors sized by the
//! (attacker-controlled) section counts, while only the 12-byte header and the first
//! question are needed here, and a cut message must still give them. The header and one
//! question are small enough to read directly, with the offsets in the `field` table.
//!
//! Names are followed through compression pointers with a rule that makes loops
//! impossible rather than counted: every pointer must point before the start of the
//! label run that contains it, so each jump goes strictly backwards and the walk ends.
//! Real encoders only point back to names written earlier, so no valid message is
//! refused. Names are dotted text with the case as sent; a `.` or `\` inside a label is
//! escaped with a backslash and bytes outside printable ASCII as `\DDD` (decimal), as
//! `dig` prints them. The root name is `.`.

/// Byte offsets of the DNS header fields (RFC 1035 §4.1.1).
mod field {
    /// Flags: QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode.
    pub const FLAGS: usize = 2;
    /// Number of questions.
    pub const QDCOUNT: usize = 4;
    /// Number of answer records.
    pub const ANCOUNT: usize = 6;
    /// Header length; the question section starts here.
    pub const HEADER_LEN: usize = 12;
}

/// QR bit in the flags: set in responses.
const FLAG_QR: u16 = 0x8000;
/// Highest assigned opcode (6, DSO, RFC 8490).
const MAX_OPCODE: u16 = 6;
/// Longest name on the wire, length bytes included (RFC 1035 §3.1).
const MAX_NAME_WIRE_LEN: usize = 255;

/// A summary of one DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    /// The QR bit: true for a response.
    pub is_response: bool,
    /// Name of the first question, dotted (`www.example.com`, `.` for the root); `None`
    /// when the message has no question or the name was cut short.
    pub query: Option<String>,
    /// Type of the first question (1 = A, 16 = TXT, …); `None` when it was cut short.
    pub qtype: Option<u16>,
    /// Response code from the header (the low four bits; extended codes from EDNS are
    /// not added).
    pub rcode: u8,
    /// The header's ANCOUNT: answer records the message claims to carry.
    pub answers: u16,
}

/// Parses a DNS message (UDP payload, or TCP payload with the 2-byte length prefix when
/// `over_tcp`). Validates the header (12 bytes) and parses the first question name (with
/// compression pointers, loop-safe, names as dotted lowercase-preserving text; escape
/// non-printable bytes as \DDD like dig) and qtype; `answers` is the header ANCOUNT. Returns
/// None for payloads that are clearly not DNS (header too short, QDCOUNT == 0 and it is a
/// query, opcode > 6, question name malformed).
///
/// A question name cut by the end of the payload is not malformed: the message is
/// returned with `query` and `qtype` `None`. A name is malformed when it uses the
/// reserved label types (`0x40`/`0x80`), is longer than 255 bytes on the wire, or has a
/// compression pointer that does not point backwards (see the module doc).
pub fn parse(payload: &[u8], over_tcp: bool) -> Option<DnsMessage> {
    parse_with(payload, over_tcp, true)
}

/// [`parse`], but a response's question name is only checked, not copied (`query` is
/// `None`) unless `name_responses`: what a flow that already knows its query needs.
pub fn parse_with(payload: &[u8], over_tcp: bool, name_responses: bool) -> Option<DnsMessage> {
    let message = if over_tcp {
        let (prefix, rest) = payload.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*prefix));
        &rest[..len.min(rest.len())]
    } else {
        payload
    };
    let header = message.first_chunk::<{ field::HEADER_LEN }>()?;
    let flags = be16(header, field::FLAGS);
    let is_response = flags & FLAG_QR != 0;
    let opcode = (flags >> 11) & 0x0f;
    let qdcount = be16(header, field::QDCOUNT);
    if opcode > MAX_OPCODE || (qdcount == 0 && !is_response) {
        return None;
    }
    let (query, qtype) = if qdcount == 0 {
        (None, None)
    } else {
        let mut text = (name_responses || !is_response).then(|| Vec::with_capacity(64));
        match read_name(message, field::HEADER_LEN, text.as_mut()) {
            Ok(after) => {
                let qtype = message
                    .get(after..)
                    .and_then(|rest| rest.first_chunk::<2>())
                    .map(|b| u16::from_be_bytes(*b));
                // Presentation form is ASCII (see `push_label`).
                let name = text.map(|t| String::from_utf8(t).unwrap_or_default());
                (name, qtype)
            }
            Err(NameError::Truncated) => (None, None),
            Err(NameError::Malformed) => return None,
        }
    };
    Some(DnsMessage {
        is_response,
        query,
        qtype,
        rcode: (flags & 0x0f) as u8,
        answers: be16(header, field::ANCOUNT),
    })
}

/// Why a name could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameError {
    /// The message ended inside the name.
    Truncated,
    /// The name breaks the wire format (see [`parse`]).
    Malformed,
}

/// Reads the name starting at `start` in `message`, appending its text to `text` when
/// given. Returns the offset just after it in the original byte run (after the first
/// compression pointer, if any).
fn read_name(
    message: &[u8],
    start: usize,
    mut text: Option<&mut Vec<u8>>,
) -> Result<usize, NameError> {
    let mut pos = start;
    // Start of the label run being read: every pointer must go below it.
    let mut run_start = start;
    let mut after_first_pointer = None;
    let mut wire_len = 0usize;
    loop {
        let len_byte = *message.get(pos).ok_or(NameError::Truncated)?;
        match len_byte & 0xc0 {
            0x00 => {
                let len = usize::from(len_byte);
                wire_len += 1 + len;
                if wire_len > MAX_NAME_WIRE_LEN {
                    return Err(NameError::Malformed);
                }
                if len == 0 {
                    if let Some(t) = text.as_mut().filter(|t| t.is_empty()) {
                        t.push(b'.');
                    }
                    return Ok(after_first_pointer.unwrap_or(pos + 1));
                }
                let label = message
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(NameError::Truncated)?;
                if let Some(t) = text.as_mut() {
                    if !t.is_empty() {
                        t.push(b'.');
                    }
                    push_label(t, label);
                }
                pos += 1 + len;
            }
            0xc0 => {
                let low = *message.get(pos + 1).ok_or(NameError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len_byte & 0x3f, low]));
                if target >= run_start {
                    return Err(NameError::Malformed);
                }
                after_first_pointer.get_or_insert(pos + 2);
                run_start = target;
                pos = target;
            }
            // 0x40 (extended label types, RFC 6891 §5) and 0x80 are not in use.
            _ => return Err(NameError::Malformed),
        }
    }
}

/// Appends one label in presentation form (see the module doc for the escapes): only
/// printable ASCII comes out.
fn push_label(text: &mut Vec<u8>, label: &[u8]) {
    // Most labels are plain: copied at once. The test runs over the whole label
    // without stopping early (whole words at a time; tunnel labels run to 63 bytes).
    let plain = label.iter().fold(true, |ok, &b| {
        ok & (b.wrapping_sub(0x21) < 0x5e) & (b != b'.') & (b != b'\\')
    });
    if plain {
        text.extend_from_slice(label);
        return;
    }
    for &b in label {
        match b {
            b'.' | b'\\' => text.extend_from_slice(&[b'\\', b]),
            0x21..=0x7e => text.push(b),
            _ => {
                text.extend_from_slice(&[b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10])
            }
        }
    }
}

/// The big-endian u16 at `offset` of the header (offsets from [`field`], all in range).
fn be16(header: &[u8; field::HEADER_LEN], offset: usize) -> u16 {
    u16::from_be_bytes([header[offset], header[offset + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A query for `www.example.com` A as `dig` (BIND 9.18) sends it: ID 0x1d4c, flags
    /// 0x0120 (RD, AD), one question, one additional record (the EDNS OPT record,
    /// UDP size 1232, no options).
    #[rustfmt::skip]
    const QUERY_WWW_EXAMPLE_COM_A: &[u8] = &[
        0x1d, 0x4c, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // header
        0x03, b'w', b'w', b'w', // "www"
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // "example"
        0x03, b'c', b'o', b'm', 0x00, // "com", root
        0x00, 0x01, 0x00, 0x01, // QTYPE A, QCLASS IN
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // OPT
    ];

    /// The answer to it: flags 0x8180 (QR, RD, RA), two A records whose names are
    /// compression pointers to the question name at offset 12.
    #[rustfmt::skip]
    const RESPONSE_TWO_ANSWERS: &[u8] = &[
        0x1d, 0x4c, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // header
        0x03, b'w', b'w', b'w', 0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
        0x03, b'c', b'o', b'm', 0x00, 0x00, 0x01, 0x00, 0x01, // question
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, // ptr to 12, A, IN, TTL 3600
        0x00, 0x04, 93, 184, 215, 14, // 93.184.215.14
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, // ptr to 12, A, IN, TTL 3600
        0x00, 0x04, 93, 184, 216, 34, // 93.184.216.34
    ];

    #[test]
    fn every_byte_of_a_label_is_written_as_the_module_says() {
        for b in 0..=255u8 {
            let mut got = Vec::new();
            push_label(&mut got, &[b'a', b, b'z']);
            let mid = match b {
                b'.' | b'\\' => format!("\\{}", char::from(b)),
                0x21..=0x7e => char::from(b).to_string(),
                _ => format!("\\{b:03}"),
            };
            assert_eq!(
                String::from_utf8(got).unwrap(),
                format!("a{mid}z"),
                "byte {b}"
            );
        }
    }

    #[test]
    fn parse_query_www_example_com_gives_name_and_type() {
        let msg = parse(QUERY_WWW_EXAMPLE_COM_A, false).unwrap();
        assert_eq!(
            msg,
            DnsMessage {
                is_response: false,
                query: Some("www.example.com".to_string()),
                qtype: Some(1),
                rcode: 0,
                answers: 0,
            }
        );
    }

    #[test]
    fn parse_response_with_two_answers_counts_them() {
        let msg = parse(RESPONSE_TWO_ANSWERS, false).unwrap();
        assert!(msg.is_response);
        assert_eq!(msg.query.as_deref(), Some("www.example.com"));
        assert_eq!(msg.qtype, Some(1));
        assert_eq!(msg.rcode, 0);
        assert_eq!(msg.answers, 2);
    }

    #[test]
    fn parse_over_tcp_strips_length_prefix() {
        let mut tcp = (QUERY_WWW_EXAMPLE_COM_A.len() as u16)
            .to_be_bytes()
            .to_vec();
        tcp.extend_from_slice(QUERY_WWW_EXAMPLE_COM_A);
        assert_eq!(parse(&tcp, true), parse(QUERY_WWW_EXAMPLE_COM_A, false));
        // Without the prefix the ID would be read as the length: not the same message.
        assert_ne!(
            parse(QUERY_WWW_EXAMPLE_COM_A, true),
            parse(QUERY_WWW_EXAMPLE_COM_A, false)
        );
    }

    #[test]
    fn parse_nxdomain_response_without_question_is_kept() {
        let msg = parse(&[0, 1, 0x81, 0x83, 0, 0, 0, 0, 0, 0, 0, 0], false).unwrap();
        assert!(msg.is_response);
        assert_eq!(msg.rcode, 3);
        assert_eq!(msg.query, None);
    }

    #[test]
    fn parse_truncated_after_question_keeps_question() {
        // The response cut by the snap length in its first answer.
        let msg = parse(&RESPONSE_TWO_ANSWERS[..40], false).unwrap();
        assert_eq!(msg.query.as_deref(), Some("www.example.com"));
        assert_eq!(msg.qtype, Some(1));
        assert_eq!(msg.answers, 2);
    }

    #[test]
    fn parse_truncated_in_name_keeps_header_only() {
        let msg = parse(&QUERY_WWW_EXAMPLE_COM_A[..20], false).unwrap();
        assert!(!msg.is_response);
        assert_eq!(msg.query, None);
        assert_eq!(msg.qtype, None);
    }

    #[test]
    fn parse_truncated_before_qtype_keeps_name() {
        let msg = parse(&QUERY_WWW_EXAMPLE_COM_A[..30], false).unwrap();
        assert_eq!(msg.query.as_deref(), Some("www.example.com"));
        assert_eq!(msg.qtype, None);
    }

    #[test]
    fn parse_short_header_is_none() {
        assert_eq!(parse(&QUERY_WWW_EXAMPLE_COM_A[..11], false), None);
        assert_eq!(parse(&[], false), None);
        assert_eq!(parse(&[0x00], true), None);
        // A TCP length prefix shorter than a header.
        let mut tcp = vec![0x00, 0x0b];
        tcp.extend_from_slice(QUERY_WWW_EXAMPLE_COM_A);
        assert_eq!(parse(&tcp, true), None);
    }

    #[test]
    fn parse_query_without_question_is_none() {
        assert_eq!(
            parse(&[0, 1, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0], false),
            None
        );
    }

    #[test]
    fn parse_unassigned_opcode_is_none() {
        let mut msg = QUERY_WWW_EXAMPLE_COM_A.to_vec();
        msg[2] = 0x38; // opcode 7
        assert_eq!(parse(&msg, false), None);
        msg[2] = 0x30; // opcode 6 (DSO) is assigned
        assert!(parse(&msg, false).is_some());
    }

    #[test]
    fn parse_compression_loop_is_none_and_ends() {
        // The question name is a pointer to offset 10 (ARCOUNT), whose bytes are a
        // pointer back to 12: a loop that a jump counter-free walk must refuse.
        let msg = [
            0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c, 0xc0, 0x0a, 0, 1, 0, 1,
        ];
        assert_eq!(parse(&msg, false), None);
        // A pointer to itself.
        let msg = [
            0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ];
        assert_eq!(parse(&msg, false), None);
    }

    #[test]
    fn parse_backward_pointer_is_followed_and_qtype_read_after_it() {
        // "www" then a pointer to offset 10 (ARCOUNT = 0, read as the root label).
        let msg = [
            0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0xc0, 10, 0, 16,
        ];
        let parsed = parse(&msg, false).unwrap();
        assert_eq!(parsed.query.as_deref(), Some("www"));
        assert_eq!(parsed.qtype, Some(16));
    }

    #[test]
    fn read_name_follows_chained_pointers() {
        let mut buf = vec![7];
        buf.extend_from_slice(b"example");
        buf.extend_from_slice(&[3, b'c', b'o', b'm', 0]); // offset 0: example.com
        buf.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 0]); // offset 13: www.<0>
        buf.extend_from_slice(&[1, b'a', 0xc0, 13]); // offset 19: a.<13>
        let mut text = Vec::new();
        assert_eq!(read_name(&buf, 19, Some(&mut text)), Ok(23));
        assert_eq!(text, b"a.www.example.com");
        // Checked without a copy: the same end, the same verdicts.
        assert_eq!(read_name(&buf, 19, None), Ok(23));
        assert_eq!(read_name(&buf[..20], 19, None), Err(NameError::Truncated));
    }

    #[test]
    fn a_response_parsed_without_its_name_says_the_same_otherwise() {
        let mut response = QUERY_WWW_EXAMPLE_COM_A.to_vec();
        response[2] |= 0x80; // QR
        let named = parse(&response, false).unwrap();
        assert_eq!(named.query.as_deref(), Some("www.example.com"));
        let unnamed = parse_with(&response, false, false).unwrap();
        assert_eq!(unnamed.query, None);
        assert_eq!(
            DnsMessage {
                query: named.query.clone(),
                ..unnamed
            },
            named
        );
        // A query keeps its name; a malformed name is refused either way.
        let q = parse_with(QUERY_WWW_EXAMPLE_COM_A, false, false).unwrap();
        assert_eq!(q.query.as_deref(), Some("www.example.com"));
        let mut bad = response.clone();
        bad[12] = 0x41;
        assert_eq!(parse_with(&bad, false, false), None);
    }

    #[test]
    fn parse_reserved_label_type_is_none() {
        let msg = [
            0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, b'x', 0, 0, 1, 0, 1,
        ];
        assert_eq!(parse(&msg, false), None);
    }

    #[test]
    fn parse_name_longer_than_255_bytes_is_none() {
        let mut msg = vec![0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            msg.push(63);
            msg.extend(std::iter::repeat_n(b'a', 63));
        }
        msg.extend_from_slice(&[0, 0, 16, 0, 1]);
        assert_eq!(parse(&msg, false), None);
    }

    #[test]
    fn parse_root_and_odd_bytes_are_printed_like_dig() {
        let msg = [0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
        assert_eq!(parse(&msg, false).unwrap().query.as_deref(), Some("."));
        let msg = [
            0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'A', 0, b'.', b'\\', 0xff, 0, 0, 1, 0, 1,
        ];
        assert_eq!(
            parse(&msg, false).unwrap().query.as_deref(),
            Some("A\\000\\.\\\\\\255")
        );
    }

    #[test]
    fn parse_case_is_preserved() {
        let msg = [
            0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, b'E', b'x', 0, 0, 1, 0, 1,
        ];
        assert_eq!(parse(&msg, false).unwrap().query.as_deref(), Some("Ex"));
    }

    proptest! {
        #[test]
        fn parse_arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&v, false);
            let _ = parse(&v, true);
        }

        #[test]
        fn parse_arbitrary_question_never_panics(v in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut msg = vec![0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(&v);
            if let Some(DnsMessage { query: Some(name), .. }) = parse(&msg, false) {
                // 255 wire bytes give at most 4 text bytes each (`\DDD`).
                prop_assert!(name.len() <= 4 * MAX_NAME_WIRE_LEN);
            }
        }

        #[test]
        fn parse_every_truncation_never_panics(cut in 0usize..80) {
            let _ = parse(&RESPONSE_TWO_ANSWERS[..cut.min(RESPONSE_TWO_ANSWERS.len())], false);
        }
    }
}
