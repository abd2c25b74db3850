//! `tunnelwatch collect --netflow` / `--netflow-capture`: NetFlow v5, v9 and IPFIX from
//! other projects' test captures. pmacct's captures come with the records nfacctd
//! produced from them: the per-direction packet and byte sums must be the same
//! (sampling renormalised, as nfacctd does). Akvorado's captures (v5, v9 with data
//! before its template, IPFIX biflows from ipfixprobe, ICMP, packet sections) are golden
//! cases (`UPDATE_GOLDEN=1` rewrites after review). The live collector receives the
//! datagrams over UDP, survives garbage, and writes every open flow on SIGTERM.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1")
        .env_remove("TUNNELWATCH_DB")
        .env_remove("TUNNELWATCH_CONFIG")
        .args(args)
        .output()
        .expect("run tunnelwatch")
}

/// The records (parsed), their JSON lines as written, and the summary on stderr.
fn collect_captures(files: &[PathBuf]) -> (Vec<serde_json::Value>, String, String) {
    let mut args = vec!["collect", "--netflow-capture"];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    let o = tw(&args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let text = String::from_utf8(o.stdout).unwrap();
    let recs = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (recs, text, err)
}

/// (src, dst, sport, dport, proto) → [packets, bytes] per direction of the records.
type Sums = BTreeMap<(String, String, u64, u64, u64), [u64; 2]>;

fn sums_of_records(recs: &[serde_json::Value]) -> Sums {
    let mut m = Sums::new();
    for r in recs {
        let p = r["ip_proto"].as_u64().unwrap();
        let icmp = p == 1 || p == 58;
        for (a, b) in [("orig", "resp"), ("resp", "orig")] {
            let (pk, by) = (
                r[format!("{a}_pkts")].as_u64().unwrap(),
                r[format!("{a}_ip_bytes")].as_u64().unwrap(),
            );
            if pk == 0 && by == 0 {
                continue;
            }
            let port = |s: &str| {
                if icmp {
                    0
                } else {
                    r[format!("{s}_p")].as_u64().unwrap()
                }
            };
            let k = (
                r[format!("{a}_h")].as_str().unwrap().to_string(),
                r[format!("{b}_h")].as_str().unwrap().to_string(),
                port(a),
                port(b),
                p,
            );
            let e = m.entry(k).or_default();
            e[0] += pk;
            e[1] += by;
        }
    }
    m
}

fn sums_of_pmacct(path: &Path) -> Sums {
    let mut m = Sums::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if line.trim().is_empty() {
            continue;
        }
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = match j["ip_proto"].as_str().unwrap() {
            "icmp" => 1,
            "tcp" => 6,
            "udp" => 17,
            "gre" => 47,
            "ipv6-icmp" => 58,
            "vrrp" => 112,
            n => n
                .parse()
                .unwrap_or_else(|_| panic!("protocol name {n} not mapped")),
        };
        let icmp = p == 1 || p == 58;
        let port = |k: &str| if icmp { 0 } else { j[k].as_u64().unwrap() };
        let k = (
            j["ip_src"].as_str().unwrap().to_string(),
            j["ip_dst"].as_str().unwrap().to_string(),
            port("port_src"),
            port("port_dst"),
            p,
        );
        let e = m.entry(k).or_default();
        e[0] += j["packets"].as_u64().unwrap();
        e[1] += j["bytes"].as_u64().unwrap();
    }
    m
}

#[test]
fn pmacct_captures_give_the_counters_nfacctd_gives() {
    let Some(shared) = support::shared_dir("pmacct_captures_give_the_counters_nfacctd_gives")
    else {
        return;
    };
    let root = shared.join("data/pcaps/pmacct-test-automation/tests");
    let mut cases = 0;
    for case in std::fs::read_dir(&root).unwrap().flatten() {
        let dir = case.path();
        let expected = dir.join("output-flow-00.json");
        if !expected.is_file() {
            continue;
        }
        let mut traffic: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_str().unwrap();
                n.starts_with("traffic-") && n.ends_with(".pcap")
            })
            .collect();
        traffic.sort();
        let (recs, _, err) = collect_captures(&traffic);
        assert!(err.contains("0 malformed"), "{}: {err}", dir.display());
        let (got, want) = (sums_of_records(&recs), sums_of_pmacct(&expected));
        assert!(!want.is_empty());
        assert_eq!(got, want, "{}", dir.display());
        cases += 1;
    }
    // IPFIX, NFv9, IPv6 with a sampling options record, several sources at once.
    assert_eq!(cases, 7);
}

