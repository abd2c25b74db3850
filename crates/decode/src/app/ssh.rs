//! SSH identification strings (RFC 4253 §4.2) at the start of a flow direction.
//!
//! Both SSH peers open with a line `SSH-protoversion-softwareversion [SP comments]`
//! ended by CR LF; a server may send other lines first. [`parse_banner`] finds that
//! line among the first few of the payload and returns it as text, so detectors can
//! name the implementation and spot SSH on unusual ports. It checks the shape, not the
//! contents: any software version is taken, and a line that is not printable ASCII
//! (the RFC's rule, and what separates a banner from binary that happens to start with
//! `SSH-`) is no banner.
//!
//! No crate in the tree parses this one line, so it is read here by hand.

/// Longest banner taken, in bytes (RFC 4253 §4.2 allows 255 including CR LF).
const MAX_BANNER_LEN: usize = 255;

/// Lines searched for the banner, counting the banner's own line.
const MAX_LINES: usize = 5;

/// The banner line must start within this many bytes of the payload.
const MAX_SEARCH: usize = 1024;

/// Returns the SSH identification string (RFC 4253 §4.2) if `payload` starts with "SSH-"
/// and has a protocol version "1.x" or "2.0" followed by '-' and a software version; the
/// string runs to CR or LF (or the end of payload, at most 255 bytes); non-printable bytes make
/// it None. Servers may send other lines before the banner (RFC 4253 allows it): also accept
/// the banner at the start of any of the first 5 lines within the first 1024 bytes.
///
/// A line longer than 255 bytes is cut to its first 255; the CR/LF is not part of the
/// returned string.
pub fn parse_banner(payload: &[u8]) -> Option<String> {
    let mut start = 0;
    for _ in 0..MAX_LINES {
        if start >= MAX_SEARCH {
            return None;
        }
        let line = payload.get(start..)?;
        if line.starts_with(b"SSH-") {
            return banner_at(line);
        }
        // Not a banner: skip to the next line, if any.
        start += line.iter().position(|&b| b == b'\n')? + 1;
    }
    None
}

/// Reads the banner at the start of `line`, which starts with `SSH-`.
fn banner_at(line: &[u8]) -> Option<String> {
    let end = line
        .iter()
        .take(MAX_BANNER_LEN)
        .position(|&b| b == b'\r' || b == b'\n');
    let banner = &line[..end.unwrap_or(line.len().min(MAX_BANNER_LEN))];
    if !banner.iter().all(|&b| matches!(b, 0x20..=0x7e)) {
        return None;
    }
    let rest = &banner[4..];
    let software = if let Some(rest) = rest.strip_prefix(b"2.0-") {
        rest
    } else if let Some(rest) = rest.strip_prefix(b"1.") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest[digits..].strip_prefix(b"-")?
    } else {
        return None;
    };
    // The software version is at least one printable, non-space byte.
    if !matches!(software.first(), Some(0x21..=0x7e)) {
        return None;
    }
    // Checked printable ASCII above, so this is valid UTF-8 without replacement.
    Some(String::from_utf8_lossy(banner).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn banner_openssh_with_comment_is_returned_without_crlf() {
        assert_eq!(
            parse_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
        );
        assert_eq!(
            parse_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian")
        );
    }

    #[test]
    fn banner_followed_by_kexinit_stops_at_line_end() {
        let mut payload = b"SSH-2.0-dropbear_2022.83\r\n".to_vec();
        payload.extend_from_slice(&[0x00, 0x00, 0x01, 0x2c, 0x0a, 0x14, 0xff]);
        assert_eq!(
            parse_banner(&payload).as_deref(),
            Some("SSH-2.0-dropbear_2022.83")
        );
    }

    #[test]
    fn banner_version_1_99_and_1_5_are_accepted() {
        assert_eq!(
            parse_banner(b"SSH-1.99-Cisco-1.25\r\n").as_deref(),
            Some("SSH-1.99-Cisco-1.25")
        );
        assert_eq!(parse_banner(b"SSH-1.5-x\n").as_deref(), Some("SSH-1.5-x"));
    }

    #[test]
    fn banner_cut_by_end_of_payload_is_returned() {
        assert_eq!(parse_banner(b"SSH-2.0-Go").as_deref(), Some("SSH-2.0-Go"));
    }

    #[test]
    fn banner_after_pre_banner_lines_is_found() {
        let payload = b"Welcome to host\r\nAuthorised use only\r\nSSH-2.0-OpenSSH_8.9\r\n";
        assert_eq!(
            parse_banner(payload).as_deref(),
            Some("SSH-2.0-OpenSSH_8.9")
        );
    }

    #[test]
    fn banner_on_sixth_line_is_none() {
        let payload = b"1\n2\n3\n4\n5\nSSH-2.0-OpenSSH_8.9\r\n";
        assert_eq!(parse_banner(payload), None);
        let payload = b"1\n2\n3\n4\nSSH-2.0-OpenSSH_8.9\r\n";
        assert!(parse_banner(payload).is_some());
    }

    #[test]
    fn banner_starting_beyond_1024_bytes_is_none() {
        let mut payload = vec![b'x'; 1100];
        payload.extend_from_slice(b"\nSSH-2.0-late\r\n");
        assert_eq!(parse_banner(&payload), None);
    }

    #[test]
    fn banner_longer_than_255_bytes_is_cut() {
        let mut payload = b"SSH-2.0-".to_vec();
        payload.extend(std::iter::repeat_n(b'a', 400));
        payload.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_banner(&payload).map(|b| b.len()),
            Some(MAX_BANNER_LEN)
        );
    }

    #[test]
    fn banner_bad_versions_are_none() {
        assert_eq!(parse_banner(b"SSH-3.0-x\r\n"), None);
        assert_eq!(parse_banner(b"SSH-2.1-x\r\n"), None);
        assert_eq!(parse_banner(b"SSH-1.-x\r\n"), None);
        assert_eq!(parse_banner(b"SSH-2.0-\r\n"), None);
        assert_eq!(parse_banner(b"SSH-2.0- x\r\n"), None);
        assert_eq!(parse_banner(b"SSH-2.0"), None);
        assert_eq!(parse_banner(b"ssh-2.0-x\r\n"), None);
    }

    #[test]
    fn banner_with_binary_bytes_is_none() {
        assert_eq!(parse_banner(b"SSH-2.0-Open\x00SSH\r\n"), None);
        assert_eq!(parse_banner(b"SSH-2.0-Open\xc3\xa9\r\n"), None);
    }

    #[test]
    fn banner_binary_junk_and_other_protocols_are_none() {
        assert_eq!(
            parse_banner(&[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00]),
            None
        );
        assert_eq!(parse_banner(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(parse_banner(b""), None);
    }

    proptest! {
        #[test]
        fn banner_arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_banner(&v);
        }

        #[test]
        fn banner_arbitrary_tail_after_prefix_never_panics(
            v in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut payload = b"SSH-".to_vec();
            payload.extend_from_slice(&v);
            if let Some(banner) = parse_banner(&payload) {
                prop_assert!(banner.len() <= MAX_BANNER_LEN);
                prop_assert!(banner.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            }
        }
    }
}
