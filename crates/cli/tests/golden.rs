//! Golden cases: `tests/golden/<case>/` holds a small capture (`input.*`, provenance in
//! the case's README), optional `options` (one `key=value` per line: `checksums=ignore`,
//! `reassemble=false`), the expected `flows.jsonl`, and for damaged inputs the
//! expected `error.txt`. Output must match byte for byte.
//!
//! `UPDATE_GOLDEN=1 cargo test -p tunnelwatch --test golden` rewrites the expected files;
//! review the diff before committing.

mod support;

use std::path::{Path, PathBuf};

use tunnelwatch_flow::ChecksumMode;
use tunnelwatch_sensor::SensorConfig;

fn config(dir: &Path) -> SensorConfig {
    let mut c = SensorConfig::default();
    let text = std::fs::read_to_string(dir.join("options")).unwrap_or_default();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("checksums", "ignore")) => c = c.with_checksums(ChecksumMode::Ignore),
            Some(("reassemble", "false")) => c.reassemble = false,
            _ => panic!("{}: unknown option line {line:?}", dir.display()),
        }
    }
    c
}

/// First differing line, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n  expected: {w}\n  actual:   {g}", i + 1);
        }
    }
    format!(
        "line counts differ: expected {}, actual {}",
        want.lines().count(),
        got.lines().count()
    )
}

#[test]
fn golden_cases_match_expected_flows() {
    let root = support::workspace().join("tests/golden");
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let input = support::golden_input(dir);
        let (records, err) = support::run(std::slice::from_ref(&input), config(dir));
        let mut got = String::new();
        for r in &records {
            got.push_str(&serde_json::to_string(r).expect("record serialises"));
            got.push('\n');
        }
        let err = err.map(|e| e.replace(&input.display().to_string(), "<input>") + "\n");
        if update {
            std::fs::write(dir.join("flows.jsonl"), &got).expect("write flows.jsonl");
            match &err {
                Some(e) => std::fs::write(dir.join("error.txt"), e).expect("write error.txt"),
                None => {
                    let _ = std::fs::remove_file(dir.join("error.txt"));
                }
            }
            continue;
        }
        let want = std::fs::read_to_string(dir.join("flows.jsonl")).unwrap_or_default();
        if want != got {
            failures.push(format!(
                "{name}: flows.jsonl differs at {}",
                first_difference(&want, &got)
            ));
        }
        let want_err = std::fs::read_to_string(dir.join("error.txt")).ok();
        if want_err != err {
            failures.push(format!("{name}: error expected {want_err:?}, got {err:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (UPDATE_GOLDEN=1 rewrites after review):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_derived_pcap_variants_equal_the_original() {
    // Nanosecond, big-endian and gzip copies of one trace must give identical flows.
    let root = support::workspace().join("tests/golden");
    let base = std::fs::read_to_string(root.join("http-get/flows.jsonl")).expect("http-get");
    for variant in ["pcap-nanoseconds", "pcap-big-endian", "pcap-gzip"] {
        let v = std::fs::read_to_string(root.join(variant).join("flows.jsonl")).expect(variant);
        assert_eq!(v, base, "{variant} differs from http-get");
    }
}
