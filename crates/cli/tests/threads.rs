//! `--threads N` gives the records of a single-threaded run: the same set, byte for
//! byte (the order differs), on the demo, every golden capture, and a spread of the
//! shared captures (tunnels, fragments, ICMP errors, odd link types).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn sorted_records(capture: &Path, threads: usize) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1") // these tests are about records, not the store
        .arg("read")
        .arg(capture)
        .args(["--flows", "-", "--no-progress", "--threads"])
        .arg(threads.to_string())
        .output()
        .expect("run tunnelwatch");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn inputs() -> Vec<PathBuf> {
    let ws = support::workspace();
    let mut v = vec![ws.join("examples/demo.pcap")];
    let mut golden: Vec<PathBuf> = std::fs::read_dir(ws.join("tests/golden"))
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir())
        .map(|d| support::golden_input(&d.path()))
        .collect();
    golden.sort();
    v.extend(golden);
    v
}

#[test]
fn threads_give_the_same_records_on_demo_and_golden_captures() {
    for cap in inputs() {
        let one = sorted_records(&cap, 1);
        assert!(!one.is_empty(), "{}: no records", cap.display());
        for n in [2, 3] {
            assert_eq!(
                sorted_records(&cap, n),
                one,
                "{} with --threads {n}",
                cap.display()
            );
        }
    }
}

#[test]
fn threads_give_the_same_records_on_shared_captures() {
    let Some(shared) = support::shared_dir("threads::shared") else {
        return;
    };
    let pick = [
        "zeek/Traces/tunnels/gre-sample.pcap",
        "zeek/Traces/tunnels/gre-within-gre.pcap",
        "zeek/Traces/tunnels/Teredo.pcap",
        "zeek/Traces/tunnels/4in6.pcap",
        "zeek/Traces/tunnels/6in6in6.pcap",
        "zeek/Traces/tunnels/geneve.pcap",
        "zeek/Traces/icmp/icmp-destunreach-ip.pcap",
        "zeek/Traces/ipv6-fragmented-dns.pcap",
        "zeek/Traces/tunnels/gtp/gtp1_gn_normal_incl_fragmentation.pcap",
        "zeek/Traces/http/bro.org.pcap",
        "zeek/Traces/echo-connections.pcap.gz",
        "stopddos/amp.dns.RRSIG.fragmented.pcap",
        "stopddos/pkt.TCP.synflood.spoofed.pcap",
        "ndpi/pcap/1kxun.pcap",
    ];
    let mut compared = 0;
    for rel in pick {
        let cap = shared.join("data/pcaps").join(rel);
        if !cap.exists() {
            eprintln!("threads: {rel} not in this copy of shared/, skipped");
            continue;
        }
        let one = sorted_records(&cap, 1);
        assert_eq!(sorted_records(&cap, 2), one, "{rel} with --threads 2");
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} shared captures compared");
}
