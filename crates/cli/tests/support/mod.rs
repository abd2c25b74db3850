//! Helpers shared by the integration tests: finding `../shared`, running the sensor
//! over a capture in-process, and the CI policy for tests that need external data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tunnelwatch_capture::CaptureFile;
use tunnelwatch_model::{Cause, FlowRecord};
use tunnelwatch_sensor::{Sensor, SensorConfig};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The capture of a golden case directory (`tests/golden/<case>/input.*`).
pub fn golden_input(case_dir: &Path) -> PathBuf {
    std::fs::read_dir(case_dir)
        .expect("case dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("input."))
        })
        .unwrap_or_else(|| panic!("{}: no input.* capture", case_dir.display()))
}

/// `../shared` beside the checkout, or `None` (with a loud message) when it is absent.
/// Under `CI=true` its absence is a failure, never a skip.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TUNNELWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    if dir.join("data/pcaps").is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    if ci {
        panic!(
            "{test}: CI=true but the shared data directory {} is missing",
            dir.display()
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: shared captures not found at {} (set TUNNELWATCH_SHARED or check \
         out ../shared beside the repository). This test is required under CI=true. ***\n",
        dir.display()
    );
    None
}

/// Runs the sensor over one or more captures as one stream and returns the records
/// (final and interim) plus the first input error, if any.
pub fn run(paths: &[PathBuf], config: SensorConfig) -> (Vec<FlowRecord>, Option<String>) {
    let mut sensor = Sensor::new(config);
    let mut out = Vec::new();
    let mut err = None;
    for p in paths {
        let mut cap = match CaptureFile::open(p) {
            Ok(c) => c,
            Err(e) => {
                err.get_or_insert(e.to_string());
                continue;
            }
        };
        loop {
            match cap.next_packet() {
                Ok(Some(pkt)) => sensor.packet(pkt.ts, pkt.link, pkt.data, pkt.orig_len, &mut out),
                Ok(None) => break,
                Err(e) => {
                    err.get_or_insert(e.to_string());
                    break;
                }
            }
        }
    }
    sensor.finish(&mut out);
    (out, err)
}

/// Only the final records.
pub fn finals(recs: Vec<FlowRecord>) -> Vec<FlowRecord> {
    recs.into_iter()
        .filter(|r| r.cause != Cause::Status)
        .collect()
}
