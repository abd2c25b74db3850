//! Flow blocks end to end through the store's API: thousands of records in several
//! batches (many blocks, many frames) and real records of every shape come back byte for byte, by host and by
//! filter; interim records are superseded by their final records; the connection
//! lists of the views agree with the rollups; an interrupted capture resumes without
//! duplicates and a completed one stores nothing more.

use std::collections::HashSet;
use std::path::PathBuf;

use tunnelwatch_model::{Cause, FlowRecord, Timestamp};
use tunnelwatch_output::jsonl;
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::views::{Kind, RankBy, ViewOptions};
use tunnelwatch_store::{CaptureIdentity, Mode, Store};

struct Temp(PathBuf);

impl Temp {
    fn new(name: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("tw-blocks-{}-{name}", std::process::id()));
        let t = Temp(p);
        t.clean();
        t
    }
    fn clean(&self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.0.display()));
        }
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        self.clean();
    }
}

fn golden() -> FlowRecord {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/http-get/flows.jsonl"
    );
    let text = std::fs::read_to_string(p).expect("the golden records");
    serde_json::from_str(text.lines().next().expect("a record")).expect("a valid record")
}

/// Record `i`: 50 clients, 7 servers, one connection a second.
fn record(base: &FlowRecord, i: u32, cause: Cause) -> FlowRecord {
    let mut r = base.clone();
    r.uid = format!("C{i:08}");
    r.orig_h = format!("10.1.{}.{}", i % 50 / 10, i % 50).parse().unwrap();
    r.resp_h = format!("192.0.2.{}", i % 7).parse().unwrap();
    r.resp_p = if i % 7 == 3 { 3128 } else { 443 };
    r.ts = Timestamp(1_700_000_000_000_000_000 + i64::from(i) * 1_000_000_000);
    r.last_ts = Timestamp(r.ts.0 + 500_000_000);
    r.orig_bytes = u64::from(i);
    r.cause = cause;
    r
}

fn json(r: &FlowRecord) -> String {
    let mut b = Vec::new();
    jsonl::write_json(&mut b, r);
    String::from_utf8(b).unwrap()
}

/// The JSON of every flow `filter` matches, as `flows --format json` gives it, checked
/// against the records `Store::flows` gives.
fn all(st: &Store, filter: &str) -> Vec<String> {
    let q = FlowQuery {
        filter: filter.into(),
        ..FlowQuery::default()
    };
    let mut out = Vec::new();
    st.flow_texts(&q, |text| {
        out.push(text.to_string());
        true
    })
    .unwrap();
    let mut recs = Vec::new();
    st.flows(&q, |r| {
        recs.push(json(&r));
        true
    })
    .unwrap();
    assert_eq!(out, recs, "the text is the record's JSON");
    out
}

#[test]
fn many_records_come_back_whole_by_host_and_filter() {
    let t = Temp::new("many.db");
    let base = golden();
    let n = 5_000u32;
    let finals: Vec<FlowRecord> = (0..n).map(|i| record(&base, i, Cause::End)).collect();
    let mut st = Store::open(&t.0, Mode::ReadWrite).unwrap();
    let cid = st.begin_capture(&CaptureIdentity::named("many")).unwrap();
    // Interim records of the first 100 flows, then everything final in three batches.
    let interim: Vec<FlowRecord> = (0..100).map(|i| record(&base, i, Cause::Status)).collect();
    st.insert_flows(cid, &interim).unwrap();
    assert_eq!(st.counts().unwrap().1, 100);
    for part in finals.chunks(2_100) {
        let s = st.insert_flows(cid, part).unwrap();
        assert_eq!(s.written as usize, part.len());
    }
    st.finish_capture(cid).unwrap();
    let (f, i, _, _) = st.counts().unwrap();
    assert_eq!(
        (f, i),
        (u64::from(n), 0),
        "final records replaced the interim ones"
    );
    assert_eq!(st.rollup_conns().unwrap(), [i64::from(n); 4]);

    let want: Vec<String> = finals.iter().map(json).collect();
    assert_eq!(all(&st, ""), want, "every record, in the order stored");
    let host: Vec<String> = finals
        .iter()
        .filter(|r| r.orig_h.to_string() == "10.1.1.17")
        .map(json)
        .collect();
    assert_eq!(host.len(), 100);
    assert_eq!(all(&st, "host 10.1.1.17"), host);
    let proxied: Vec<String> = finals
        .iter()
        .filter(|r| r.resp_p == 3128 && r.orig_bytes > 4000)
        .map(json)
        .collect();
    assert!(!proxied.is_empty());
    assert_eq!(all(&st, "port 3128 and orig_bytes > 4000"), proxied);
    assert!(all(&st, "host 10.9.9.9").is_empty());

    // Level three: the newest 5 connections of each pair, the rest counted.
    let v = st
        .view(&ViewOptions {
            kind: Kind::Clients,
            by: RankBy::Conns,
            limit: Some(3),
            depth: 3,
            conns_per_node: 5,
            ..ViewOptions::default()
        })
        .unwrap();
    for node in &v.trees[0].nodes {
        assert_eq!(node.totals.conns, 100);
        for k in &node.children {
            assert_eq!(k.conns.len() as u64 + k.conns_more, k.totals.conns as u64);
            assert_eq!(k.conns.len(), 5);
            let ts: Vec<i64> = k.conns.iter().map(|c| c.totals.first_us).collect();
            assert!(ts.windows(2).all(|w| w[0] > w[1]), "newest first: {ts:?}");
            // The newest connection of the pair is the last one generated for it.
            let newest = finals
                .iter()
                .filter(|r| Some(r.orig_h) == node.host && Some(r.resp_h) == k.host)
                .map(|r| r.ts.as_micros())
                .max();
            assert_eq!(Some(ts[0]), newest);
        }
    }
}

