//! Agreement with two more flow meters on their own test captures: nDPI (`ndpiReader`
//! result files, per-direction packets and bytes per 5-tuple) and NFStream (flow CSVs,
//! packets and bytes per flow, without keys). Both count link-layer bytes and do not
//! reassemble IP fragments, so tunnelwatch runs here without reassembly and with its
//! `link_bytes`; NFStream's flows also follow its own timeouts (see
//! `docs/COMPARISON.md`). Differences are written to `$CARGO_TARGET_TMPDIR`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tunnelwatch_flow::ChecksumMode;
use tunnelwatch_model::FlowRecord;
use tunnelwatch_sensor::SensorConfig;

/// Direction-free key: protocol name as nDPI prints it, and the two endpoints sorted.
type Key = (String, (String, u16), (String, u16));

fn ndpi_proto(r: &FlowRecord) -> String {
    match r.ip_proto {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMPV6".into(),
        2 => "IGMP".into(),
        50 => "ESP".into(),
        51 => "AH".into(),
        112 => "VRRP".into(),
        47 => "GRE".into(),
        132 => "SCTP".into(),
        89 => "OSPF".into(),
        103 => "PIM".into(),
        113 => "PGM".into(),
        n => n.to_string(),
    }
}

fn key(proto: String, a: (String, u16), b: (String, u16)) -> (Key, bool) {
    let (a, b) = if proto.starts_with("ICMP") {
        ((a.0, 0), (b.0, 0))
    } else {
        (a, b)
    };
    if a <= b {
        ((proto, a, b), true)
    } else {
        ((proto, b, a), false)
    }
}

fn endpoint(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    Some((
        h.parse::<std::net::IpAddr>().ok()?.to_string(),
        p.parse().ok()?,
    ))
}

/// Parses the flow lines of an ndpiReader result: `N  PROTO a:p <-> b:p [...][x pkts/y
/// bytes <-> z pkts/w bytes]`. Returns per key (lower endpoint first) the summed
/// counters and how many lines made them.
fn parse_ndpi(text: &str) -> HashMap<Key, ([u64; 4], usize)> {
    let mut out: HashMap<Key, ([u64; 4], usize)> = HashMap::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || !line.starts_with(['\t', ' ']) || t[0].parse::<u64>().is_err() {
            continue;
        }
        let (Some(a), Some(b)) = (endpoint(t[2]), endpoint(t[4])) else {
            continue;
        };
        let Some(i) = line.find(" pkts/") else {
            continue;
        };
        // "[x pkts/y bytes <-> z pkts/w bytes]" or with "->".
        let start = line[..i].rfind('[').map_or(0, |s| s + 1);
        let end = line[i..].find(']').map_or(line.len(), |e| i + e);
        let nums: Vec<u64> = line[start..end]
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        if nums.len() != 4 {
            continue;
        }
        let (k, a_first) = key(t[1].to_string(), a, b);
        let v = if a_first {
            [nums[0], nums[1], nums[2], nums[3]]
        } else {
            [nums[2], nums[3], nums[0], nums[1]]
        };
        let e = out.entry(k).or_default();
        for (x, y) in e.0.iter_mut().zip(v) {
            *x += y;
        }
        e.1 += 1;
    }
    out
}

fn aggregate(recs: &[FlowRecord]) -> HashMap<Key, [u64; 4]> {
    let mut out: HashMap<Key, [u64; 4]> = HashMap::new();
    for r in recs {
        let (k, orig_first) = key(
            ndpi_proto(r),
            (r.orig_h.to_string(), r.orig_p),
            (r.resp_h.to_string(), r.resp_p),
        );
        let (o, s) = (&r.dynamics.orig, &r.dynamics.resp);
        let v = [r.orig_pkts, o.link_bytes, r.resp_pkts, s.link_bytes];
        let v = if orig_first {
            v
        } else {
            [v[2], v[3], v[0], v[1]]
        };
        let e = out.entry(k).or_default();
        for (x, y) in e.iter_mut().zip(v) {
            *x += y;
        }
    }
    out
}

