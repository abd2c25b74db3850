//! `--threads N` gives the output of a single-threaded run byte for byte: the same flow
//! records in the same order, and so the same alerts (several detectors judge a record
//! by those before it), on the demo, every golden capture, and a spread of the shared
//! captures (tunnels, fragments, ICMP errors, odd link types).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The flow records and the alerts of `read capture --threads threads`.
fn output(capture: &Path, threads: usize) -> (String, String) {
    let alerts = std::env::temp_dir().join(format!(
        "tw-threads-{}-{threads}-{}.jsonl",
        std::process::id(),
        capture.file_name().unwrap_or_default().to_string_lossy()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1") // these tests are about records, not the store
        .arg("read")
        .arg(capture)
        .args(["--flows", "-", "--no-progress", "--alerts"])
        .arg(&alerts)
        .arg("--threads")
        .arg(threads.to_string())
        .output()
        .expect("run tunnelwatch");
    let raised = std::fs::read_to_string(&alerts).unwrap_or_default();
    let _ = std::fs::remove_file(&alerts);
    (String::from_utf8_lossy(&out.stdout).into_owned(), raised)
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
fn threads_give_the_same_output_on_demo_and_golden_captures() {
    let mut alerts = 0;
    for cap in inputs() {
        let one = output(&cap, 1);
        assert!(!one.0.is_empty(), "{}: no records", cap.display());
        alerts += one.1.lines().count();
        for n in [2, 3] {
            let many = output(&cap, n);
            assert!(
                many.0 == one.0,
                "{}: records differ with --threads {n}",
                cap.display()
            );
            assert_eq!(
                many.1,
                one.1,
                "{}: alerts with --threads {n}",
                cap.display()
            );
        }
    }
    assert!(alerts > 0, "no capture raised an alert: nothing compared");
}

/// Compares each of the shared captures `picks` (those present) run with one thread and
/// with each of `threads`; returns how many were compared. `check` looks at the
/// single-threaded records first.
fn compare_shared(
    shared: &Path,
    picks: &[&str],
    threads: &[usize],
    check: impl Fn(&str, &str),
) -> usize {
    let mut compared = 0;
    for rel in picks {
        let cap = shared.join("data/pcaps").join(rel);
        if !cap.exists() {
            eprintln!("threads: {rel} not in this copy of shared/, skipped");
            continue;
        }
        let one = output(&cap, 1);
        check(rel, &one.0);
        for &n in threads {
            let many = output(&cap, n);
            assert!(many.0 == one.0, "{rel}: records differ with --threads {n}");
            assert_eq!(many.1, one.1, "{rel}: alerts with --threads {n}");
        }
        compared += 1;
    }
    compared
}

#[test]
fn threads_give_the_same_output_on_shared_captures() {
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
    let compared = compare_shared(&shared, &pick, &[2], |_, _| {});
    assert!(compared >= 10, "only {compared} shared captures compared");
}

/// Tunnels whose connections come under more than one outer address pair (Teredo's
/// client–server and client–relay, a 6in6 tunnel's endpoints changing) or are seen
/// direct before they go into a tunnel (Zeek's bypass trace, Suricata's flows inside a
/// tunnel): every shard count keeps each connection whole, not only those whose hash
/// happens to agree.
#[test]
fn tunnels_under_two_outer_pairs_give_the_same_output_with_any_threads() {
    let Some(shared) = support::shared_dir("threads::tunnels") else {
        return;
    };
    let pick = [
        "ndpi/pcap/teredo.pcap",
        "ndpi/pcap/6in6tunnel.pcap",
        "ndpi/pcap/syslog.pcap",
        "zeek/Traces/tunnels/6in6-tunnel-change.pcap",
        "zeek/Traces/tunnels/Teredo.pcap",
        "zeek/Traces/tunnels/tunnel-direct-bypass.pcap",
        "suricata-verify/tests/flow-pkt-recursion/tunnel-pkt-flows.pcap",
    ];
    let compared = compare_shared(&shared, &pick, &[2, 3, 4, 5], |rel, records| {
        assert!(
            records.contains("\"tunnel_parents\":[\""),
            "{rel}: no tunnelled flow"
        );
    });
    assert!(compared >= 6, "only {compared} tunnel captures compared");
}