#[test]
fn an_interrupted_capture_resumes_and_a_completed_one_is_not_stored_again() {
    let t = Temp::new("resume.db");
    let base = golden();
    let recs: Vec<FlowRecord> = (0..3_000).map(|i| record(&base, i, Cause::End)).collect();
    {
        let mut st = Store::open(&t.0, Mode::ReadWrite).unwrap();
        let cid = st.begin_capture(&CaptureIdentity::named("resume")).unwrap();
        st.insert_flows(cid, &recs[..1_000]).unwrap();
        // Dropped without finish_capture: an interrupted read.
    }
    let mut st = Store::open(&t.0, Mode::ReadWrite).unwrap();
    let cid = st.begin_capture(&CaptureIdentity::named("resume")).unwrap();
    let s = st.insert_flows(cid, &recs).unwrap();
    assert_eq!((s.written, s.unchanged), (2_000, 1_000));
    st.finish_capture(cid).unwrap();
    let uids: HashSet<String> = all(&st, "").into_iter().collect();
    assert_eq!(uids.len(), 3_000, "no duplicates");
    assert_eq!(st.rollup_conns().unwrap(), [3_000; 4]);
    drop(st);
    let mut st = Store::open(&t.0, Mode::ReadWrite).unwrap();
    let cid = st.begin_capture(&CaptureIdentity::named("resume")).unwrap();
    let s = st.insert_flows(cid, &recs).unwrap();
    assert_eq!((s.written, s.unchanged), (0, 3_000));
    assert_eq!(st.counts().unwrap().0, 3_000);
}

#[test]
fn real_records_of_every_shape_come_back_whole() {
    // Every record of the repo's golden cases (HTTP, TLS, SSH, DNS, ICMP errors, GRE,
    // Teredo and VXLAN tunnels, VLAN/MPLS, IPv6 fragments, truncated captures…) as
    // `read --flows` wrote them, final and interim.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden");
    let mut texts = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path().join("flows.jsonl");
        if let Ok(t) = std::fs::read_to_string(&p) {
            texts.extend(t.lines().map(str::to_string));
        }
    }
    texts.sort();
    assert!(texts.len() > 40, "{} golden records", texts.len());
    let recs: Vec<FlowRecord> = texts
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(recs.iter().any(|r| r.cause == Cause::Status) || recs.len() > 40);
    let t = Temp::new("golden.db");
    let mut st = Store::open(&t.0, Mode::ReadWrite).unwrap();
    let cid = st.begin_capture(&CaptureIdentity::named("golden")).unwrap();
    st.insert_flows(cid, &recs).unwrap();
    let mut got = all(&st, "");
    got.sort();
    assert_eq!(got, texts, "byte for byte");
    let mut back = Vec::new();
    st.flows(&FlowQuery::default(), |r| {
        back.push(r);
        true
    })
    .unwrap();
    back.sort_by_key(json);
    let mut want = recs.clone();
    want.sort_by_key(json);
    assert_eq!(back, want, "the same records, field for field");
}
