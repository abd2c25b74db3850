//! `tunnelwatch read --ipfix-export`: the IPFIX biflows it sends, as real collectors see
//! them (issue 8, part 3; `docs/specs/ipfix-export.md`).
//!
//! - nfdump: `nfcapd` receives the export on loopback, `nfdump -o json` reads back what
//!   it stored, and every flow must be there with the record's 5-tuple, times and
//!   per-direction packets and bytes. nfdump keeps one record per biflow: the forward
//!   counters (`packetDeltaCount`, `octetDeltaCount`: the originator's) become its `in`
//!   packets and bytes, the RFC 5103 reverse counters (PEN 29305) its `out` packets and
//!   bytes, which it otherwise fills from `postPacketDeltaCount`/`postOctetDeltaCount`
//!   (egress counters of a router or firewall); its summary adds `in` and `out`. ICMP's
//!   type and code are read from the destination port (type × 256 + code). Other reverse
//!   elements it reads as their forward element (the later one in a record wins), which
//!   is why the template puts the forward `tcpControlBits` last. See
//!   `docs/COMPARISON.md`, "IPFIX export seen by nfdump".
//! - Wireshark: the datagrams, caught on a test socket and wrapped in Ethernet/IPv4/UDP
//!   to port 4739, must decode in `tshark -V` without a malformed or error entry, with
//!   both templates and every record's addresses, ports and counters.
//!
//! The peers are Debian packages (`tests/interop/setup.sh` installs them). Without one
//! a test says SKIPPED loudly and passes, except under `CI=true`, where it fails.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tunnelwatch_model::{Cause, FlowRecord};

/// The binary `name` on `PATH` (or in the sbin directories Debian puts daemons in), or
/// `None` with a loud message; under `CI=true` a missing peer is a failure.
fn peer(name: &str, test: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: CI=true but {name} is not installed (tests/interop/setup.sh installs it)"
    );
    eprintln!(
        "\n*** SKIPPED {test}: {name} not installed (tests/interop/setup.sh installs it). \
         This test is required under CI=true. ***\n"
    );
    None
}

/// A fresh directory under the target's test scratch space.
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ipfix_export")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `tunnelwatch read CAPTURE --flows FILE --ipfix-export ADDR` plus `extra`; the
/// records it wrote and its standard error.
fn read_and_export(
    capture: &Path,
    dir: &Path,
    target: &str,
    extra: &[&str],
) -> (Vec<FlowRecord>, String) {
    let flows = dir.join("flows.jsonl");
    let o: Output = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env("TUNNELWATCH_NO_STORE", "1")
        .env_remove("TUNNELWATCH_DB")
        .env_remove("TUNNELWATCH_CONFIG")
        .args(["read", "--no-detect", "--no-progress", "--flows"])
        .arg(&flows)
        .args(["--ipfix-export", target])
        .args(extra)
        .arg(capture)
        .output()
        .expect("run tunnelwatch");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "tunnelwatch read failed:\n{stderr}");
    let records = std::fs::read_to_string(&flows)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a flow record"))
        .collect();
    (records, stderr)
}

/// ICMP's type and code as the export carries them in the destination port (the source
/// port is 0): the record keeps the type as `orig_p` and, as `resp_p`, the code of a
/// one-way message or the counterpart type of a request/reply (code 0).
fn ports(r: &FlowRecord) -> (u16, u16) {
    if r.ip_proto == 1 || r.ip_proto == 58 {
        let t = r.orig_p.min(255) as u8;
        let (_, one_way) = tunnelwatch_flow::key::icmp_counterpart(r.ip_proto == 58, t, 0);
        let code = if one_way { r.resp_p.min(255) } else { 0 };
        (0, u16::from(t) << 8 | code)
    } else {
        (r.orig_p, r.resp_p)
    }
}

/// A running `nfcapd`, stopped and waited for even when a test fails.
struct Nfcapd {
    child: Child,
    log: PathBuf,
}

