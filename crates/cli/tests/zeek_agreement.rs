//! Agreement with Zeek on real captures: for every Zeek btest baseline `conn.log` in
//! `../shared/data/pcaps/zeek/baselines`, run tunnelwatch over the same trace with the
//! same options and compare, per connection, the 5-tuple, packets and IP bytes per
//! direction, `conn_state` and `history`.
//!
//! Which baselines are compared, and with which options, comes from
//! `tests/zeek/btest-commands.tsv` (how each btest ran Zeek). Baselines whose test
//! changed what conn.log contains (packet filters, renamed fields, analyzers that end
//! sessions, …) are skipped with their reason; `-C` and `likely_server_ports` /
//! timeout redefinitions are applied. Every difference is written to
//! `$CARGO_TARGET_TMPDIR/zeek-agreement.txt`; `docs/COMPARISON.md` explains each class.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use tunnelwatch_flow::ChecksumMode;
use tunnelwatch_model::FlowRecord;
use tunnelwatch_sensor::SensorConfig;

/// Fields compared (when the baseline has them).
const FIELDS: [&str; 6] = [
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "conn_state",
    "history",
];

/// Substrings of `conn_affecting` that make a baseline incomparable.
const SKIP_WHEN: [(&str, &str); 12] = [
    ("filter", "the test applied a packet filter"),
    ("renames fields", "the test renamed the conn.log id fields"),
    ("netcontrol", "the test dropped packets with NetControl"),
    ("PacketAnalyzer::ROOT", "the test re-routed packet analysis"),
    (
        "disable_all",
        "the test disabled all analyzers and filtered packets",
    ),
    ("spicy", "the test loaded custom Spicy analyzers"),
    (
        "terminate_session",
        "the test terminated sessions from script",
    ),
    (
        "tcp_excessive_data",
        "the test changed Zeek's reassembly limits",
    ),
    (
        "install_pcap_filter",
        "the test changed the packet filter at run time",
    ),
    ("restricted_filter", "the test applied a packet filter"),
    (
        "zeek-cut keeping only the uid",
        "the baseline keeps only uids",
    ),
    ("log_policy", "the test filtered conn.log rows"),
];

struct Baseline {
    dir: String,
    traces: Vec<PathBuf>,
    checksums: ChecksumMode,
    extra_server_ports: Vec<(u16, bool)>,
    udp_timeout: Option<i64>,
}

/// One row of `tests/zeek/btest-commands.tsv`.
struct Command {
    dir: String,
    traces: String,
    /// Command-line flags and what the script changed, comma-joined.
    affecting: String,
    bare: bool,
    loads: Vec<String>,
    redefs: String,
}

fn parse_commands(path: &std::path::Path) -> Vec<Command> {
    let text = std::fs::read_to_string(path).expect("btest-commands.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let col = |i: usize| c.get(i).copied().unwrap_or("-").to_string();
            Command {
                dir: col(0),
                traces: col(1),
                // The options that matter: the command-line flags and what the script changed.
                affecting: format!("{},{}", col(3), col(4)),
                bare: col(6) == "T",
                loads: col(7).split(',').map(|x| x.trim().to_string()).collect(),
                redefs: col(8),
            }
        })
        .collect()
}

/// Zeek's `likely_server_ports` for a bare-mode run: the packet-protocol ports (always
/// loaded) plus those of the protocol scripts the test loaded.
fn bare_server_ports(ports_tsv: &str, loads: &[String]) -> Vec<(u16, bool)> {
    let mut out = Vec::new();
    for line in ports_tsv.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < 4 {
            continue;
        }
        let Ok(port) = c[0].parse::<u16>() else {
            continue;
        };
        let tcp = c[1] == "tcp";
        let wanted = c[3].split(';').any(|src| {
            src.contains("scripts/base/packet-protocols/")
                || loads.iter().any(|l| {
                    let dir = l.trim_end_matches("/main").trim_end_matches(".zeek");
                    !dir.is_empty() && src.contains(&format!("scripts/{dir}/"))
                })
        });
        if wanted {
            out.push((port, tcp));
        }
    }
    out
}

/// Redefinitions of protocol-analyzer limits: crafted traces then hit the limit and
/// Zeek marks the history with `X`, which says nothing about the connection itself.
const STOPS_PROCESSING: [&str; 1] = ["size_threshold"];

