//! Every capture in `../shared/data/pcaps` (about 1,750 files from Zeek, nDPI, NFStream,
//! suricata-verify, …, many of them fuzzer finds and deliberately broken) is read
//! without a panic, crash or hang. Inputs that are damaged must fail with an error that
//! names the byte offset, after the packets before the damage were processed.

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tunnelwatch_sensor::SensorConfig;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if is_capture(&p) {
            out.push(p);
        }
    }
}

/// A capture by its first bytes (pcap, pcapng or gzip), whatever its name.
fn is_capture(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    if std::io::Read::read_exact(&mut f, &mut magic).is_err() {
        return false;
    }
    matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
            | [0x1f, 0x8b, _, _]
    )
}

#[test]
fn every_shared_capture_reads_without_panic_or_hang() {
    let Some(shared) = support::shared_dir("all_captures") else {
        return;
    };
    let mut files = Vec::new();
    walk(&shared.join("data/pcaps"), &mut files);
    assert!(
        files.len() > 1500,
        "expected the ~1,750 shared captures, found {}",
        files.len()
    );

    let (mut records, mut errors) = (0usize, Vec::new());
    for path in &files {
        // A hang is a failure: each capture gets its own thread and a generous bound.
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let handle = std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| support::run(&[p], SensorConfig::default()));
            let _ = tx.send(result.map(|(recs, err)| (recs.len(), err)));
        });
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Ok((n, err))) => {
                records += n;
                if let Some(e) = err {
                    errors.push(format!("{}: {e}", path.display()));
                }
            }
            Ok(Err(_)) => panic!("panic while reading {}", path.display()),
            Err(_) => panic!("reading {} did not finish in 300 s", path.display()),
        }
        let _ = handle.join();
    }
    eprintln!(
        "read {} captures: {records} flow records, {} inputs with damage reported",
        files.len(),
        errors.len()
    );
    for e in &errors {
        eprintln!("  {e}");
        assert!(
            e.contains("byte offset") || e.contains("not a pcap") || e.contains("empty file"),
            "an input error must say where the damage is: {e}"
        );
    }
    assert!(
        records > 10_000,
        "too few records over all captures: {records}"
    );
}