impl Nfcapd {
    /// Starts `nfcapd` on a free loopback port writing into `dir`; returns it and the
    /// port once its socket is bound.
    fn start(bin: &Path, dir: &Path) -> (Nfcapd, u16) {
        for _ in 0..20 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .unwrap()
                .port();
            let log = dir.join("nfcapd.log");
            let flows = dir.join("flows");
            std::fs::create_dir_all(&flows).unwrap();
            let child = Command::new(bin)
                .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
                .arg(&flows)
                .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
                .stderr(Stdio::from(
                    std::fs::File::options().append(true).open(&log).unwrap(),
                ))
                .spawn()
                .expect("start nfcapd");
            let mut n = Nfcapd { child, log };
            // Bound when the port can no longer be bound by us.
            for _ in 0..100 {
                if let Ok(Some(_)) = n.child.try_wait() {
                    break; // lost the port to someone else: try another one
                }
                if UdpSocket::bind(("127.0.0.1", port)).is_err() {
                    return (n, port);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("nfcapd did not start on any port");
    }

    /// SIGTERM (nfcapd writes its file when it terminates) and wait; returns its log.
    fn stop(&mut self) -> String {
        // Let it take the last datagrams from its socket first.
        std::thread::sleep(Duration::from_millis(1000));
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One flow as nfdump stored it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct NfFlow {
    src: IpAddr,
    dst: IpAddr,
    sp: u16,
    dp: u16,
    proto: u8,
    first: String,
    last: String,
    in_pkts: u64,
    in_bytes: u64,
    out_pkts: u64,
    out_bytes: u64,
}

/// nfdump's time format (`-o json`, TZ=UTC): `2011-03-18T19:06:07.096`.
fn nf_time(t: tunnelwatch_model::Timestamp) -> String {
    let s = tunnelwatch_output::zeek::zeek_stamp(t); // 2011-03-18-19-06-07
    let ms = t.as_nanos().rem_euclid(1_000_000_000) / 1_000_000;
    format!(
        "{}T{}:{}:{}.{ms:03}",
        &s[..10],
        &s[11..13],
        &s[14..16],
        &s[17..19]
    )
}

/// What nfdump should show for `r` (counters given: interim records carry deltas).
fn expected(r: &FlowRecord, counters: [u64; 4]) -> NfFlow {
    let (sp, dp) = ports(r);
    NfFlow {
        src: r.orig_h,
        dst: r.resp_h,
        sp,
        dp,
        proto: r.ip_proto,
        first: nf_time(r.ts),
        last: nf_time(r.last_ts),
        in_pkts: counters[0],
        in_bytes: counters[1],
        out_pkts: counters[2],
        out_bytes: counters[3],
    }
}

fn nfdump_flows(nfdump: &Path, dir: &Path) -> Vec<NfFlow> {
    let o = Command::new(nfdump)
        .env("TZ", "UTC")
        .arg("-R")
        .arg(dir.join("flows"))
        .args(["-o", "json"])
        .output()
        .expect("run nfdump");
    assert!(
        o.status.success(),
        "nfdump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "nfdump -o json: {e}\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    let addr = |f: &serde_json::Value, k4: &str, k6: &str| -> IpAddr {
        f[k4]
            .as_str()
            .or(f[k6].as_str())
            .unwrap_or_else(|| panic!("no {k4}/{k6} in {f}"))
            .parse()
            .unwrap()
    };
    let num = |f: &serde_json::Value, k: &str| -> u64 {
        f[k].as_u64().unwrap_or_else(|| panic!("no {k} in {f}"))
    };
    let mut flows: Vec<NfFlow> = v
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter(|f| f["type"] == "FLOW")
        .map(|f| NfFlow {
            src: addr(f, "src4_addr", "src6_addr"),
            dst: addr(f, "dst4_addr", "dst6_addr"),
            // ICMP flows show `icmp_type` and `icmp_code` (from the destination port)
            // instead of ports.
            sp: f["src_port"].as_u64().unwrap_or(0) as u16,
            dp: match f["dst_port"].as_u64() {
                Some(p) => p as u16,
                None => (num(f, "icmp_type") << 8 | num(f, "icmp_code")) as u16,
            },
            proto: num(f, "proto") as u8,
            first: f["first"].as_str().unwrap_or_default().to_string(),
            last: f["last"].as_str().unwrap_or_default().to_string(),
            in_pkts: num(f, "in_packets"),
            in_bytes: num(f, "in_bytes"),
            out_pkts: num(f, "out_packets"),
            out_bytes: num(f, "out_bytes"),
        })
        .collect();
    flows.sort();
    flows
}

/// Exports `capture` to a fresh nfcapd and checks nfdump's flows against the records:
/// one nfdump flow per record, with its 5-tuple, first/last times and per-direction
/// packets and bytes (interim records as deltas); the sums equal the final records'.
fn nfdump_sees_every_record(test: &str, capture: &Path, extra: &[&str]) -> Vec<FlowRecord> {
    let (Some(nfcapd), Some(nfdump)) = (peer("nfcapd", test), peer("nfdump", test)) else {
        return Vec::new();
    };
    let dir = scratch(test);
    let (mut collector, port) = Nfcapd::start(&nfcapd, &dir);
    let (records, stderr) = read_and_export(capture, &dir, &format!("127.0.0.1:{port}"), extra);
    let log = collector.stop();
    drop(collector);
    assert!(!records.is_empty(), "{}: no records", capture.display());
    assert!(
        stderr.contains(&format!(
            "ipfix export to 127.0.0.1:{port}: {} records",
            records.len()
        )) && !stderr.contains("not sent"),
        "summary line: {stderr}"
    );
    assert!(
        log.contains("Sequence Errors: 0"),
        "nfcapd saw a sequence gap:\n{log}"
    );
    let got = nfdump_flows(&nfdump, &dir);

    // What each record should look like: counters less what the flow's interim records
    // already reported.
    let mut reported: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    let mut want: Vec<NfFlow> = records
        .iter()
        .map(|r| {
            let now = [r.orig_pkts, r.orig_ip_bytes, r.resp_pkts, r.resp_ip_bytes];
            let before = if r.cause == Cause::Status {
                reported.insert(&r.uid, now)
            } else {
                reported.remove(r.uid.as_str())
            }
            .unwrap_or_default();
            expected(r, std::array::from_fn(|i| now[i] - before[i]))
        })
        .collect();
    want.sort();
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
    assert!(
        got == want,
        "{}: {} records, nfdump has {} flows\nmissing in nfdump: {missing:#?}\nonly in nfdump: {extra:#?}",
        capture.display(),
        want.len(),
        got.len()
    );

    // Summed per direction, nfdump's flows are the final records' totals.
    let finals = records.iter().filter(|r| r.cause != Cause::Status);
    let totals = finals.fold([0u64; 4], |t, r| {
        [
            t[0] + r.orig_pkts,
            t[1] + r.orig_ip_bytes,
            t[2] + r.resp_pkts,
            t[3] + r.resp_ip_bytes,
        ]
    });
    let sums = got.iter().fold([0u64; 4], |t, f| {
        [
            t[0] + f.in_pkts,
            t[1] + f.in_bytes,
            t[2] + f.out_pkts,
            t[3] + f.out_bytes,
        ]
    });
    assert_eq!(sums, totals, "in/out packets and bytes summed");
    let _ = std::fs::remove_dir_all(&dir);
    records
}

#[test]
fn ipfix_export_demo_capture_is_what_nfdump_stores() {
    let demo = support::workspace().join("examples/demo.pcap");
    let records = nfdump_sees_every_record("ipfix_nfdump_demo", &demo, &[]);
    if !records.is_empty() {
        // The demo has IPv4, IPv6 (Teredo), ICMP and GRE flows: both templates and
        // the ICMP port convention were exercised.
        assert!(records.iter().any(|r| r.orig_h.is_ipv6()));
        assert!(records.iter().any(|r| r.ip_proto == 1));
        assert!(records.iter().any(|r| r.ip_proto == 47));
    }
}

#[test]
fn ipfix_export_ipv6_capture_is_what_nfdump_stores() {
    let Some(shared) = support::shared_dir("ipfix_export_ipv6_capture_is_what_nfdump_stores")
    else {
        return;
    };
    // Suricata-verify's Community ID IPv6 case: TCP and DNS over IPv6.
    let cap = shared.join("data/pcaps/suricata-verify/tests/community-id-ipv6/input.pcap");
    let records = nfdump_sees_every_record("ipfix_nfdump_ipv6", &cap, &[]);
    if !records.is_empty() {
        assert!(records.iter().all(|r| r.orig_h.is_ipv6()));
    }
}

#[test]
fn ipfix_export_interim_records_are_deltas_nfdump_sums_to_the_totals() {
    let demo = support::workspace().join("examples/demo.pcap");
    let records =
        nfdump_sees_every_record("ipfix_nfdump_interim", &demo, &["--active-timeout", "5"]);
    if !records.is_empty() {
        assert!(
            records.iter().any(|r| r.cause == Cause::Status),
            "a 5 s active timeout gives the demo's longer flows interim records"
        );
    }
}

/// A pcap of `datagrams`, each in Ethernet/IPv4/UDP from 127.0.0.1:40000 to
/// 127.0.0.1:4739 (IPFIX's port), one second apart.
fn write_pcap(path: &Path, datagrams: &[Vec<u8>]) {
    // Global header: magic, version 2.4, zone, sigfigs, snaplen, Ethernet.
    let mut f = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65_535, 1] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    for (i, d) in datagrams.iter().enumerate() {
        let udp_len = 8 + d.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let mut frame = vec![0u8; 12];
        frame[5] = 1;
        frame[11] = 2;
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&40_000u16.to_be_bytes());
        frame.extend_from_slice(&4739u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        frame.extend_from_slice(d);
        for v in [
            1_300_000_000 + i as u32,
            0,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&frame);
    }
    std::fs::write(path, f).unwrap();
}

/// One data record as `tshark -V` shows it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shown {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sp: Option<u16>,
    dp: Option<u16>,
    pkts: Option<u64>,
    octets: Option<u64>,
    rev_pkts: Option<u64>,
    rev_octets: Option<u64>,
}

/// The data records in `tshark -V`'s text, in order.
fn tshark_records(text: &str) -> Vec<Shown> {
    fn value<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
        line.strip_prefix(key)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
    let mut out: Vec<Shown> = Vec::new();
    for line in text.lines().map(str::trim) {
        let is_flow = line
            .strip_prefix("Flow ")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_flow {
            out.push(Shown::default());
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let reverse = line.contains("(Reverse");
        if let Some(v) = value(line, "SrcAddr: ") {
            cur.src = Some(v);
        } else if let Some(v) = value(line, "DstAddr: ") {
            cur.dst = Some(v);
        } else if let Some(v) = value(line, "SrcPort: ") {
            cur.sp = Some(v);
        } else if let Some(v) = value(line, "DstPort: ") {
            cur.dp = Some(v);
        } else if let Some(v) = value(line, "Packets: ") {
            *(if reverse {
                &mut cur.rev_pkts
            } else {
                &mut cur.pkts
            }) = Some(v);
        } else if let Some(v) = value(line, "Octets: ") {
            *(if reverse {
                &mut cur.rev_octets
            } else {
                &mut cur.octets
            }) = Some(v);
        }
    }
    out
}

#[test]
fn ipfix_export_decodes_in_wireshark_without_errors() {
    let test = "ipfix_export_decodes_in_wireshark_without_errors";
    let Some(tshark) = peer("tshark", test) else {
        return;
    };
    let dir = scratch("tshark");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = socket.local_addr().unwrap().to_string();
    let demo = support::workspace().join("examples/demo.pcap");
    // The test socket takes the datagrams while tunnelwatch runs.
    let catcher = std::thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let mut idle = 0;
        // Up to ~60 s of silence before tunnelwatch's first datagram, then 2 s after
        // its last one.
        while idle < if got.is_empty() { 200 } else { 7 } {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    got.push(buf[..n].to_vec());
                    idle = 0;
                }
                Err(_) => idle += 1,
            }
        }
        got
    });
    let (records, stderr) = read_and_export(&demo, &dir, &target, &[]);
    let datagrams = catcher.join().unwrap();
    assert!(
        stderr.contains(&format!(
            "{} records in {} datagrams",
            records.len(),
            datagrams.len()
        )),
        "every datagram caught: {}\n{stderr}",
        datagrams.len()
    );
    let pcap = dir.join("ipfix.pcap");
    write_pcap(&pcap, &datagrams);
    let o = Command::new(&tshark)
        .arg("-r")
        .arg(&pcap)
        .args(["-V", "-d", "udp.port==4739,cflow"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Malformed") || l.contains("[Expert Info (Error"))
        .collect();
    assert!(bad.is_empty(), "tshark found errors: {bad:#?}");
    assert!(text.contains("Version: 10"), "IPFIX");
    assert!(
        text.contains("Template (Id = 256, Count = 27)"),
        "IPv4 template"
    );
    assert!(
        text.contains("Template (Id = 257, Count = 27)"),
        "IPv6 template"
    );
    assert!(text.contains("(Reverse Type 2 PKTS)") && text.contains("Biflow Direction"));
    assert!(!text.contains("[Template Frame: 0]") && !text.contains("no template found"));

    // Every record, in the order it was written, with its endpoints and counters.
    let shown = tshark_records(&text);
    let want: Vec<Shown> = records
        .iter()
        .map(|r| {
            let (sp, dp) = ports(r);
            Shown {
                src: Some(r.orig_h),
                dst: Some(r.resp_h),
                sp: Some(sp),
                dp: Some(dp),
                pkts: Some(r.orig_pkts),
                octets: Some(r.orig_ip_bytes),
                rev_pkts: Some(r.resp_pkts),
                rev_octets: Some(r.resp_ip_bytes),
            }
        })
        .collect();
    assert_eq!(shown.len(), want.len(), "data records shown");
    for (i, (s, w)) in shown.iter().zip(&want).enumerate() {
        assert_eq!(s, w, "record {i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