/// Zeek's history with its `X` marker removed: `X` records that one of Zeek's protocol
/// analyzers hit an internal limit (line length, pending commands, …) — a fact about
/// Zeek's parsers, not about the connection — so it is compared without it.
fn without_analyzer_marker(h: &str) -> String {
    let s: String = h.chars().filter(|c| *c != 'X' && *c != 'x').collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

struct Row {
    fields: BTreeMap<String, String>,
}

fn parse_conn_log(text: &str) -> Option<Vec<Row>> {
    let mut names: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#fields\t") {
            names = rest.split('\t').map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if names.is_empty() {
            // Baselines of `zeek-cut` output: the first line names the columns.
            names = line.split('\t').map(str::to_string).collect();
            continue;
        }
        let vals: Vec<&str> = line.split('\t').collect();
        let fields = names
            .iter()
            .cloned()
            .zip(vals.iter().map(|v| v.to_string()))
            .collect();
        rows.push(Row { fields });
    }
    Some(rows)
}

fn ours(r: &FlowRecord, field: &str) -> String {
    match field {
        "id.orig_h" => r.orig_h.to_string(),
        "id.orig_p" => r.orig_p.to_string(),
        "id.resp_h" => r.resp_h.to_string(),
        "id.resp_p" => r.resp_p.to_string(),
        "proto" => r.proto.clone(),
        "ip_proto" => r.ip_proto.to_string(),
        "orig_pkts" => r.orig_pkts.to_string(),
        "resp_pkts" => r.resp_pkts.to_string(),
        "orig_ip_bytes" => r.orig_ip_bytes.to_string(),
        "resp_ip_bytes" => r.resp_ip_bytes.to_string(),
        "conn_state" => r.conn_state.as_str().to_string(),
        "history" => {
            if r.history.is_empty() {
                "-".into()
            } else {
                r.history.clone()
            }
        }
        _ => String::new(),
    }
}

const KEY: [&str; 6] = [
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "ip_proto",
];

