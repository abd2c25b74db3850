//! A store written by schema version 1 (one `flows` row per record) opens with this
//! build: its records move into flow blocks and interim rows, queries and views give
//! them back, and the rollups are untouched.

use std::path::PathBuf;

use tunnelwatch_model::FlowRecord;
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::schema::{Migration, MIGRATIONS};
use tunnelwatch_store::sqlite::{params, Connection};
use tunnelwatch_store::{Mode, Store, APPLICATION_ID};

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tw-migration-{}-{name}", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
    p
}

/// A record of the http-get golden case, renamed and moved.
fn record(uid: &str, client: &str, ts_s: i64, status: bool) -> FlowRecord {
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/http-get/flows.jsonl"
    );
    let text = std::fs::read_to_string(golden).expect("the golden records");
    let mut r: FlowRecord =
        serde_json::from_str(text.lines().next().expect("a record")).expect("a valid record");
    r.uid = uid.into();
    r.orig_h = client.parse().unwrap();
    r.ts = tunnelwatch_model::Timestamp(ts_s * 1_000_000_000);
    r.last_ts = r.ts;
    r.cause = if status {
        tunnelwatch_model::Cause::Status
    } else {
        tunnelwatch_model::Cause::End
    };
    r
}

#[test]
fn a_version_1_store_is_migrated_with_its_flows() {
    let p = temp("v1.db");
    let recs = [
        record("C1", "10.0.0.1", 1_700_000_000, false),
        record("C2", "10.0.0.2", 1_700_000_100, false),
        record("C3", "10.0.0.1", 1_700_000_200, true),
    ];
    {
        let c = Connection::open(&p).unwrap();
        let Migration::Sql(v1) = &MIGRATIONS[0] else {
            panic!("version 1 is plain SQL");
        };
        c.execute_batch(v1).unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute(
            "INSERT INTO captures (identity, paths, bytes, complete) VALUES ('name:old', '[]', 0, 1)",
            [],
        )
        .unwrap();
        // The rollups of the two final records, as version 1 kept them.
        c.execute_batch(
            "INSERT INTO roll_pair VALUES (472222, x'00000000000000000000ffff0a000001',
               x'00000000000000000000ffffc0000201', 443, 1, 3, 2, 100, 2000, 0, 1, 2);
             INSERT INTO roll_pair VALUES (472222, x'00000000000000000000ffff0a000002',
               x'00000000000000000000ffffc0000201', 443, 1, 3, 2, 100, 2000, 0, 3, 4);
             INSERT INTO roll_client VALUES (472222, x'00000000000000000000ffff0a000001',
               1, 3, 2, 100, 2000, 0, 1, 2);
             INSERT INTO roll_client VALUES (472222, x'00000000000000000000ffff0a000002',
               1, 3, 2, 100, 2000, 0, 3, 4);
             INSERT INTO roll_server VALUES (472222, x'00000000000000000000ffffc0000201', 443,
               2, 6, 4, 200, 4000, 0, 1, 4);
             INSERT INTO roll_minute VALUES (28333333, 2, 6, 4, 200, 4000, 0, 1, 4);",
        )
        .unwrap();
        for r in &recs {
            let json = serde_json::to_vec(r).unwrap();
            c.execute(
                "INSERT INTO flows (capture_id, uid, community_id, ts, last_ts, duration, proto,
                   orig_h, orig_p, resp_h, resp_p, orig_pkts, resp_pkts, orig_bytes, resp_bytes,
                   orig_ip_bytes, resp_ip_bytes, conn_state, history, cause, final, record)
                 VALUES (1, ?1, '', ?2, ?2, 0, 'tcp', x'00', 0, x'00', 0, 0, 0, 0, 0, 0, 0,
                   'SF', '', ?3, ?4, ?5)",
                params![
                    r.uid,
                    r.ts.as_micros(),
                    r.cause.as_str(),
                    r.cause.as_str() != "status",
                    lz4_flex::compress_prepend_size(&json)
                ],
            )
            .unwrap();
        }
    }
    let st = Store::open(&p, Mode::ReadWrite).expect("the version-1 store migrates");
    let (finals, interim, _, captures) = st.counts().unwrap();
    assert_eq!((finals, interim, captures), (2, 1, 1));
    let q = FlowQuery {
        filter: "host 10.0.0.1".into(),
        ..FlowQuery::default()
    };
    let mut got = Vec::new();
    st.flows(&q, |r| {
        got.push(r.uid);
        true
    })
    .unwrap();
    assert_eq!(got, ["C1", "C3"]);
    // The final record now in a block (stored form) and the interim one kept as
    // version 1's JSON text both give the JSON they were read with.
    let mut texts = Vec::new();
    st.flow_texts(&q, |t| {
        texts.push(t.to_string());
        true
    })
    .unwrap();
    let want: Vec<String> = ["C1", "C3"]
        .iter()
        .map(|u| serde_json::to_string(recs.iter().find(|r| r.uid == *u).unwrap()).unwrap())
        .collect();
    assert_eq!(texts, want);
    let old: i64 = st
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'flows'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the version-1 table is gone");
    assert_eq!(st.rollup_conns().unwrap(), [2, 2, 2, 2], "rollups moved");
    assert_eq!(st.client_count().unwrap(), 2);
    drop(st);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
}