/// Akvorado's captures: file groups read in order (templates first, as exported).
const AKVORADO: &[(&str, &[&str])] = &[
    ("nfv5", &["nfv5.pcap"]),
    ("v9-data-before-template", &["data+templates.pcap"]),
    ("v9-template-then-data", &["template.pcap", "data.pcap"]),
    (
        "ipfix-sampling-options",
        &[
            "multiplesamplingrates-options-template.pcap",
            "multiplesamplingrates-options-data.pcap",
            "multiplesamplingrates-template.pcap",
            "multiplesamplingrates-data.pcap",
        ],
    ),
    (
        "ipfix-biflows-ipfixprobe",
        &["ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"],
    ),
    ("ipfix-icmp", &["icmp-template.pcap", "icmp-data.pcap"]),
    (
        "ipfix-packet-sections",
        &["datalink-template.pcap", "datalink-data.pcap"],
    ),
    ("ipfix-nat", &["nat.pcap"]),
];

#[test]
fn akvorado_captures_give_the_golden_flows() {
    let Some(shared) = support::shared_dir("akvorado_captures_give_the_golden_flows") else {
        return;
    };
    let src = shared.join("data/pcaps/akvorado/outlet/flow/decoder/netflow/testdata");
    let golden = support::workspace().join("tests/netflow");
    for (name, files) in AKVORADO {
        let files: Vec<PathBuf> = files.iter().map(|f| src.join(f)).collect();
        let (_, got, err) = collect_captures(&files);
        assert!(err.contains("0 malformed"), "{name}: {err}");
        let expected = golden.join(format!("{name}.flows.jsonl"));
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::write(&expected, &got).unwrap();
        }
        let want = std::fs::read_to_string(&expected)
            .unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        assert_eq!(got, want, "{name}: UPDATE_GOLDEN=1 rewrites after review");
    }
    // Facts the goldens must keep, whatever else changes.
    let read = |n: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(golden.join(format!("{n}.flows.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(read("nfv5").len(), 29);
    let early = read("v9-data-before-template");
    assert!(
        !early.is_empty(),
        "held data decoded once its template came"
    );
    let bi = read("ipfix-biflows-ipfixprobe");
    assert!(bi.iter().all(|r| r["export"]["join"] == "biflow"));
    assert!(bi.iter().any(|r| r["resp_pkts"].as_u64().unwrap() > 0));
    let icmp = read("ipfix-icmp");
    assert!(icmp.iter().any(|r| r["export"]["join"] == "paired"));
    let sampled = read("ipfix-sampling-options");
    assert!(sampled
        .iter()
        .any(|r| r["export"]["sampling"].as_u64().unwrap() > 1));
    let sections = read("ipfix-packet-sections");
    assert!(sections.iter().all(|r| r["orig_h"] != "0.0.0.0"));
}

/// The UDP payloads of a pcap of IPv4 datagrams over Ethernet.
fn datagrams(pcap: &Path) -> Vec<Vec<u8>> {
    let mut d = Vec::new();
    std::fs::File::open(pcap)
        .unwrap()
        .read_to_end(&mut d)
        .unwrap();
    let le = d[0] == 0xd4;
    let u32at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= d.len() {
        let len = u32at(&d[at + 8..]) as usize;
        let frame = &d[at + 16..at + 16 + len];
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        out.push(frame[14 + ihl + 8..].to_vec());
        at += 16 + len;
    }
    out
}

/// A live `collect --netflow` on a free loopback port; stopped with SIGTERM (killed if
/// a test fails first).
struct Live {
    child: std::process::Child,
    stderr: BufReader<std::process::ChildStderr>,
    flows: Option<std::thread::JoinHandle<String>>,
    addr: String,
}

impl Live {
    fn start(extra: &[&str]) -> Live {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
            .env("TUNNELWATCH_NO_STORE", "1")
            .env_remove("TUNNELWATCH_CONFIG")
            .args(["collect", "--netflow", &addr])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "{line}");
        let flows = std::thread::spawn(move || {
            let mut s = String::new();
            BufReader::new(stdout).read_to_string(&mut s).unwrap();
            s
        });
        Live {
            child,
            stderr,
            flows: Some(flows),
            addr,
        }
    }

    /// SIGTERM, then the flow records written and the rest of stderr.
    fn stop(mut self) -> (Vec<serde_json::Value>, String) {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "{status}: {rest}");
        let flows = self.flows.take().unwrap().join().unwrap();
        let recs = flows
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (recs, rest)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_live_collector_takes_udp_survives_garbage_and_flushes_on_sigterm() {
    let Some(shared) = support::shared_dir("the_live_collector_takes_udp") else {
        return;
    };
    let v5 = shared.join("data/pcaps/akvorado/outlet/flow/decoder/netflow/testdata/nfv5.pcap");
    let live = Live::start(&[]);
    let addr = live.addr.clone();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"\x00\x0a\x00\x20 not an IPFIX message at all", &addr)
        .unwrap();
    tx.send_to(b"GET / HTTP/1.1\r\n\r\n", &addr).unwrap();
    for d in datagrams(&v5) {
        tx.send_to(&d, &addr).unwrap();
    }
    let (flows, rest) = live.stop();
    assert_eq!(flows.len(), 29, "{rest}");
    assert!(
        rest.contains("1 datagrams not NetFlow/IPFIX, 1 malformed"),
        "{rest}"
    );
    assert!(
        rest.contains("datagram 1 from 127.0.0.1: at byte 18: set 22560"),
        "the bad one named with its byte offset: {rest}"
    );
}

#[test]
fn a_scan_seen_only_through_netflow_raises_the_scan_rule() {
    // softflowd 1.1 exported the attack lab's SYN scan (tests/lab/captures/scan_syn.pcap)
    // as NetFlow v9 to a port tcpdump captured: tests/netflow/scan-syn-softflowd-v9.pcap.
    let dir = std::env::temp_dir().join(format!("tw-netflow-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alerts = dir.join("alerts.jsonl");
    let capture = support::workspace().join("tests/netflow/scan-syn-softflowd-v9.pcap");
    let o = tw(&[
        "collect",
        "--netflow-capture",
        capture.to_str().unwrap(),
        "--flows",
        dir.join("flows.jsonl").to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&alerts).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scan = alerts
        .iter()
        .find(|a| a["detector"] == "port_scan")
        .unwrap_or_else(|| panic!("no port_scan: {text}"));
    assert_eq!(scan["orig_h"], "10.77.0.1");
    assert_eq!(scan["severity"], "high");
    // The probes and their refusals were paired: SYN out, RST back.
    let flows = std::fs::read_to_string(dir.join("flows.jsonl")).unwrap();
    let rej = flows.lines().filter(|l| l.contains("\"REJ\"")).count();
    assert!(rej > 1000, "{rej} refused probes");
    // Nothing but scan alerts: a SYN's options are not payload.
    assert!(alerts.iter().all(|a| a["category"] == "scan"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A peer from Debian's packages, or `None` with a loud message (a failure under CI).
fn peer(bin: &str, test: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: CI=true but {bin} is not installed (tests/interop/setup.sh installs it)");
    }
    eprintln!(
        "\n*** SKIPPED {test}: {bin} not installed (tests/interop/setup.sh installs it). \
         This test is required under CI=true. ***\n"
    );
    None
}

#[test]
fn softflowd_exporting_a_capture_to_the_collector_gives_the_flows_read_gives() {
    let test = "softflowd_exporting_a_capture_to_the_collector";
    let Some(softflowd) = peer("softflowd", test) else {
        return;
    };
    let capture = support::workspace().join("tests/lab/captures/benign_web.pcap");
    for version in ["9", "10"] {
        let live = Live::start(&[]);
        let addr = live.addr.clone();
        // softflowd reads the capture, expires every flow at its end and exits.
        let sf = Command::new(&softflowd)
            .args([
                "-d",
                "-r",
                capture.to_str().unwrap(),
                "-n",
                &addr,
                "-v",
                version,
            ])
            .output()
            .unwrap();
        assert!(
            sf.status.success(),
            "{}",
            String::from_utf8_lossy(&sf.stderr)
        );
        let (collected, rest) = live.stop();
        let o = tw(&["read", capture.to_str().unwrap(), "--flows", "-"]);
        assert!(o.status.success());
        let read: Vec<serde_json::Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // softflowd counts IP bytes and packets per direction like the flow table; the
        // two directions come as two records and are paired again by the collector.
        assert_eq!(
            sums_of_records(&collected),
            sums_of_records(&read),
            "v{version}: {rest}"
        );
        assert_eq!(collected.len(), read.len(), "v{version}");
        let paired = collected
            .iter()
            .filter(|r| r["export"]["join"] == "paired")
            .count();
        let two_way = read
            .iter()
            .filter(|r| r["resp_pkts"].as_u64().unwrap() > 0)
            .count();
        assert_eq!(paired, two_way, "v{version}");
        // Times: softflowd stamps milliseconds (v9: against the header's uptime and
        // whole seconds of export time, so up to a second early; IPFIX: against
        // systemInitTimeMilliseconds, its uptime wrapping for packets older than its
        // start).
        let ts = |v: &[serde_json::Value]| -> BTreeMap<String, f64> {
            v.iter()
                .map(|r| {
                    (
                        format!("{} {}", r["orig_p"], r["resp_h"]),
                        r["ts"].as_f64().unwrap(),
                    )
                })
                .collect()
        };
        let (tc, tr) = (ts(&collected), ts(&read));
        for (k, t) in &tc {
            let d = t - tr[k];
            assert!(
                (-1.0..0.01).contains(&d),
                "v{version} {k}: ts {t} vs {}",
                tr[k]
            );
        }
        // The originator chosen from the two records' start times is the SYN's sender.
        let ends = |v: &[serde_json::Value]| -> std::collections::BTreeSet<String> {
            v.iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"]
                    )
                })
                .collect()
        };
        assert_eq!(ends(&collected), ends(&read), "v{version}");
    }
}

/// What a flow record from a tunnelwatch export must keep of the original.
fn kept(r: &serde_json::Value) -> String {
    let d = &r["dynamics"];
    format!(
        "{} {} {} {} {} pkts {}/{} ip {}/{} payload {}/{} keys {}/{} retx {}/{}",
        r["proto"],
        r["orig_h"],
        r["orig_p"],
        r["resp_h"],
        r["resp_p"],
        r["orig_pkts"],
        r["resp_pkts"],
        r["orig_ip_bytes"],
        r["resp_ip_bytes"],
        r["orig_bytes"],
        r["resp_bytes"],
        d["orig"]["keystrokes"].as_u64().unwrap_or(0),
        d["resp"]["keystrokes"].as_u64().unwrap_or(0),
        d["orig"]["retransmissions"],
        d["resp"]["retransmissions"],
    )
}

#[test]
fn a_tunnelwatch_export_collected_by_tunnelwatch_gives_back_the_flows_and_their_dynamics() {
    let root = support::workspace();
    let cases: [(&str, &[&str]); 3] = [
        ("examples/demo.pcap", &[]),
        // Interim records are deltas; the collector continues them into one flow.
        ("examples/demo.pcap", &["--active-timeout", "5"]),
        ("tests/lab/tunnels/captures/ssh_interactive.pcap", &[]),
    ];
    for (capture, extra) in cases {
        let capture = root.join(capture);
        let dir = std::env::temp_dir().join(format!("tw-roundtrip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let alerts = dir.join("alerts.jsonl");
        let live = Live::start(&["--alerts", alerts.to_str().unwrap()]);
        let mut args = vec![
            "read",
            capture.to_str().unwrap(),
            "--flows",
            "-",
            "--ipfix-export",
            &live.addr,
        ];
        args.extend(extra);
        let o = tw(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (collected, rest) = live.stop();
        let read: Vec<serde_json::Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["cause"] != "status")
            .collect();
        let name = format!("{} {extra:?}", capture.display());
        assert!(!read.is_empty());
        let mut want: Vec<String> = read.iter().map(kept).collect();
        let mut got: Vec<String> = collected.iter().map(kept).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{name}: {rest}");
        assert!(
            collected.iter().all(|r| r["export"]["join"] == "biflow"),
            "{name}"
        );
        let alerts = std::fs::read_to_string(&alerts).unwrap();
        if capture.ends_with("ssh_interactive.pcap") {
            // The keystrokes counted by the exporting sensor reach the collector's
            // detectors: the interactive session is still seen.
            assert!(alerts.contains("\"keystrokes\""), "{alerts}");
        } else {
            assert!(alerts.is_empty(), "{name}: {alerts}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_dns_tunnel_seen_only_through_netflow_raises_the_flow_metric_rule() {
    // Seed 002's DNS-tunnel detection from flow metrics alone: nDPI's iodine capture
    // exported by softflowd as NetFlow v9, collected, judged without a byte of DNS.
    let test = "a_dns_tunnel_seen_only_through_netflow";
    let Some(shared) = support::shared_dir(test) else {
        return;
    };
    let Some(softflowd) = peer("softflowd", test) else {
        return;
    };
    let capture = shared.join("data/pcaps/ndpi/pcap/dns-tunnel-iodine.pcap");
    let dir = std::env::temp_dir().join(format!("tw-netflow-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alerts = dir.join("alerts.jsonl");
    let live = Live::start(&["--alerts", alerts.to_str().unwrap()]);
    let sf = Command::new(&softflowd)
        .args([
            "-d",
            "-r",
            capture.to_str().unwrap(),
            "-n",
            &live.addr,
            "-v",
            "9",
        ])
        .output()
        .unwrap();
    assert!(
        sf.status.success(),
        "{}",
        String::from_utf8_lossy(&sf.stderr)
    );
    let (flows, rest) = live.stop();
    assert!(!flows.is_empty(), "{rest}");
    let text = std::fs::read_to_string(&alerts).unwrap();
    let dns: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &serde_json::Value| a["detector"] == "dns_tunnel_flow")
        .collect();
    assert!(
        !dns.is_empty(),
        "no dns_tunnel_flow from the collected flows: {text}"
    );
    assert_eq!(dns[0]["evidence"]["carrier"], "DNS");
    std::fs::remove_dir_all(&dir).unwrap();
}
