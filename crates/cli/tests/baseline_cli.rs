//! `tunnelwatch learn` and the baseline through `read`: profiles go to the store and
//! come back; profiles learnt with another slot length are refused with a clear
//! message until `learn --reset`; static limits need no learning.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env_remove("TUNNELWATCH_NO_STORE")
        .env_remove("TUNNELWATCH_DB")
        .env_remove("TUNNELWATCH_CONFIG")
        .args(args)
        .output()
        .expect("run tunnelwatch")
}

/// A file in a directory of this test's own (tests run in parallel in one process).
fn tmp(test: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tw-baseline-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn learnt_profiles_are_stored_and_other_slot_lengths_refused_until_reset() {
    let db = tmp("learn", "learn.db");
    let _ = std::fs::remove_file(&db);
    let cap = support::workspace().join("tests/lab/captures/benign_web.pcap");
    let o = tw(&["learn", s(&cap), "--db", s(&db)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(o.stdout.is_empty(), "learn prints no flows");
    assert!(
        err.contains("baseline: ") && err.contains(" profiles in "),
        "{err}"
    );
    let n: i64 = tunnelwatch_store::Store::open(&db, tunnelwatch_store::Mode::ReadOnly)
        .unwrap()
        .connection()
        .query_row("SELECT count(*) FROM profiles", [], |r| r.get(0))
        .unwrap();
    assert!(n > 1, "{n} profile rows");
    let (finals, interim, _, _) =
        tunnelwatch_store::Store::open(&db, tunnelwatch_store::Mode::ReadOnly)
            .unwrap()
            .counts()
            .unwrap();
    assert_eq!(finals + interim, 0, "learning stores no flows");

    // A configuration with 15-minute slots cannot use them.
    let conf = tmp("learn", "quarter.toml");
    std::fs::write(&conf, "[baseline]\nslot_seconds = 900\n").unwrap();
    let o = tw(&["read", s(&cap), "--db", s(&db), "--config", s(&conf)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("learnt with 3600-second slots") && err.contains("learn --reset"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // Rebuilt with --reset.
    let o = tw(&[
        "learn",
        "--reset",
        s(&cap),
        "--db",
        s(&db),
        "--config",
        s(&conf),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stored profiles forgotten"), "{err}");
    let o = tw(&[
        "read",
        s(&cap),
        "--db",
        s(&db),
        "--config",
        s(&conf),
        "--flows",
        "-",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(db.parent().unwrap()).unwrap();
}

#[test]
fn static_limits_raise_without_learning() {
    let conf = tmp("static", "static.toml");
    std::fs::write(
        &conf,
        "[[baseline.static]]\nclient = \"10.77.0.0/16\"\nport = 80\nconnections = 3\nnote = \"lab policy\"\n",
    )
    .unwrap();
    let cap = support::workspace().join("tests/lab/captures/benign_web.pcap");
    let o = tw(&[
        "read",
        s(&cap),
        "--no-store",
        "--config",
        s(&conf),
        "--alerts",
        "-",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let a: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &serde_json::Value| a["detector"] == "baseline_static")
        .collect();
    assert_eq!(a.len(), 1, "{out}");
    assert_eq!(a[0]["evidence"]["limit"], 3.0);
    assert!(a[0]["message"].as_str().unwrap().contains("lab policy"));
    std::fs::remove_dir_all(conf.parent().unwrap()).unwrap();
}

#[test]
fn profiles_are_learnt_from_a_window_of_stored_flows() {
    let db = tmp("window", "window.db");
    let _ = std::fs::remove_file(&db);
    let cap = support::workspace().join("tests/lab/captures/benign_web.pcap");
    let o = tw(&["read", s(&cap), "--db", s(&db), "--flows", "/dev/null"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = |db: &Path| -> i64 {
        tunnelwatch_store::Store::open(db, tunnelwatch_store::Mode::ReadOnly)
            .unwrap()
            .connection()
            .query_row("SELECT count(*) FROM profiles", [], |r| r.get(0))
            .unwrap()
    };
    // `read` learnt a little already (slowly); `baseline` learns the window again.
    let o = tw(&[
        "baseline",
        "--reset",
        "--db",
        s(&db),
        "--until",
        "2000-01-01",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("0 stored flows learnt"), "{err}");
    assert_eq!(rows(&db), 0, "nothing in the window, nothing stored");
    let o = tw(&["baseline", "--db", s(&db), "port", "80"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains(" 0 stored flows learnt"), "{err}");
    assert!(rows(&db) > 1);
    let o = tw(&["baseline", "--db", s(&db), "port", "eighty"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in filter"));
    std::fs::remove_dir_all(db.parent().unwrap()).unwrap();
}
