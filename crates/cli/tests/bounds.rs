//! Memory bounds under floods: a spoofed SYN flood from distinct sources stays under the
//! flow and memory caps, every flow still gets a record (`cause: evicted` for those
//! ended early), and the summary says how many were evicted and the peaks reached.

mod support;

use std::path::PathBuf;
use std::process::Command;

use etherparse::PacketBuilder;

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bounds");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A pcap of `n` SYNs to 192.0.2.10:80, each from its own source address, 1 µs apart.
fn syn_flood(n: u32) -> PathBuf {
    let path = tmp(&format!("synflood-{n}.pcap"));
    let mut b = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..n {
        let src = (0x0b00_0000u32 + i).to_be_bytes();
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, [192, 0, 2, 10], 64)
            .tcp(
                1024 + (i % 60000) as u16,
                80,
                i.wrapping_mul(2_654_435_761),
                1024,
            )
            .syn()
            .write(&mut f, &[])
            .unwrap();
        for v in [
            1_700_000_000 + i / 1_000_000,
            i % 1_000_000,
            f.len() as u32,
            f.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&f);
    }
    std::fs::write(&path, b).unwrap();
    path
}

/// Runs `read` with extra arguments; returns (records, stderr).
fn read(capture: &str, extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1") // these tests are about records, not the store
        .args(["read", capture, "--flows", "-", "--no-progress"])
        .args(extra)
        .output()
        .expect("run tunnelwatch");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "read failed: {stderr}");
    let recs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (recs, stderr)
}

/// The number before `what` in the summary.
fn summary_number(stderr: &str, what: &str) -> u64 {
    let i = stderr
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in summary:\n{stderr}"));
    let digits: String = stderr[..i]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn syn_flood_stays_under_the_flow_cap_and_loses_no_record() {
    let flood = syn_flood(50_000);
    let (recs, stderr) = read(flood.to_str().unwrap(), &["--max-flows", "1000"]);
    assert_eq!(recs.len(), 50_000, "one record per spoofed source");
    let evicted = recs.iter().filter(|r| r["cause"] == "evicted").count();
    assert_eq!(evicted, 49_000);
    assert_eq!(summary_number(&stderr, "flows evicted early"), 49_000);
    assert_eq!(summary_number(&stderr, "live flows"), 1000);
    // The oldest go first: the survivors are the last thousand sources.
    let survivors: Vec<&str> = recs
        .iter()
        .filter(|r| r["cause"] != "evicted")
        .map(|r| r["orig_h"].as_str().unwrap())
        .collect();
    assert!(
        survivors.contains(&"11.0.195.79"),
        "the last source (index 49999) survives"
    );
    assert!(!survivors.contains(&"11.0.0.0"));
}

#[test]
fn syn_flood_stays_under_the_memory_cap() {
    let flood = syn_flood(20_000);
    let (recs, stderr) = read(flood.to_str().unwrap(), &["--max-memory", "2"]);
    assert_eq!(recs.len(), 20_000);
    let peak = summary_number(&stderr, "live flows");
    assert!(peak > 100 && peak < 20_000, "peak {peak} live flows");
    let evicted = summary_number(&stderr, "flows evicted early");
    assert_eq!(
        evicted + peak,
        20_000,
        "every flow beyond the peak was evicted"
    );
    let state = stderr
        .split("live flows, ")
        .nth(1)
        .and_then(|s| s.split(" of flow state").next())
        .unwrap();
    let (v, unit) = state.split_once(' ').unwrap();
    let bytes = v.parse::<f64>().unwrap()
        * match unit {
            "KB" => 1e3,
            "MB" => 1e6,
            other => panic!("unexpected unit {other}"),
        };
    // The summary rounds to one decimal (0.05 MB).
    assert!(
        bytes <= 2.0 * 1048576.0 + 0.05e6,
        "flow state {state} over the 2 MiB cap"
    );
}

#[test]
fn stopddos_syn_flood_runs_under_a_small_cap() {
    let Some(shared) = support::shared_dir("bounds::stopddos") else {
        return;
    };
    let cap = shared.join("data/pcaps/stopddos/pkt.TCP.synflood.spoofed.pcap");
    let (all, _) = read(cap.to_str().unwrap(), &[]);
    let (capped, stderr) = read(cap.to_str().unwrap(), &["--max-flows", "500"]);
    assert!(all.len() > 1000, "the capture has many spoofed flows");
    assert!(summary_number(&stderr, "live flows") <= 500);
    let pkts = |recs: &[serde_json::Value]| -> u64 {
        recs.iter()
            .map(|r| r["orig_pkts"].as_u64().unwrap() + r["resp_pkts"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(pkts(&capped), pkts(&all), "no packet is lost by eviction");
    assert!(capped.iter().any(|r| r["cause"] == "evicted"));
}
