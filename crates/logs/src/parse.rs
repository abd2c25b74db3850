//! Firewall log lines into [`LogEvent`]s: ipmon (IPFilter's logger, seed 003's exact
//! format, with or without its syslog prefix) and Linux netfilter `LOG` target lines
//! (iptables and nftables: `IN=… OUT=… SRC=… DST=… LEN=… PROTO=… SPT=… DPT=…` and the
//! TCP flag words). A line that is neither is an [`Unparsed`] with the reason, never a
//! guess.
//!
//! Syslog stamps carry no year (`Jul 26 04:04:32`): the caller gives it. ISO 8601
//! stamps (rsyslog's high-precision format, journald exports) carry their own. ipmon's
//! own time of day (`04:04:31.438987`, microseconds) wins over the syslog second when
//! both are present; a day boundary between them is handled.

use std::net::IpAddr;

use tunnelwatch_model::{IpProto, Timestamp};

/// One packet a firewall logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// When (from the line).
    pub ts: Timestamp,
    /// Sender and its port (ICMP: type).
    pub src: IpAddr,
    /// Sender port.
    pub sport: u16,
    /// Receiver.
    pub dst: IpAddr,
    /// Receiver port (ICMP: code).
    pub dport: u16,
    /// IP protocol.
    pub proto: IpProto,
    /// TCP flags as a bit set (FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32).
    pub flags: u8,
    /// IP total length, when logged.
    pub ip_len: u32,
    /// IP header length, when logged (ipmon); else 20.
    pub ip_hlen: u32,
    /// IP TTL, when logged (netfilter).
    pub ttl: Option<u8>,
}

/// TCP flag bits of [`LogEvent::flags`].
pub use tunnelwatch_flow::unions::flag;

/// Each TCP flag with its ipmon letter and netfilter word.
const FLAGS: [(u8, char, &str); 6] = [
    (flag::FIN, 'F', "FIN"),
    (flag::SYN, 'S', "SYN"),
    (flag::RST, 'R', "RST"),
    (flag::PSH, 'P', "PSH"),
    (flag::ACK, 'A', "ACK"),
    (flag::URG, 'U', "URG"),
];

/// Why a line is not an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unparsed(pub String);

/// Which parser to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ipmon lines.
    Ipmon,
    /// netfilter LOG lines.
    Netfilter,
    /// Whichever the line is.
    Auto,
}

