//! The store as users meet it through the command line: `read` writes it (idempotently,
//! durably under SIGKILL), `flows` / `views` / `alerts` / `export` read it, and bad input
//! (filters, newer schema, corrupt file, lock held by another process) gives a one-line
//! error, a non-zero exit and no change to the store.

mod support;

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tunnelwatch_store::{Alert, Category, Mode, Severity, Store};

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env_remove("TUNNELWATCH_NO_STORE")
        .env_remove("TUNNELWATCH_DB")
        .args(args)
        .output()
        .expect("run tunnelwatch")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn demo() -> String {
    support::workspace()
        .join("examples/demo.pcap")
        .display()
        .to_string()
}

/// A fresh path for a store (its WAL and shared-memory files removed too).
fn db(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn scalar(store: &Store, sql: &str) -> i64 {
    store.connection().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Final flows and the connection totals of each rollup table, which the same
/// transactions maintain: they must agree after anything.
fn consistent_finals(store: &Store) -> i64 {
    let (finals, _, _, _) = store.counts().unwrap();
    let finals = finals as i64;
    assert_eq!(
        store.rollup_conns().unwrap(),
        [finals; 4],
        "rollups (pair, client, server, minute) disagree with the stored flows"
    );
    let q = tunnelwatch_store::query::FlowQuery::default();
    let mut uids = std::collections::HashSet::new();
    let mut all = 0;
    store
        .flows(&q, |r| {
            all += 1;
            uids.insert(r.uid);
            true
        })
        .unwrap();
    assert_eq!(all, uids.len(), "duplicate uid");
    finals
}

/// Stored flows, final and interim.
const STORED: &str = "SELECT (SELECT coalesce(sum(records), 0) FROM flow_blocks)
    + (SELECT count(*) FROM flows_interim)";

fn jsonl(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn read_then_flows_json_gives_back_the_records_of_read_flows() {
    let p = db("roundtrip.db");
    let out = db("roundtrip.jsonl");
    let r = tw(&[
        "read",
        &demo(),
        "--db",
        s(&p),
        "--flows",
        s(&out),
        "--no-progress",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let mut written: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let f = tw(&["flows", "--db", s(&p), "--format", "json"]);
    assert!(f.status.success(), "{}", stderr(&f));
    let mut stored: Vec<String> = String::from_utf8_lossy(&f.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(written.len() > 50);
    written.sort();
    stored.sort();
    assert_eq!(stored, written, "same records, byte for byte");
    // A filter returns exactly the matching records.
    let tcp = written
        .iter()
        .filter(|l| l.contains("\"proto\":\"tcp\""))
        .count();
    let f = tw(&["flows", "--db", s(&p), "--format", "json", "proto", "tcp"]);
    assert_eq!(jsonl(&f).len(), tcp);
    let host = "192.168.2.16";
    let want = written
        .iter()
        .filter(|l| {
            l.contains(&format!("\"orig_h\":\"{host}\""))
                || l.contains(&format!("\"resp_h\":\"{host}\""))
        })
        .count();
    let f = tw(&["flows", "--db", s(&p), "--format", "json", "host", host]);
    assert_eq!(jsonl(&f).len(), want);
    assert!(want > 0);
}

#[test]
fn rereading_a_capture_adds_nothing_and_another_capture_adds_its_flows() {
    let p = db("idem.db");
    let r1 = tw(&["read", &demo(), "--db", s(&p), "--flows", "/dev/null"]);
    assert!(r1.status.success(), "{}", stderr(&r1));
    let v1 = tw(&["views", "clients", "--db", s(&p), "--format", "json"]);
    let (n1, caps1) = {
        let st = Store::open(&p, Mode::ReadOnly).unwrap();
        (
            consistent_finals(&st),
            scalar(&st, "SELECT count(*) FROM captures"),
        )
    };
    assert!(n1 > 0);
    assert_eq!(caps1, 1);
    let r2 = tw(&["read", &demo(), "--db", s(&p), "--flows", "/dev/null"]);
    assert!(r2.status.success(), "{}", stderr(&r2));
    assert!(
        stderr(&r2).contains(&format!("0 records written, {n1} already stored")),
        "{}",
        stderr(&r2)
    );
    let v2 = tw(&["views", "clients", "--db", s(&p), "--format", "json"]);
    assert_eq!(v1.stdout, v2.stdout, "views unchanged by the re-read");
    // A copy of the capture elsewhere is the same capture.
    let copy = db("demo-copy.pcap");
    std::fs::copy(demo(), &copy).unwrap();
    let r3 = tw(&["read", s(&copy), "--db", s(&p), "--flows", "/dev/null"]);
    assert!(r3.status.success(), "{}", stderr(&r3));
    // Another capture is added beside it.
    let other = support::golden_input(&support::workspace().join("tests/golden/http-get"));
    let r4 = tw(&["read", s(&other), "--db", s(&p), "--flows", "-"]);
    assert!(r4.status.success(), "{}", stderr(&r4));
    let other_n = jsonl(&r4).len() as i64;
    let st = Store::open(&p, Mode::ReadOnly).unwrap();
    assert_eq!(consistent_finals(&st), n1 + other_n);
    assert_eq!(scalar(&st, "SELECT count(*) FROM captures"), 2);
    assert_eq!(
        scalar(&st, "SELECT count(*) FROM captures WHERE complete = 1"),
        2
    );
}

#[test]
fn no_store_writes_nothing() {
    let p = db("nostore.db");
    let r = tw(&[
        "read",
        &demo(),
        "--db",
        s(&p),
        "--no-store",
        "--flows",
        "/dev/null",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(!p.exists());
}

/// A capture of `n` one-packet UDP flows, 1 ms apart: after the 1-minute UDP timeout
/// the sensor ends one flow per packet, so records reach the store all along the run.
fn many_flows_capture(path: &Path, n: u32) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = BufWriter::new(f);
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&h).unwrap();
    let mut frame = Vec::with_capacity(64);
    for i in 0..n {
        frame.clear();
        let src = [10, 50, (i >> 8) as u8, i as u8];
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, [10, 60, 0, (i % 7) as u8 + 1], 64)
            .udp(10_000 + (i >> 16) as u16, 53)
            .write(&mut frame, b"abcd")
            .unwrap();
        let t = 1_700_000_000_000u64 + u64::from(i); // ms
        w.write_all(&((t / 1000) as u32).to_le_bytes()).unwrap();
        w.write_all(&(((t % 1000) * 1000) as u32).to_le_bytes())
            .unwrap();
        w.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
        w.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
        w.write_all(&frame).unwrap();
    }
    w.flush().unwrap();
}

fn committed(p: &Path) -> Option<i64> {
    let st = Store::open(p, Mode::ReadOnly).ok()?;
    st.connection().query_row(STORED, [], |r| r.get(0)).ok()
}

#[test]
fn sigkill_during_read_keeps_whole_batches_and_a_rerun_completes_without_duplicates() {
    let cap = db("many.pcap");
    let n = 600_000;
    many_flows_capture(&cap, n);
    let p = db("killed.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env_remove("TUNNELWATCH_NO_STORE")
        .args([
            "read",
            s(&cap),
            "--db",
            s(&p),
            "--flows",
            "/dev/null",
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some batches are committed, then kill in the middle of the run.
    let mut seen = 0;
    for _ in 0..2000 {
        if let Some(c) = committed(&p) {
            if c > 0 {
                seen = c;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(seen > 0, "no batch was ever committed");
    assert!(
        !finished_early,
        "read finished before it could be killed; make the capture bigger"
    );
    let (after_kill, complete) = {
        let st = Store::open(&p, Mode::ReadOnly).expect("the killed store opens");
        st.integrity_check().unwrap();
        (
            consistent_finals(&st),
            scalar(&st, "SELECT complete FROM captures"),
        )
    };
    assert!(after_kill >= seen, "committed batches were lost");
    assert!(after_kill < i64::from(n), "the kill came after the end");
    assert_eq!(complete, 0);
    // The rerun completes, adds exactly the missing flows and no duplicate.
    let r = tw(&[
        "read",
        s(&cap),
        "--db",
        s(&p),
        "--flows",
        "/dev/null",
        "--no-progress",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        stderr(&r).contains(&format!(
            "{} records written, {after_kill} already stored",
            i64::from(n) - after_kill
        )),
        "{}",
        stderr(&r)
    );
    let st = Store::open(&p, Mode::ReadOnly).unwrap();
    assert_eq!(consistent_finals(&st), i64::from(n));
    assert_eq!(scalar(&st, STORED), i64::from(n));
    assert_eq!(scalar(&st, "SELECT complete FROM captures"), 1);
}

fn file_state(p: &Path) -> (Vec<u8>, u64) {
    let wal = std::fs::metadata(format!("{}-wal", p.display())).map_or(0, |m| m.len());
    (std::fs::read(p).unwrap(), wal)
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {e}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {e}");
    }
}

fn stored_demo(name: &str) -> PathBuf {
    let p = db(name);
    let r = tw(&["read", &demo(), "--db", s(&p), "--flows", "/dev/null"]);
    assert!(r.status.success(), "{}", stderr(&r));
    p
}

#[test]
fn filter_syntax_error_points_at_the_token_and_changes_nothing() {
    let p = stored_demo("badfilter.db");
    let before = file_state(&p);
    let o = tw(&[
        "flows",
        "--db",
        s(&p),
        "host",
        "10.0.0.1",
        "and",
        "(port",
        "80",
    ]);
    assert_one_line_error(&o, &["column 27", "end of filter", "expected ')'"]);
    let o = tw(&["flows", "--db", s(&p), "bytes >> 3"]);
    assert_one_line_error(&o, &["column 8", "'>'"]);
    assert_eq!(file_state(&p), before);
    assert!(o.stdout.is_empty());
}

#[test]
fn unknown_field_is_named_with_its_column() {
    let p = stored_demo("unknownfield.db");
    let before = file_state(&p);
    let o = tw(&["flows", "--db", s(&p), "proto tcp and hots 10.0.0.1"]);
    assert_one_line_error(&o, &["column 15", "'hots'", "unknown field"]);
    let csv = db("unknown.csv");
    let o = tw(&[
        "export",
        "--db",
        s(&p),
        "--format",
        "csv",
        "-o",
        s(&csv),
        "hots 1",
    ]);
    assert_one_line_error(&o, &["column 1", "'hots'"]);
    assert!(!csv.exists(), "no export file for a bad filter");
    assert_eq!(file_state(&p), before);
}

#[test]
fn store_from_a_newer_schema_is_refused_untouched() {
    let p = stored_demo("newer.db");
    {
        let st = Store::open(&p, Mode::ReadWrite).unwrap();
        st.connection()
            .pragma_update(None, "user_version", 99)
            .unwrap();
    }
    let before = file_state(&p);
    let out = db("newer.jsonl");
    let o = tw(&["read", &demo(), "--db", s(&p), "--flows", s(&out)]);
    assert_one_line_error(&o, &["newer.db", "schema version 99 is newer", "version 3"]);
    assert!(!out.exists(), "read stopped before creating outputs");
    let o = tw(&["views", "clients", "--db", s(&p)]);
    assert_one_line_error(&o, &["schema version 99"]);
    assert_eq!(file_state(&p), before);
}

#[test]
fn corrupt_store_file_is_refused_untouched() {
    let p = db("corrupt.db");
    let junk: Vec<u8> = (0..16384u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&p, &junk).unwrap();
    for args in [
        vec!["read", demo().leak(), "--flows", "/dev/null"],
        vec!["views", "servers"],
        vec!["flows", "port", "80"],
        vec!["alerts"],
    ] {
        let mut a = args.clone();
        a.extend(["--db", s(&p)]);
        let o = tw(&a);
        assert_one_line_error(&o, &["corrupt.db", "not a usable tunnelwatch store"]);
    }
    assert_eq!(std::fs::read(&p).unwrap(), junk);
    // An SQLite file of another program is not migrated either.
    let other = db("other-app.db");
    {
        let c = tunnelwatch_store_sqlite(&other);
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = file_state(&other);
    let o = tw(&["read", &demo(), "--db", s(&other), "--flows", "/dev/null"]);
    assert_one_line_error(&o, &["another program"]);
    assert_eq!(file_state(&other), before);
}

/// A plain SQLite connection (through the store's re-exported driver).
fn tunnelwatch_store_sqlite(p: &Path) -> tunnelwatch_store::sqlite::Connection {
    tunnelwatch_store::sqlite::Connection::open(p).unwrap()
}

#[test]
fn store_locked_by_another_process_is_reported_and_nothing_is_written() {
    let p = stored_demo("locked.db");
    let holder = tunnelwatch_store_sqlite(&p);
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let before = scalar_conn(&holder, STORED);
    let out = db("locked.jsonl");
    let other = support::golden_input(&support::workspace().join("tests/golden/http-get"));
    let o = tw(&["read", s(&other), "--db", s(&p), "--flows", s(&out)]);
    assert_one_line_error(&o, &["locked.db", "locked by another process"]);
    assert!(!out.exists());
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(scalar_conn(&holder, STORED), before);
    assert_eq!(scalar_conn(&holder, "SELECT count(*) FROM captures"), 1);
}

fn scalar_conn(c: &tunnelwatch_store::sqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn alerts_inserted_through_the_api_are_listed_and_filtered() {
    let p = stored_demo("alerts.db");
    let mk = |sev, det: &str, orig: &str, ts: f64| Alert {
        ts: tunnelwatch_model::Timestamp::from_secs_f64(ts),
        first_ts: tunnelwatch_model::Timestamp::from_secs_f64(ts - 60.0),
        last_ts: tunnelwatch_model::Timestamp::from_secs_f64(ts),
        uids: vec![format!("C{det}")],
        community_id: None,
        orig_h: Some(orig.parse().unwrap()),
        resp_h: Some("10.1.2.2".parse().unwrap()),
        detector: det.into(),
        category: Category::Tunnel,
        severity: sev,
        score: 0.9,
        message: format!("{det} fired"),
        evidence: serde_json::json!({"uptime_s": 600, "threshold_s": 300})
            .as_object()
            .unwrap()
            .clone(),
    };
    {
        let mut st = Store::open(&p, Mode::ReadWrite).unwrap();
        let n = st
            .insert_alerts(
                None,
                &[
                    mk(Severity::Low, "beacon", "10.1.1.9", 100.0),
                    mk(Severity::Medium, "long_connection", "10.1.1.9", 200.0),
                    mk(Severity::High, "http_tunnel", "10.1.1.99", 300.0),
                ],
            )
            .unwrap();
        assert_eq!(n, 3);
    }
    let o = tw(&[
        "alerts",
        "--db",
        s(&p),
        "--format",
        "json",
        "--min-severity",
        "medium",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dets: Vec<String> = jsonl(&o)
        .iter()
        .map(|v| v["detector"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dets, ["long_connection", "http_tunnel"]);
    let o = tw(&[
        "alerts",
        "--db",
        s(&p),
        "--format",
        "json",
        "src host 10.1.1.9",
    ]);
    let got = jsonl(&o);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["evidence"]["threshold_s"], 300);
    let o = tw(&["alerts", "--db", s(&p), "port 80"]);
    assert_one_line_error(&o, &["'port'", "does not apply to alerts"]);
}

#[test]
fn export_csv_has_a_header_and_the_filtered_rows() {
    let p = stored_demo("export.db");
    let csv = db("export.csv");
    let o = tw(&[
        "export",
        "--db",
        s(&p),
        "--format",
        "csv",
        "-o",
        s(&csv),
        "proto",
        "udp",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("uid,community_id,ts,"));
    let rows: Vec<&str> = lines.collect();
    let f = tw(&["flows", "--db", s(&p), "--format", "json", "proto udp"]);
    let recs = jsonl(&f);
    assert_eq!(rows.len(), recs.len());
    let uids: HashSet<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    for r in &recs {
        assert!(uids.contains(r["uid"].as_str().unwrap()));
    }
}

#[test]
fn export_parquet_holds_the_stored_flows_column_by_column() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let p = stored_demo("export-pq.db");
    let out = db("export.parquet");
    let o = tw(&[
        "export",
        "--db",
        s(&p),
        "--format",
        "parquet",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = tw(&["flows", "--db", s(&p), "--format", "json"]);
    let recs = jsonl(&f);
    assert!(recs.len() > 50);

    let reader = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let rows: Vec<parquet::record::Row> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), recs.len());
    let mut with_service = 0;
    for (row, rec) in rows.iter().zip(&recs) {
        let col = |name: &str| {
            row.get_column_iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no column {name}"))
        };
        assert_eq!(col("uid"), Field::Str(rec["uid"].as_str().unwrap().into()));
        let micros = (rec["ts"].as_f64().unwrap() * 1e6).round() as i64;
        assert_eq!(col("ts"), Field::TimestampMicros(micros));
        assert_eq!(
            col("orig_p"),
            Field::UShort(rec["orig_p"].as_u64().unwrap() as u16)
        );
        assert_eq!(
            col("orig_bytes"),
            Field::Long(rec["orig_bytes"].as_i64().unwrap())
        );
        assert_eq!(
            col("history"),
            Field::Str(rec["history"].as_str().unwrap().into())
        );
        match rec["service"].as_str() {
            Some(svc) => {
                with_service += 1;
                assert_eq!(col("service"), Field::Str(svc.into()));
            }
            None => assert_eq!(col("service"), Field::Null),
        }
    }
    assert!(
        with_service > 0,
        "the demo has flows with a service and without"
    );
}
