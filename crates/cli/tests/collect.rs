//! `tunnelwatch collect --log`: firewall logs into flow records (seed 003). The seed's
//! own ipmon lines are a golden case (`UPDATE_GOLDEN=1` rewrites the expected file
//! after review); bad lines are counted and kept with their line numbers without
//! losing the good ones; and a scan in a netfilter log raises the flow-level scan rule,
//! as it would from packets.

mod support;

use std::process::{Command, Output};

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1")
        .env_remove("TUNNELWATCH_DB")
        .env_remove("TUNNELWATCH_CONFIG")
        .args(args)
        .output()
        .expect("run tunnelwatch")
}

#[test]
fn the_seeds_ipmon_lines_give_the_golden_flows() {
    let dir = support::workspace().join("tests/logs");
    let o = tw(&[
        "collect",
        "--log",
        dir.join("ipmon-seed.log").to_str().unwrap(),
        "--year",
        "2009",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = String::from_utf8(o.stdout).unwrap();
    let expected = dir.join("ipmon-seed.flows.jsonl");
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&expected, &got).unwrap();
    }
    let want = std::fs::read_to_string(&expected).unwrap();
    assert_eq!(got, want, "UPDATE_GOLDEN=1 rewrites after review");
    // Two conversations: the closing one (no SYN logged, FIN both ways) and a new
    // connection from 10.50.13.2:59290 opened by its SYN.
    let recs: Vec<serde_json::Value> = got
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["history"], "DFf");
    assert_eq!(recs[1]["orig_h"], "10.50.13.2");
    assert_eq!(recs[1]["conn_state"], "S0");
}

#[test]
fn lines_that_are_not_logs_are_counted_and_kept_with_their_numbers() {
    let dir = std::env::temp_dir().join(format!("tw-collect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("mixed.log");
    let seed =
        std::fs::read_to_string(support::workspace().join("tests/logs/ipmon-seed.log")).unwrap();
    let mut text = String::from("Dec  1 10:00:00 host sshd[1]: Accepted publickey for root\n");
    text.push_str(&seed);
    text.push_str("\u{0}\u{1}garbage that is not a log line\n");
    std::fs::write(&log, text).unwrap();
    let reject = dir.join("rejects.txt");
    let o = tw(&[
        "collect",
        "--log",
        log.to_str().unwrap(),
        "--year",
        "2009",
        "--reject",
        reject.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        2,
        "good lines kept"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 lines not understood"), "{stderr}");
    let r = std::fs::read_to_string(&reject).unwrap();
    let numbers: Vec<&str> = r.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(numbers, ["1", "5"], "{r}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_scan_in_a_netfilter_log_raises_the_scan_rules() {
    let dir = std::env::temp_dir().join(format!("tw-collect-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // nmap -sS against 40 ports, every one closed: SYN in, RST/ACK out.
    let mut text = String::new();
    for (i, port) in (1000..1040).enumerate() {
        let t = format!("10:00:{:02}.{:03}", i / 20, (i % 20) * 50);
        text.push_str(&format!("Dec  1 {t} fw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=192.0.2.10 LEN=44 TTL=40 PROTO=TCP SPT=61000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0\n"));
        text.push_str(&format!("Dec  1 {t} fw kernel: IN= OUT=eth0 SRC=192.0.2.10 DST=203.0.113.5 LEN=40 TTL=64 PROTO=TCP SPT={port} DPT=61000 WINDOW=0 RES=0x00 ACK RST URGP=0\n"));
    }
    let log = dir.join("scan.log");
    std::fs::write(&log, text).unwrap();
    let o = tw(&[
        "collect",
        "--log",
        log.to_str().unwrap(),
        "--year",
        "2026",
        "--flows",
        "/dev/null",
        "--alerts",
        "-",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let alerts = String::from_utf8_lossy(&o.stdout);
    assert!(alerts.contains("\"detector\":\"port_scan\""), "{alerts}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn collected_flows_go_to_the_store_once() {
    let dir = std::env::temp_dir().join(format!("tw-collect-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("t.db");
    let log = support::workspace().join("tests/logs/ipmon-seed.log");
    let collect = || {
        Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
            .env_remove("TUNNELWATCH_NO_STORE")
            .env_remove("TUNNELWATCH_CONFIG")
            .args(["collect", "--log", log.to_str().unwrap(), "--year", "2009"])
            .args(["--flows", "/dev/null", "--db", db.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // Collecting the same log twice stores its flows once.
    for _ in 0..2 {
        let o = collect();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .args(["flows", "--db", db.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stored.lines().count(), 2, "{stored}");
    assert!(stored.contains("\"orig_h\":\"10.50.13.2\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stream_collected_later_keeps_the_alerts_of_an_earlier_one() {
    // Standard input is not a capture: each collection from it is its own, so the
    // second does not delete the alerts the first stored.
    let dir = std::env::temp_dir().join(format!("tw-collect-stdin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("s.db");
    let mut scan = String::new();
    for (i, port) in (2000..2040).enumerate() {
        let t = format!("11:00:{:02}.{:03}", i / 20, (i % 20) * 50);
        scan.push_str(&format!("Dec  1 {t} fw kernel: IN=eth0 OUT= SRC=203.0.113.7 DST=192.0.2.10 LEN=44 TTL=40 PROTO=TCP SPT=61000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0\n"));
    }
    let quiet =
        std::fs::read_to_string(support::workspace().join("tests/logs/ipmon-seed.log")).unwrap();
    let stored_alerts = || -> usize {
        let o = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
            .args(["alerts", "--db", db.to_str().unwrap(), "--format", "json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    for (text, year) in [(&scan, "2026"), (&quiet, "2009")] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
            .env_remove("TUNNELWATCH_NO_STORE")
            .env_remove("TUNNELWATCH_CONFIG")
            .args([
                "collect",
                "--log",
                "-",
                "--year",
                year,
                "--flows",
                "/dev/null",
            ])
            .args(["--db", db.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if year == "2026" {
            assert!(stored_alerts() > 0, "the scan's alerts are stored");
        }
    }
    assert!(
        stored_alerts() > 0,
        "the second stream kept the first one's alerts"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