/// Parses one line; `year` completes syslog stamps.
pub fn parse_line(line: &str, format: Format, year: i32) -> Result<LogEvent, Unparsed> {
    let netfilter = line.contains(" SRC=") && line.contains(" DST=");
    match format {
        Format::Ipmon => ipmon(line, year),
        Format::Netfilter => netfilter_line(line, year),
        Format::Auto if netfilter => netfilter_line(line, year),
        Format::Auto if line.contains(" -> ") && line.contains(" PR ") => ipmon(line, year),
        Format::Auto => Err(Unparsed(
            "neither an ipmon line (`A,port -> B,port PR …`) nor a netfilter LOG line (`SRC=… DST=…`)".into(),
        )),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `HH:MM:SS[.frac]` as nanoseconds into the day.
fn time_of_day(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    // Digits only: `parse` would take a sign, and `-5555…` seconds overflowed below.
    let mut it = hms.split(':').map(|p| {
        p.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<i64>().ok())
            .flatten()
    });
    let (h, m, sec) = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some()
        || h > 23
        || m > 59
        || sec > 60
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut nanos = 0i64;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(((h * 60 + m) * 60 + sec) * 1_000_000_000 + nanos)
}

/// A syslog (`Jul 26 04:04:32`) or ISO 8601 (`2026-07-26T04:04:32.123456+02:00`)
/// stamp at the start of `line`: its time and the rest of the line.
fn stamp(line: &str, year: i32) -> Option<(Timestamp, &str)> {
    let line = line.trim_start();
    let mut words = line.splitn(2, ' ');
    let first = words.next()?;
    if first.len() >= 19
        && first.as_bytes().get(4) == Some(&b'-')
        && first.as_bytes().get(10) == Some(&b'T')
    {
        let y: i64 = first.get(0..4)?.parse().ok()?;
        let mo: u32 = first.get(5..7)?.parse().ok()?;
        let d: u32 = first.get(8..10)?.parse().ok()?;
        let rest_t = &first[11..];
        let tz_at = rest_t.find(['+', '-', 'Z']).unwrap_or(rest_t.len());
        let tod = time_of_day(&rest_t[..tz_at])?;
        let offset = match &rest_t[tz_at..] {
            "" | "Z" => 0,
            tz => {
                let sign = if tz.starts_with('-') { -1 } else { 1 };
                let hm = tz[1..].replace(':', "");
                let h: i64 = hm.get(0..2)?.parse().ok()?;
                let m: i64 = hm.get(2..4).unwrap_or("00").parse().ok()?;
                sign * (h * 3600 + m * 60)
            }
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        let secs = days_from_civil(y, mo, d) * 86_400 - offset;
        return Some((nanos(secs, tod)?, words.next().unwrap_or("")));
    }
    let mo = MONTHS.iter().position(|m| *m == first)? as u32 + 1;
    let rest = words.next()?.trim_start();
    let (day, rest) = rest.split_once(' ')?;
    let d: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let (hms, rest) = rest.split_once(' ')?;
    let tod = time_of_day(hms)?;
    let secs = days_from_civil(i64::from(year), mo, d) * 86_400;
    Some((nanos(secs, tod)?, rest))
}

/// `secs` since the epoch plus `tod` nanoseconds, or `None` past what 64-bit
/// nanoseconds hold (years before 1677 or after 2262).
fn nanos(secs: i64, tod: i64) -> Option<Timestamp> {
    secs.checked_mul(1_000_000_000)?
        .checked_add(tod)
        .map(Timestamp)
}

fn proto_of(name: &str) -> Option<IpProto> {
    Some(match name.to_ascii_lowercase().as_str() {
        "tcp" => IpProto::TCP,
        "udp" => IpProto::UDP,
        "icmp" => IpProto::ICMP,
        "icmpv6" | "ipv6-icmp" => IpProto::ICMPV6,
        n => IpProto(n.parse().ok()?),
    })
}

/// `10.50.12.32,10050` (ipmon's address,port; IPv6 too) or a bare address.
fn addr_port(s: &str) -> Option<(IpAddr, u16)> {
    match s.rsplit_once(',') {
        Some((a, p)) => Some((a.parse().ok()?, p.parse().ok()?)),
        None => Some((s.parse().ok()?, 0)),
    }
}

/// An ipmon line: `[stamp host ipmon[pid]: [..] [..]] HH:MM:SS.ffffff IFACE @G:R ACT
/// SRC,SPORT -> DST,DPORT PR PROTO len HLEN TOTAL [-FLAGS] [icmp T/C] IN|OUT …`.
pub fn ipmon(line: &str, year: i32) -> Result<LogEvent, Unparsed> {
    let bad = |why: &str| Unparsed(why.to_string());
    let (syslog_ts, body) = match stamp(line, year) {
        Some((ts, rest)) => (Some(ts), rest),
        None => (None, line),
    };
    // The ipmon part starts after the last `]` of the syslog tags, if any.
    let body = match body.find("ipmon[") {
        Some(_) => body.rsplit_once("] ").map_or(body, |(_, b)| b),
        None => body,
    };
    let words: Vec<&str> = body.split_whitespace().collect();
    let arrow = words
        .iter()
        .position(|w| *w == "->")
        .ok_or_else(|| bad("no `->` between source and destination"))?;
    if arrow == 0 || arrow + 1 >= words.len() {
        return Err(bad("`->` without both ends"));
    }
    let (src, sport) = addr_port(words[arrow - 1]).ok_or_else(|| bad("bad source address,port"))?;
    let (dst, dport) =
        addr_port(words[arrow + 1]).ok_or_else(|| bad("bad destination address,port"))?;
    let after = &words[arrow + 2..];
    let pr = after
        .iter()
        .position(|w| *w == "PR")
        .ok_or_else(|| bad("no `PR protocol`"))?;
    let proto = after
        .get(pr + 1)
        .and_then(|p| proto_of(p))
        .ok_or_else(|| bad("unknown protocol after PR"))?;
    let (mut ip_hlen, mut ip_len) = (20, 0);
    if let Some(l) = after.iter().position(|w| *w == "len") {
        ip_hlen = after.get(l + 1).and_then(|v| v.parse().ok()).unwrap_or(20);
        ip_len = after
            .get(l + 2)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("`len` without a total length"))?;
    }
    let mut flags = 0;
    if let Some(f) = after.iter().find(|w| w.starts_with('-') && w.len() > 1) {
        for c in f[1..].chars() {
            flags |= FLAGS.iter().find(|x| x.1 == c).map_or(0, |x| x.0);
        }
    }
    let (mut sport, mut dport) = (sport, dport);
    if proto.is_icmp() {
        // `icmp 8/0`: type/code in the ports' places, as flow records have them.
        if let Some(i) = after.iter().position(|w| *w == "icmp") {
            if let Some((t, c)) = after.get(i + 1).and_then(|v| v.split_once('/')) {
                sport = t.parse().unwrap_or(0);
                dport = c.parse().unwrap_or(0);
            }
        }
    }
    // ipmon's own time of day; the date from the syslog stamp.
    let tod = words.iter().find_map(|w| time_of_day(w));
    let ts = match (syslog_ts, tod) {
        (Some(s), Some(t)) => {
            let day = s.0.div_euclid(86_400_000_000_000) * 86_400_000_000_000;
            let mut ts = day + t;
            // Logged just before midnight, written just after.
            if ts - s.0 > 43_200_000_000_000 {
                ts -= 86_400_000_000_000;
            }
            Timestamp(ts)
        }
        (Some(s), None) => s,
        (None, _) => return Err(bad("no date: ipmon lines need their syslog stamp")),
    };
    Ok(LogEvent {
        ts,
        src,
        sport,
        dst,
        dport,
        proto,
        flags,
        ip_len,
        ip_hlen,
        ttl: None,
    })
}

/// A netfilter LOG line: `[stamp host kernel: [uptime]] PREFIX IN=… OUT=… SRC=… DST=…
/// LEN=… TTL=… PROTO=… SPT=… DPT=… [SYN ACK FIN RST PSH URG] …`.
pub fn netfilter_line(line: &str, year: i32) -> Result<LogEvent, Unparsed> {
    let bad = |why: &str| Unparsed(why.to_string());
    let (ts, body) = stamp(line, year).ok_or_else(|| bad("no syslog or ISO 8601 stamp"))?;
    let mut kv = std::collections::HashMap::new();
    let mut flags = 0;
    for w in body.split_whitespace() {
        match w.split_once('=') {
            Some((k, v)) => {
                kv.entry(k).or_insert(v);
            }
            None => flags |= FLAGS.iter().find(|x| x.2 == w).map_or(0, |x| x.0),
        }
    }
    let get = |k: &str| kv.get(k).copied();
    let src: IpAddr = get("SRC")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("bad SRC="))?;
    let dst: IpAddr = get("DST")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("bad DST="))?;
    let proto = get("PROTO")
        .and_then(proto_of)
        .ok_or_else(|| bad("no PROTO="))?;
    let num = |k: &str| get(k).and_then(|v| v.parse::<u32>().ok());
    let (sport, dport) = if proto.is_icmp() {
        (
            num("TYPE").unwrap_or(0) as u16,
            num("CODE").unwrap_or(0) as u16,
        )
    } else {
        (
            num("SPT").unwrap_or(0) as u16,
            num("DPT").unwrap_or(0) as u16,
        )
    };
    Ok(LogEvent {
        ts,
        src,
        sport,
        dst,
        dport,
        proto,
        flags,
        ip_len: num("LEN").unwrap_or(0),
        ip_hlen: if src.is_ipv6() { 40 } else { 20 },
        ttl: num("TTL")
            .or_else(|| num("HOPLIMIT"))
            .map(|t| t.min(255) as u8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [&str; 3] = [
        "Jul 26 04:04:32 10.50.12.32 ipmon[137]: [local2.info] [ID 702911 local2.info] 04:04:31.438987 e1000g0 @-1:-1 L 10.50.12.32,10050 -> 10.50.13.2,45380 PR tcp len 20 55 -AFP OUT",
        "Jul 26 04:04:32 10.50.12.32 ipmon[137]: [local2.info] [ID 702911 local2.info] 04:04:31.439524 e1000g0 @-1:-1 L 10.50.13.2,45380 -> 10.50.12.32,10050 PR tcp len 20 40 -AF IN",
        "Jul 26 04:06:35 10.50.12.32 ipmon[137]: [local2.info] [ID 702911 local2.info] 04:06:34.912206 e1000g0 @-1:-1 L 10.50.13.2,59290 -> 10.50.12.32,10050 PR tcp len 20 52 -S IN",
    ];

    #[test]
    fn the_seeds_ipmon_lines() {
        let e = parse_line(SEED[0], Format::Auto, 2009).unwrap();
        assert_eq!(e.src.to_string(), "10.50.12.32");
        assert_eq!(
            (e.sport, e.dport, e.ip_len, e.ip_hlen),
            (10050, 45380, 55, 20)
        );
        assert_eq!(e.flags, flag::ACK | flag::FIN | flag::PSH);
        // 2009-07-26 04:04:31.438987 UTC.
        assert_eq!(e.ts, Timestamp(1_248_581_071_438_987_000));
        assert_eq!(
            parse_line(SEED[2], Format::Ipmon, 2009).unwrap().flags,
            flag::SYN
        );
    }

    #[test]
    fn times_of_day_take_digits_only() {
        assert_eq!(time_of_day("04:04:31.5"), Some(14_671_500_000_000));
        // Signs parse as numbers but are no clock: the fuzzer's `-5555…` seconds
        // overflowed the sum.
        for t in [
            "04:04:-5555555555555555",
            "-1:00:00",
            "04:+4:31",
            "04::31",
            "4:4:4:4",
        ] {
            assert_eq!(time_of_day(t), None, "{t}");
        }
        // Stamps past what nanoseconds since 1970 hold are no time either.
        assert!(stamp("9999-01-01T00:00:00Z fw kernel: x", 0).is_none());
        assert!(stamp("Jan  1 00:00:00 fw kernel: x", 9999).is_none());
        assert!(stamp("Jan  1 00:00:00 fw kernel: x", 2026).is_some());
    }

    #[test]
    fn netfilter_lines_syslog_and_iso() {
        let l = "Dec  1 10:00:00 fw kernel: [12345.678901] DROP IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=192.0.2.7 DST=198.51.100.9 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=4242 DF PROTO=TCP SPT=51515 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0";
        let e = parse_line(l, Format::Auto, 2026).unwrap();
        assert_eq!(
            (e.sport, e.dport, e.flags, e.ttl, e.ip_len),
            (51515, 22, flag::SYN, Some(52), 60)
        );
        let iso = "2026-12-01T10:00:00.250000+01:00 fw kernel: IN=eth0 OUT= SRC=2001:db8::1 DST=2001:db8::2 LEN=84 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0 ID=1 SEQ=1";
        let e = parse_line(iso, Format::Auto, 0).unwrap();
        assert_eq!((e.proto, e.sport, e.dport), (IpProto::ICMPV6, 128, 0));
        // 2026-12-01 09:00:00.25 UTC.
        assert_eq!(e.ts, Timestamp(1_796_115_600_250_000_000));
    }

    #[test]
    fn lines_that_are_not_logs_say_why() {
        for (l, why) in [
            ("Dec  1 10:00:00 host sshd[1]: Accepted publickey for root", "neither"),
            ("Jul 26 04:04:32 h ipmon[1]: 04:04:31.4 e0 @-1:-1 L 10.0.0.1,1 -> x,2 PR tcp len 20 40 IN", "destination"),
            ("Jul 26 04:04:32 h ipmon[1]: 04:04:31.4 e0 @-1:-1 L 10.0.0.1,1 -> 10.0.0.2,2 PR zzz len 20 40 IN", "protocol"),
            ("Dec  1 10:00:00 fw kernel: SRC=1.2.3.4 DST=5.6.7.8 LEN=40", "PROTO"),
            ("", "neither"),
        ] {
            let e = parse_line(l, Format::Auto, 2026).unwrap_err();
            assert!(e.0.contains(why), "{l}: {e:?}");
        }
    }
}