fn peer_config() -> SensorConfig {
    let mut c = SensorConfig::default().with_checksums(ChecksumMode::Ignore);
    c.reassemble = false;
    c.flow.active_timeout = 0;
    c
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn ndpi_results_agree_on_packets_and_bytes_for_98_percent_of_flows() {
    let Some(shared) = support::shared_dir("peer_agreement::ndpi") else {
        return;
    };
    let base = shared.join("data/pcaps/ndpi");
    let (mut total, mut matched) = (0usize, 0usize);
    let mut report = String::new();
    let mut per_file: BTreeMap<String, usize> = BTreeMap::new();
    for result in captures(&base.join("result")) {
        let name = result
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let pcap = base.join("pcap").join(name.trim_end_matches(".out"));
        if !pcap.exists() {
            continue;
        }
        let text =
            String::from_utf8_lossy(&std::fs::read(&result).unwrap_or_default()).into_owned();
        let want = parse_ndpi(&text);
        if want.is_empty() {
            continue;
        }
        let (recs, _) = support::run(&[pcap], peer_config());
        let got = aggregate(&support::finals(recs));
        for (k, (w, lines)) in &want {
            total += lines;
            match got.get(k) {
                Some(g) if g == w => matched += lines,
                other => {
                    *per_file.entry(name.clone()).or_default() += lines;
                    let _ = writeln!(report, "[{name}] {k:?}: ndpi {w:?} ours {other:?}");
                }
            }
        }
    }
    let pct = 100.0 * matched as f64 / total.max(1) as f64;
    let mut head = format!("ndpi agreement: {matched}/{total} flows ({pct:.2}%)\n");
    for (f, n) in &per_file {
        let _ = writeln!(head, "  {f}: {n}");
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ndpi-agreement.txt");
    let _ = std::fs::write(&out, format!("{head}\n{report}"));
    eprintln!("{head}(details: {})", out.display());
    assert!(total > 5000, "too few nDPI flows compared: {total}");
    assert!(
        pct >= 98.0,
        "only {pct:.2}% of nDPI flows agree; see {}",
        out.display()
    );
}

/// NFStream's defaults: one idle timeout of 120 s for every protocol, no TCP close or
/// DNS expiry, a new flow after 1800 s of activity.
fn nfstream_config() -> SensorConfig {
    let mut c = peer_config();
    let s = 1_000_000_000i64;
    let f = &mut c.flow;
    f.tcp_inactivity = 120 * s;
    f.tcp_handshake_inactivity = 120 * s;
    f.udp_inactivity = 120 * s;
    f.icmp_inactivity = 120 * s;
    f.other_inactivity = 120 * s;
    f.dns_session_timeout = 0;
    c
}

#[test]
fn nfstream_results_agree_on_packets_and_bytes_for_98_percent_of_flows() {
    let Some(shared) = support::shared_dir("peer_agreement::nfstream") else {
        return;
    };
    let base = shared.join("data/pcaps/nfstream");
    let (mut total, mut matched) = (0usize, 0usize);
    let mut report = String::new();
    for csv in captures(&base.join("results")) {
        let name = csv
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let pcap = base.join("pcaps").join(name.trim_end_matches(".csv"));
        if !pcap.exists() {
            continue;
        }
        // id,bidirectional_packets,bidirectional_bytes,… — flows without keys, so the
        // comparison is of the multisets of (packets, bytes).
        let mut want: HashMap<(u64, u64), usize> = HashMap::new();
        for line in std::fs::read_to_string(&csv)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let c: Vec<&str> = line.split(',').collect();
            if let (Some(p), Some(b)) = (
                c.get(1).and_then(|v| v.parse().ok()),
                c.get(2).and_then(|v| v.parse().ok()),
            ) {
                *want.entry((p, b)).or_default() += 1;
            }
        }
        let (recs, _) = support::run(&[pcap], nfstream_config());
        let mut got: HashMap<(u64, u64), usize> = HashMap::new();
        for r in support::finals(recs) {
            let p = r.orig_pkts + r.resp_pkts;
            let b = r.dynamics.orig.link_bytes + r.dynamics.resp.link_bytes;
            *got.entry((p, b)).or_default() += 1;
        }
        for (k, n) in &want {
            total += n;
            let m = (*n).min(got.get(k).copied().unwrap_or(0));
            matched += m;
            if m < *n {
                let _ = writeln!(
                    report,
                    "[{name}] nfstream flow (pkts, bytes) {k:?} ×{n}: ours ×{m}"
                );
            }
        }
    }
    let pct = 100.0 * matched as f64 / total.max(1) as f64;
    let head = format!("nfstream agreement: {matched}/{total} flows ({pct:.2}%)\n");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nfstream-agreement.txt");
    let _ = std::fs::write(&out, format!("{head}\n{report}"));
    eprintln!("{head}(details: {})", out.display());
    assert!(total > 900, "too few NFStream flows compared: {total}");
    assert!(
        pct >= 98.0,
        "only {pct:.2}% of NFStream flows agree; see {}",
        out.display()
    );
}
