//! Zeek `conn.log` in Zeek's ASCII format (tab-separated, with `#fields`/`#types`
//! headers), as Zeek 6+ writes it with the Community ID policy loaded. Values follow
//! Zeek's conventions: `-` for unset, `(empty)` for an empty set, durations and byte
//! counts unset for zero-length connections. Interim records are not written: a
//! `conn.log` has one line per connection.

use std::io::{self, Write};

use tunnelwatch_model::{Cause, FlowRecord, Timestamp};

const FIELDS: &str = "ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tip_proto\tcommunity_id";
const TYPES: &str = "time\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tcount\tstring";

/// Formats packet time as Zeek's `#open`/`#close` stamp (`YYYY-MM-DD-HH-MM-SS`, UTC).
pub fn zeek_stamp(ts: Timestamp) -> String {
    let secs = ts.as_nanos().div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}-{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes the header, opened at packet time `open`.
pub fn write_header(out: &mut impl Write, open: Timestamp) -> io::Result<()> {
    writeln!(out, "#separator \\x09")?;
    writeln!(out, "#set_separator\t,")?;
    writeln!(out, "#empty_field\t(empty)")?;
    writeln!(out, "#unset_field\t-")?;
    writeln!(out, "#path\tconn")?;
    writeln!(out, "#open\t{}", zeek_stamp(open))?;
    writeln!(out, "#fields\t{FIELDS}")?;
    writeln!(out, "#types\t{TYPES}")
}

/// Writes the closing line, at packet time `close`.
pub fn write_footer(out: &mut impl Write, close: Timestamp) -> io::Result<()> {
    writeln!(out, "#close\t{}", zeek_stamp(close))
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => o.push_str("\\x09"),
            '\n' => o.push_str("\\x0a"),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// Writes one record (interim records are skipped).
pub fn write_record(out: &mut impl Write, r: &FlowRecord) -> io::Result<()> {
    if r.cause == Cause::Status {
        return Ok(());
    }
    let (dur, ob, rb) = if r.duration > 0.0 {
        (
            format!("{:.6}", r.duration),
            r.orig_bytes.to_string(),
            r.resp_bytes.to_string(),
        )
    } else {
        ("-".into(), "-".into(), "-".into())
    };
    let service = r
        .service
        .as_deref()
        .map(escape)
        .unwrap_or_else(|| "-".into());
    let history = if r.history.is_empty() {
        "-".to_string()
    } else {
        escape(&r.history)
    };
    let parents = if r.tunnel_parents.is_empty() {
        "-".to_string()
    } else {
        r.tunnel_parents.join(",")
    };
    writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t-\t-\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        r.ts,
        r.uid,
        r.orig_h,
        r.orig_p,
        r.resp_h,
        r.resp_p,
        r.proto,
        service,
        dur,
        ob,
        rb,
        r.conn_state.as_str(),
        r.missed_bytes,
        history,
        r.orig_pkts,
        r.orig_ip_bytes,
        r.resp_pkts,
        r.resp_ip_bytes,
        parents,
        r.ip_proto,
        r.community_id,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tunnelwatch_model::{ConnState, Dynamics};

    pub(crate) fn sample() -> FlowRecord {
        FlowRecord {
            uid: "CAbc".into(),
            community_id: "1:x".into(),
            ts: Timestamp::from_secs_nanos(1_300_000_000, 500_000_000),
            last_ts: Timestamp::from_secs_nanos(1_300_000_001, 0),
            duration: 0.5,
            proto: "tcp".into(),
            ip_proto: 6,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 1234,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 80,
            service: None,
            orig_pkts: 3,
            resp_pkts: 2,
            orig_bytes: 10,
            resp_bytes: 20,
            orig_ip_bytes: 130,
            resp_ip_bytes: 100,
            conn_state: ConnState::SF,
            history: "ShADadFf".into(),
            cause: Cause::End,
            missed_bytes: 0,
            vlan: None,
            inner_vlan: None,
            tunnel_parents: vec![],
            signatures: vec![],
            dynamics: Dynamics::default(),
            tcp: None,
            icmp: None,
            app: None,
            export: None,
        }
    }

    #[test]
    fn zeek_stamp_formats_utc() {
        assert_eq!(
            zeek_stamp(Timestamp::from_secs_nanos(0, 0)),
            "1970-01-01-00-00-00"
        );
        assert_eq!(
            zeek_stamp(Timestamp::from_secs_nanos(1_300_000_000, 0)),
            "2011-03-13-07-06-40"
        );
    }

    #[test]
    fn record_line_has_one_value_per_field() {
        let mut buf = Vec::new();
        write_record(&mut buf, &sample()).unwrap();
        let line = String::from_utf8(buf).unwrap();
        assert_eq!(
            line.trim_end().split('\t').count(),
            FIELDS.split('\t').count()
        );
        assert!(line.starts_with("1300000000.500000\tCAbc\t10.0.0.1\t1234\t"));
    }
}
