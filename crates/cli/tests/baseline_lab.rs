//! The baseline on the tunnel lab: a week of benign learning, then the tunnels. The
//! lab's benign captures (and the benign look-alike `ssh_interactive`) are replayed
//! every day at 10:00 UTC — the same hosts the tunnels use — as the learning period;
//! then each day the benign captures come again with one tunnel scenario in the same
//! hour. The baseline methods must flag tunnel flows and never a benign one, and a
//! benign day after them all must be quiet. The numbers go into docs/DETECTION.md.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tunnelwatch_detect::baseline::Mode;
use tunnelwatch_detect::{Config, Detection};
use tunnelwatch_model::{Alert, FlowRecord, Timestamp};
use tunnelwatch_sensor::SensorConfig;

const DAY: i64 = 86_400 * 1_000_000_000;
/// 2026-11-02 10:00 UTC.
const TEN: i64 = (1_793_577_600 + 36_000) * 1_000_000_000;

struct Scenario {
    name: String,
    benign: bool,
    records: Vec<FlowRecord>,
}

fn scenarios() -> Vec<Scenario> {
    let dir = support::workspace().join("tests/lab/tunnels");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    truth["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pcap = dir.join(s["pcap"].as_str().unwrap());
            let (recs, err) = support::run(&[PathBuf::from(&pcap)], SensorConfig::default());
            assert!(err.is_none(), "{}: {err:?}", pcap.display());
            Scenario {
                name: s["name"].as_str().unwrap().to_string(),
                benign: s["expect"].as_array().unwrap().is_empty(),
                records: support::finals(recs),
            }
        })
        .collect()
}

/// The scenarios' records placed one after another from 10:00 on `day` (each starts
/// where the one before ended, plus a minute), with per-day uids.
fn day(scenarios: &[&Scenario], day: i64) -> Vec<(String, FlowRecord)> {
    let mut at = TEN + day * DAY;
    let mut out = Vec::new();
    for s in scenarios {
        let start = s.records.iter().map(|r| r.ts).min().unwrap();
        let end = s.records.iter().map(|r| r.last_ts).max().unwrap();
        let shift = at - start.as_nanos();
        for r in &s.records {
            let mut r = r.clone();
            r.ts = Timestamp(r.ts.as_nanos() + shift);
            r.last_ts = Timestamp(r.last_ts.as_nanos() + shift);
            r.uid = format!("{}-d{day}", r.uid);
            out.push((s.name.clone(), r));
        }
        at += end.nanos_since(start) + 60_000_000_000;
    }
    out.sort_by_key(|(_, r)| r.last_ts);
    out
}

/// The scenario replayed back to back (5 s apart) for `minutes`.
fn sustain(s: &Scenario, minutes: i64) -> Scenario {
    let start = s.records.iter().map(|r| r.ts).min().unwrap();
    let end = s.records.iter().map(|r| r.last_ts).max().unwrap();
    let period = end.nanos_since(start) + 5_000_000_000;
    let mut records = Vec::new();
    let mut k = 0;
    while k * period < minutes * 60_000_000_000 {
        for r in &s.records {
            let mut r = r.clone();
            r.ts = Timestamp(r.ts.as_nanos() + k * period);
            r.last_ts = Timestamp(r.last_ts.as_nanos() + k * period);
            r.uid = format!("{}-r{k}", r.uid);
            records.push(r);
        }
        k += 1;
    }
    Scenario {
        name: format!("{} (sustained {minutes} min)", s.name),
        benign: false,
        records,
    }
}

fn baseline_only() -> Config {
    let mut c = Config::default();
    c.rules.disable = tunnelwatch_detect::RULES
        .iter()
        .map(|(r, _)| r.to_string())
        .filter(|r| !r.starts_with("baseline_"))
        .collect();
    c
}

fn feed(d: &mut Detection, recs: &[(String, FlowRecord)], out: &mut Vec<Alert>) {
    for (_, r) in recs {
        d.record(r, out);
    }
}

#[test]
fn a_benign_week_then_the_tunnels_flags_tunnels_and_not_benign_traffic() {
    let all = scenarios();
    let benign: Vec<&Scenario> = all.iter().filter(|s| s.benign).collect();
    // The lab's tunnels last seconds and carry kilobytes; a tunnel in use runs for
    // the hour. Three of them kept up for 50 minutes (the capture replayed back to
    // back) as well as each as captured.
    let sustained: Vec<Scenario> = ["dns_tunnel_iodine", "icmp_tunnel_ptunnel", "httptunnel_ssh"]
        .iter()
        .map(|n| sustain(all.iter().find(|s| s.name == *n).unwrap(), 50))
        .collect();
    let tunnels: Vec<&Scenario> = all
        .iter()
        .filter(|s| !s.benign)
        .chain(sustained.iter())
        .collect();
    assert!(benign.len() >= 8 && tunnels.len() >= 18);
    let mut d = Detection::new(baseline_only());
    let mut alerts = Vec::new();
    d.baseline().set_mode(Mode::Learn);
    for n in 0..7 {
        feed(&mut d, &day(&benign, n), &mut alerts);
    }
    assert!(alerts.is_empty(), "learning raises nothing");
    d.baseline().set_mode(Mode::Detect);
    // Then one tunnel scenario a day, in the same hour as the benign routine (an
    // hour that alarms for a key is not learnt, so each day meets a clean profile).
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (n, t) in tunnels.iter().enumerate() {
        let mut mixed: Vec<&Scenario> = benign.clone();
        mixed.push(t);
        let recs = day(&mixed, 7 + n as i64);
        owner.extend(recs.iter().map(|(s, r)| (r.uid.clone(), s.clone())));
        feed(&mut d, &recs, &mut alerts);
    }
    // A benign day after all that.
    let quiet_from = alerts.len();
    feed(&mut d, &day(&benign, 7 + tunnels.len() as i64), &mut alerts);
    let mut end = Vec::new();
    d.finish(&mut end);
    alerts.extend(end);

    let benign_names: BTreeSet<&str> = benign.iter().map(|s| s.name.as_str()).collect();
    let mut flagged: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &alerts[..quiet_from] {
        for uid in &a.uids {
            let s = &owner[uid];
            assert!(
                !benign_names.contains(s.as_str()),
                "a baseline alert on benign traffic ({s}): {a:#?}"
            );
            flagged
                .entry(s.clone())
                .or_default()
                .insert(a.detector.clone());
        }
    }
    assert!(
        alerts[quiet_from..].is_empty(),
        "the benign day after: {:#?}",
        &alerts[quiet_from..]
    );
    eprintln!(
        "baseline on the tunnel lab: {} of {} tunnel scenarios flagged, 0 of {} benign: {flagged:?}",
        flagged.len(),
        tunnels.len(),
        benign.len()
    );
    // What volume and connection counts can show: tunnels kept up for the hour, the
    // beacons' many connections, the upload. The lab's tunnels as captured (seconds,
    // kilobytes) are below the floors: they are the other detectors' work.
    for s in [
        "dns_tunnel_iodine (sustained 50 min)",
        "icmp_tunnel_ptunnel (sustained 50 min)",
        "httptunnel_ssh (sustained 50 min)",
        "beacon",
        "repeated_fetch",
        "upload_post",
    ] {
        assert!(flagged.contains_key(s), "{s} not flagged: {flagged:?}");
    }
}