#[test]
fn zeek_baselines_agree_on_at_least_98_percent_of_connections() {
    let Some(shared) = support::shared_dir("zeek_agreement") else {
        return;
    };
    let ws = support::workspace();
    let zeek = shared.join("data/pcaps/zeek");
    let mut report = String::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut seen_inputs: HashSet<String> = HashSet::new();
    let (mut total, mut matched, mut x_marked) = (0usize, 0usize, 0usize);
    let mut class: BTreeMap<String, usize> = BTreeMap::new();

    let ports_tsv =
        std::fs::read_to_string(ws.join("tests/zeek/likely-server-ports.tsv")).expect("ports tsv");
    for cmd in parse_commands(&ws.join("tests/zeek/btest-commands.tsv")) {
        let Command {
            dir,
            traces,
            affecting,
            bare,
            loads,
            redefs,
        } = cmd;
        if let Some((_, why)) = SKIP_WHEN.iter().find(|(k, _)| affecting.contains(k)) {
            skipped.push((dir.clone(), why.to_string()));
            continue;
        }
        if STOPS_PROCESSING.iter().any(|k| redefs.contains(k)) {
            skipped.push((
                dir.clone(),
                "the test made Zeek stop analysing the connection early".into(),
            ));
            continue;
        }
        let log_path = zeek.join("baselines").join(&dir).join("conn.log");
        let Ok(text) = std::fs::read_to_string(&log_path) else {
            skipped.push((dir.clone(), "no conn.log baseline".into()));
            continue;
        };
        let mut b = Baseline {
            dir: dir.clone(),
            traces: traces
                .split(',')
                .map(|t| zeek.join("Traces").join(t.trim()))
                .collect(),
            checksums: if affecting.split([',', ' ']).any(|a| a.trim() == "-C") {
                ChecksumMode::Ignore
            } else {
                ChecksumMode::Verify
            },
            extra_server_ports: Vec::new(),
            udp_timeout: None,
        };
        for item in affecting.split(',') {
            let item = item.trim();
            if let Some(p) = item.strip_prefix("redef likely_server_ports += ") {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if let Ok(port) = port.trim().parse::<u16>() {
                    b.extra_server_ports.push((port, proto.trim() == "tcp"));
                }
            }
            if item.contains("udp_inactivity_timeout=24hrs")
                || redefs.contains("udp_inactivity_timeout = 24hrs")
            {
                b.udp_timeout = Some(24 * 3600 * 1_000_000_000);
            }
        }
        let Some(rows) = parse_conn_log(&text) else {
            continue;
        };
        let has_key = rows
            .first()
            .is_some_and(|r| KEY[..5].iter().all(|k| r.fields.contains_key(*k)));
        let compared: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| rows.first().is_some_and(|r| r.fields.contains_key(*f)))
            .collect();
        if rows.is_empty() || (compared.is_empty() && !has_key) {
            skipped.push((dir.clone(), "baseline has no comparable columns".into()));
            continue;
        }
        // The same trace, options and baseline content counted once.
        let ident = format!("{traces}|{affecting}|{bare}|{loads:?}|{text}");
        if !seen_inputs.insert(ident) {
            skipped.push((
                dir.clone(),
                "duplicate of another baseline (same trace, options and log)".into(),
            ));
            continue;
        }

        let mut config = SensorConfig::default().with_checksums(b.checksums);
        if bare {
            config.flow.likely_server_ports = Box::new([0u8; 65536]);
            for (p, tcp) in bare_server_ports(&ports_tsv, &loads) {
                config.flow.add_server_port(p, tcp);
            }
        }
        for (p, tcp) in &b.extra_server_ports {
            config.flow.add_server_port(*p, *tcp);
        }
        if let Some(t) = b.udp_timeout {
            config.flow.udp_inactivity = t;
        }
        config.flow.active_timeout = 0;
        let (recs, err) = support::run(&b.traces, config);
        let mut mine = support::finals(recs);
        if let Some(e) = err {
            let _ = writeln!(report, "[{}] input error: {e}", b.dir);
        }

        for row in &rows {
            total += 1;
            let marker = row
                .fields
                .get("history")
                .is_some_and(|h| h.contains(['X', 'x']));
            if marker {
                x_marked += 1;
            }
            let want = |f: &str| {
                let v = row.fields.get(f).cloned().unwrap_or_default();
                if f == "history" {
                    without_analyzer_marker(&v)
                } else {
                    v
                }
            };
            let idx = if has_key {
                let key_fields: Vec<&str> = KEY
                    .iter()
                    .copied()
                    .filter(|k| row.fields.contains_key(*k))
                    .collect();
                let cands: Vec<usize> = (0..mine.len())
                    .filter(|&i| key_fields.iter().all(|k| ours(&mine[i], k) == want(k)))
                    .collect();
                cands
                    .iter()
                    .copied()
                    .find(|&i| compared.iter().all(|f| ours(&mine[i], f) == want(f)))
                    .or_else(|| cands.first().copied())
            } else {
                (0..mine.len())
                    .find(|&i| compared.iter().all(|f| ours(&mine[i], f) == want(f)))
                    .or(if mine.len() == 1 && rows.len() == 1 {
                        Some(0)
                    } else {
                        None
                    })
            };
            let Some(i) = idx else {
                let reversed = has_key
                    && mine.iter().any(|r| {
                        ours(r, "id.orig_h") == want("id.resp_h")
                            && ours(r, "id.orig_p") == want("id.resp_p")
                            && ours(r, "id.resp_h") == want("id.orig_h")
                    });
                let c = if reversed {
                    "direction differs"
                } else {
                    "connection missing"
                };
                *class.entry(c.into()).or_default() += 1;
                let _ = writeln!(
                    report,
                    "[{}] {c}: {} {}:{} -> {}:{} zeek {}",
                    b.dir,
                    want("proto"),
                    want("id.orig_h"),
                    want("id.orig_p"),
                    want("id.resp_h"),
                    want("id.resp_p"),
                    compared
                        .iter()
                        .map(|f| format!("{f}={}", want(f)))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                continue;
            };
            let r = mine.remove(i);
            let diffs: Vec<String> = compared
                .iter()
                .filter(|f| ours(&r, f) != want(f))
                .map(|f| format!("{f}: zeek {} ours {}", want(f), ours(&r, f)))
                .collect();
            if diffs.is_empty() {
                matched += 1;
            } else {
                for f in compared.iter().filter(|f| ours(&r, f) != want(f)) {
                    *class.entry(format!("{f} differs")).or_default() += 1;
                }
                let _ = writeln!(
                    report,
                    "[{}] {} {}:{} -> {}:{}: {}",
                    b.dir,
                    r.proto,
                    r.orig_h,
                    r.orig_p,
                    r.resp_h,
                    r.resp_p,
                    diffs.join("; ")
                );
            }
        }
    }

    let pct = 100.0 * matched as f64 / total.max(1) as f64;
    let mut head = format!(
        "zeek agreement: {matched}/{total} connections match exactly ({pct:.2}%); \
         {x_marked} baseline histories carried Zeek's analyzer-limit marker X, compared without it\n"
    );
    for (c, n) in &class {
        let _ = writeln!(head, "  {c}: {n}");
    }
    let _ = writeln!(head, "skipped baselines: {}", skipped.len());
    for (d, why) in &skipped {
        let _ = writeln!(head, "  {d}: {why}");
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zeek-agreement.txt");
    let _ = std::fs::write(&out, format!("{head}\n{report}"));
    eprintln!("{head}(details: {})", out.display());
    assert!(
        total > 500,
        "too few baseline connections compared: {total}"
    );
    assert!(
        pct >= 98.0,
        "only {pct:.2}% of Zeek connections matched; see {}",
        out.display()
    );
}
