//! `tunnelwatch evaluate`: detection measured against ground truth. Each scenario of a
//! truth file (the lab's `tests/lab/truth.json` format: `name`, `pcap`, `kind`
//! attack|benign, `expect` categories, `expect_rules`, `incidental_rules`) is read
//! through the sensor and the detectors, and a table says what was expected, which
//! alerts were raised, hit or miss, and the false alerts. `--benign DIR` treats every
//! capture under DIR as benign and lists its alerts by rule (how the Zeek traces are
//! checked for false alerts).
//!
//! A scenario is a hit when every expected category was raised; a benign scenario
//! fails on any medium-or-higher alert. The exit code is 1 on any miss or failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tunnelwatch_capture::CaptureFile;
use tunnelwatch_decode::LinkType;
use tunnelwatch_detect::{Config, Detection};
use tunnelwatch_flow::ChecksumMode;
use tunnelwatch_model::{Alert, FlowRecord, Severity};
use tunnelwatch_sensor::{Sensor, SensorConfig};

/// Arguments of `evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// A truth file (JSON, the lab's format).
    #[arg(value_name = "TRUTH", required_unless_present = "benign")]
    truth: Option<PathBuf>,
    /// Every capture under DIR (recursively) is benign: list the alerts raised.
    #[arg(long, value_name = "DIR", conflicts_with = "truth")]
    benign: Option<PathBuf>,
    /// Detector settings (TOML); missing means the documented defaults.
    #[arg(long, value_name = "FILE", default_value = "tunnelwatch.toml")]
    config: PathBuf,
    /// Also write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// The alerts the default pipeline raises on one capture (checksums not verified: lab
/// and public captures are often taken with offloading), and the error that cut the
/// capture short, if one did (everything before it was read, as in `read`).
pub fn alerts_of(path: &Path, config: &Config) -> Result<(Vec<Alert>, Option<String>)> {
    let mut cap = CaptureFile::open(path)?;
    let mut sc = SensorConfig::default().with_checksums(ChecksumMode::Ignore);
    crate::read::flow_settings(&mut sc.flow, config)?;
    let mut sensor = Sensor::new(sc);
    let mut records: Vec<FlowRecord> = Vec::new();
    let mut damage = None;
    loop {
        match cap.next_packet() {
            Ok(Some(p)) => {
                sensor.packet(p.ts, LinkType(p.link.0), p.data, p.orig_len, &mut records)
            }
            Ok(None) => break,
            Err(e) => {
                damage = Some(e.to_string());
                break;
            }
        }
    }
    sensor.finish(&mut records);
    let mut d = Detection::new(config.clone());
    let mut out = Vec::new();
    for r in &records {
        d.record(r, &mut out);
    }
    d.finish(&mut out);
    Ok((out, damage))
}

fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `rule:severity×n` for a set of alerts.
fn summarise(alerts: &[&Alert]) -> String {
    let mut by: BTreeMap<(String, Severity), u64> = BTreeMap::new();
    for a in alerts {
        *by.entry((a.detector.clone(), a.severity)).or_default() += 1;
    }
    if by.is_empty() {
        return "–".into();
    }
    by.iter()
        .map(|((r, s), n)| format!("{r} {s}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `evaluate`.
pub fn run(a: EvaluateArgs) -> Result<ExitCode> {
    let config = crate::read::load_config(&a.config)?;
    let (table, ok) = match (&a.truth, &a.benign) {
        (Some(t), _) => truth_table(t, &config)?,
        (None, Some(dir)) => benign_table(dir, &config)?,
        (None, None) => anyhow::bail!("give a truth file or --benign DIR"),
    };
    print!("{table}");
    if let Some(m) = &a.markdown {
        std::fs::write(m, &table).with_context(|| format!("cannot write {}", m.display()))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn truth_table(truth: &Path, config: &Config) -> Result<(String, bool)> {
    let text = std::fs::read_to_string(truth)
        .with_context(|| format!("cannot read truth file {}", truth.display()))?;
    let t: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("truth file {} is not JSON", truth.display()))?;
    let base = truth.parent().unwrap_or(Path::new("."));
    let scenarios = t["scenarios"]
        .as_array()
        .with_context(|| format!("truth file {}: no \"scenarios\" array", truth.display()))?;
    let mut out = String::from(
        "| scenario | kind | expected | alerts raised | result | false alerts |\n|---|---|---|---|---|---|\n",
    );
    let (mut misses, mut false_medium) = (0, 0);
    for s in scenarios {
        let name = s["name"].as_str().unwrap_or("?");
        let pcap = base.join(s["pcap"].as_str().unwrap_or_default());
        let benign = s["kind"].as_str() == Some("benign");
        let expect = strings(s, "expect");
        let rules: BTreeSet<String> = strings(s, "expect_rules")
            .into_iter()
            .chain(strings(s, "incidental_rules"))
            .collect();
        let (alerts, damage) = alerts_of(&pcap, config)
            .with_context(|| format!("scenario {name}: reading {}", pcap.display()))?;
        if let Some(e) = damage {
            anyhow::bail!("scenario {name}: {e}");
        }
        let raised: BTreeSet<String> = alerts.iter().map(|a| a.category.to_string()).collect();
        let missing: Vec<&String> = expect.iter().filter(|c| !raised.contains(*c)).collect();
        // False alerts: on a benign scenario anything from a rule its truth does not name
        // as incidental (a normal SSH session's `keystrokes` is such a fact); on an
        // attack, alerts of a category not expected from a rule the truth does not name.
        let unexpected: Vec<&Alert> = alerts
            .iter()
            .filter(|a| {
                !rules.contains(&a.detector)
                    && (benign || !expect.contains(&a.category.to_string()))
            })
            .collect();
        let result = if benign {
            if unexpected.iter().any(|a| a.severity >= Severity::Medium) {
                false_medium += 1;
                "FAIL (medium+ on benign)".to_string()
            } else {
                "ok".to_string()
            }
        } else if missing.is_empty() {
            "hit".to_string()
        } else {
            misses += 1;
            format!(
                "MISS ({})",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let all: Vec<&Alert> = alerts.iter().collect();
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {result} | {} |",
            if benign { "benign" } else { "attack" },
            if expect.is_empty() {
                "–".to_string()
            } else {
                expect.join(", ")
            },
            summarise(&all),
            summarise(&unexpected)
        );
    }
    let _ = writeln!(
        out,
        "\n{} scenarios, {misses} missed, {false_medium} benign scenarios with medium-or-higher alerts",
        scenarios.len()
    );
    Ok((out, misses == 0 && false_medium == 0))
}

fn captures_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            captures_under(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "pcap" | "pcapng" | "cap" | "gz"))
        {
            out.push(p);
        }
    }
    Ok(())
}

fn benign_table(dir: &Path, config: &Config) -> Result<(String, bool)> {
    let mut files = Vec::new();
    captures_under(dir, &mut files)?;
    let mut by_rule: BTreeMap<(String, Severity), (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut unreadable = 0;
    for f in &files {
        // Damaged captures are part of such corpora: what was read before the damage
        // counts, as in `read`; an unreadable one is counted.
        let alerts = match alerts_of(f, config) {
            Ok((a, _)) => a,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
        for a in alerts {
            let e = by_rule.entry((a.detector, a.severity)).or_default();
            e.0 += 1;
            e.1.insert(name.clone());
        }
    }
    let mut out = String::from("| rule | severity | alerts | captures |\n|---|---|---|---|\n");
    for ((rule, sev), (n, caps)) in &by_rule {
        let list: Vec<&String> = caps.iter().take(5).collect();
        let more = if caps.len() > 5 {
            format!(" and {} more", caps.len() - 5)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {rule} | {sev} | {n} | {}{more} |",
            list.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let total: u64 = by_rule.values().map(|v| v.0).sum();
    let _ = writeln!(
        out,
        "\n{} captures ({unreadable} unreadable), {total} alerts",
        files.len()
    );
    Ok((out, true))
}
