//! The `tunnelwatch read` command as users run it: outputs, summary, exit codes, and
//! what happens with bad input (nothing already good is lost).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1") // these tests are about records, not the store
        .args(args)
        .output()
        .expect("run tunnelwatch")
}

fn demo() -> String {
    support::workspace()
        .join("examples/demo.pcap")
        .display()
        .to_string()
}

fn golden(case: &str) -> String {
    let dir = support::workspace().join("tests/golden").join(case);
    support::golden_input(&dir).display().to_string()
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A classic pcap of the given link type and (seconds, frame) records.
fn write_pcap(path: &Path, link: u32, recs: &[(u32, &[u8])]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&link.to_le_bytes());
    for (sec, f) in recs {
        b.extend_from_slice(&sec.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

/// An IPv4/UDP packet (raw IP) from 10.0.0.1:40000 to 10.0.0.2:40001.
fn udp_packet(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 40001)
        .write(&mut out, payload)
        .unwrap();
    out
}

#[test]
fn read_demo_prints_table_and_summary_and_exits_zero() {
    let o = tw(&["read", &demo()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        out.starts_with("StartTime"),
        "table header first: {out:.200}"
    );
    assert!(out.lines().count() > 50, "one line per flow");
    assert!(
        err.contains("379 packets") && err.contains("flows"),
        "{err}"
    );
    assert!(
        err.contains("decode anomalies:") && err.contains("time span:"),
        "{err}"
    );
    // A progress bar is for terminals only: the test's stderr is a pipe.
    assert!(!err.contains('\r') && !err.contains("eta"), "{err}");
}

#[test]
fn read_flows_to_stdout_is_json_lines_with_the_contract_fields() {
    let o = tw(&["read", &demo(), "--flows", "-", "--no-store"]);
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    let fields = [
        "uid",
        "community_id",
        "ts",
        "last_ts",
        "duration",
        "proto",
        "orig_h",
        "orig_p",
        "resp_h",
        "resp_p",
        "orig_pkts",
        "resp_pkts",
        "orig_bytes",
        "resp_bytes",
        "orig_ip_bytes",
        "resp_ip_bytes",
        "conn_state",
        "history",
        "cause",
    ];
    let mut n = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        for f in fields {
            assert!(v.get(f).is_some(), "field {f} missing in {line}");
        }
        n += 1;
    }
    assert!(n > 50);
    // Tunnelled flows name their parent.
    assert!(
        out.contains("\"tunnel_parents\":[\"C"),
        "GRE inner flows carry tunnel_parents"
    );
}

#[test]
fn read_twice_gives_byte_identical_output() {
    let a = tw(&["read", &demo(), "--flows", "-"]).stdout;
    let b = tw(&["read", &demo(), "--flows", "-"]).stdout;
    assert_eq!(a, b);
}

#[test]
fn zeek_conn_log_has_zeek_header_and_one_value_per_field() {
    let path = tmp("conn.log");
    let o = tw(&["read", &demo(), "--zeek-conn", path.to_str().unwrap()]);
    assert!(o.status.success());
    let log = std::fs::read_to_string(&path).unwrap();
    let fields = log
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("#fields");
    let n = fields.split('\t').count();
    assert!(fields.starts_with("ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto"));
    assert!(
        log.starts_with("#separator \\x09\n")
            && log
                .trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("#close\t")
    );
    let rows: Vec<&str> = log.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(rows.len() > 50);
    for r in rows {
        assert_eq!(r.split('\t').count(), n, "{r}");
    }
}

#[test]
fn format_zeek_and_json_go_to_stdout() {
    let z = String::from_utf8(tw(&["read", &demo(), "--format", "zeek"]).stdout).unwrap();
    assert!(z.contains("#path\tconn"));
    let j = String::from_utf8(tw(&["read", &demo(), "--format", "json"]).stdout).unwrap();
    assert!(j.lines().all(|l| l.starts_with('{')));
}

#[test]
fn truncated_capture_keeps_earlier_flows_names_offset_and_fails() {
    let o = tw(&["read", &golden("truncated-capture"), "--flows", "-"]);
    assert_eq!(o.status.code(), Some(1), "damaged input must exit non-zero");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("truncated record at byte offset 5180"),
        "{err}"
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let rec: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("flow kept")).unwrap();
    assert_eq!(
        rec["orig_pkts"].as_u64().unwrap() + rec["resp_pkts"].as_u64().unwrap(),
        8
    );
}

#[test]
fn unreadable_and_wrong_files_are_reported_and_others_still_read() {
    let junk = tmp("not-a-capture.txt");
    std::fs::write(&junk, "this is not a capture").unwrap();
    let o = tw(&[
        "read",
        "/nonexistent/x.pcap",
        junk.to_str().unwrap(),
        &golden("http-get"),
        "--flows",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("cannot open /nonexistent/x.pcap"), "{err}");
    assert!(
        err.contains("not a pcap or pcapng capture: starts with bytes 74 68 69 73"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().lines().count(),
        1,
        "the good capture was read"
    );
}

#[test]
fn empty_file_is_a_clear_error() {
    let empty = tmp("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let o = tw(&["read", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8(o.stderr).unwrap().contains("empty file"));
}

#[test]
fn unknown_link_type_is_counted_not_fatal() {
    let p = tmp("unknown-link.pcap");
    write_pcap(&p, 147, &[(1, b"\x01\x02\x03"), (2, b"\x04")]);
    let o = tw(&["read", p.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("unknown_link_type 2") && err.contains("linktype 147: 2"),
        "{err}"
    );
}

#[test]
fn time_going_backwards_is_counted_and_flows_stay_whole() {
    let p = tmp("backwards.pcap");
    let (a, b, c) = (udp_packet(b"one"), udp_packet(b"two"), udp_packet(b"three"));
    write_pcap(&p, 101, &[(100, &a), (90, &b), (101, &c)]);
    let o = tw(&["read", p.to_str().unwrap(), "--flows", "-"]);
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("1 packets with time going backwards"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 1);
    let rec: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(rec["orig_pkts"], 3);
    assert_eq!(rec["duration"], 1.0);
}

#[test]
fn checksum_flags_change_the_verdict_on_offloaded_captures() {
    // The TLS golden trace was anonymised: its checksums no longer verify.
    let verify =
        String::from_utf8(tw(&["read", &golden("tls-split-hello"), "--flows", "-"]).stdout)
            .unwrap();
    let ignore =
        String::from_utf8(tw(&["read", &golden("tls-split-hello"), "-C", "--flows", "-"]).stdout)
            .unwrap();
    assert!(verify.contains("\"history\":\"Cc\""), "{verify:.300}");
    assert!(ignore.contains("\"history\":\"ShADad\""), "{ignore:.300}");
}
