//! Any bytes as the parts of a stored flow block, an interim row and rollup segments,
//! put into a real store file: every query that reads them — `flows` with and without
//! a host filter, a client view down to its connections, first-seen times, rollup
//! totals, and the resume of an interrupted capture (which loads its stored uids) —
//! returns records or a "not valid" error; none panics, none loops.
//!
//! The input is split at the two-byte mark `FF FE` into up to six parts: the Bloom
//! filter, the keys, one meta frame, one records frame (stored form or JSON, as the
//! meta's format byte says), one rollup segment, one interim meta row. A part whose first byte is odd is stored as it is; otherwise the harness
//! LZ4-compresses (and for meta and records, frames) the rest, so the fuzzer reaches the
//! decoders behind the decompression.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::sqlite::params;
use tunnelwatch_store::views::{Kind, RankBy, ViewOptions};
use tunnelwatch_store::{CaptureId, Mode, Store};

static STORE: OnceLock<Mutex<Store>> = OnceLock::new();

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() && parts.len() < 5 {
        if data[i] == 0xFF && data[i + 1] == 0xFE {
            parts.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    parts.push(&data[start..]);
    while parts.len() < 6 {
        parts.push(&[]);
    }
    parts
}

/// A part as stored: raw when its first byte is odd, else compressed (and framed).
fn stored(part: &[u8], framed: bool) -> Vec<u8> {
    match part.split_first() {
        Some((b, rest)) if b % 2 == 0 => {
            let packed = lz4_flex::compress_prepend_size(rest);
            if !framed {
                return packed;
            }
            let mut out = Vec::new();
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            out.extend_from_slice(&packed);
            out
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    }
}

/// libFuzzer ends a run with `exit`, so no run removes its own store (a few hundred MB
/// of WAL each): the next one removes those whose process is gone.
fn remove_stale_stores(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("tw-fuzz-store-")) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new("/proc").join(&pid).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let st = STORE.get_or_init(|| {
        let dir = std::env::temp_dir();
        remove_stale_stores(&dir);
        let p = dir.join(format!("tw-fuzz-store-{}.db", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
        Mutex::new(Store::open(&p, Mode::ReadWrite).expect("a fresh store"))
    });
    let mut st = st.lock().unwrap_or_else(|e| e.into_inner());
    let p = split(data);
    let records = i64::from(p[1].len() as u32 / 42).min(4096);
    {
        let c = st.connection();
        c.execute_batch(
            "DELETE FROM flow_blocks; DELETE FROM flows_interim; DELETE FROM rollup_segments;
             DELETE FROM captures;
             INSERT INTO captures (id, identity, paths, bytes) VALUES (1, 'fuzz', '[]', 0);",
        )
        .expect("clearing the store");
        c.execute(
            "INSERT INTO flow_blocks (capture_id, records, min_ts, max_ts, hosts, keys, meta, data)
             VALUES (1, ?1, -9000000000000000000, 9000000000000000000, ?2, ?3, ?4, ?5)",
            params![
                records,
                stored(p[0], false),
                stored(p[1], false),
                stored(p[2], true),
                stored(p[3], true)
            ],
        )
        .expect("a block row");
        let seg = stored(p[4], false);
        for kind in 1..=3 {
            c.execute(
                "INSERT INTO rollup_segments (kind, hour, entries, data) VALUES (?1, NULL, 1, ?2)",
                params![kind, seg],
            )
            .expect("a segment row");
        }
        c.execute(
            "INSERT INTO flows_interim (capture_id, uid, ts, last_ts, meta, record)
             VALUES (1, 'C1', 0, 0, ?1, ?2)",
            params![p[5], stored(p[3], false)],
        )
        .expect("an interim row");
    }
    let _ = st.flows(&FlowQuery::default(), |_| true);
    let _ = st.flow_texts(&FlowQuery::default(), |_| true);
    let _ = st.flows(
        &FlowQuery {
            filter: "host 10.0.0.1 or host ::".into(),
            ..FlowQuery::default()
        },
        |_| true,
    );
    for kind in [Kind::Clients, Kind::Servers, Kind::Time] {
        let _ = st.view(&ViewOptions {
            kind,
            by: RankBy::Conns,
            limit: Some(5),
            depth: 3,
            conns_per_node: 3,
            ..ViewOptions::default()
        });
    }
    let _ = st.first_seen(&[
        "10.0.0.1".parse().expect("an address"),
        "::".parse().expect("an address"),
    ]);
    let _ = st.rollup_conns();
    let _ = st.client_count();
    // Resuming the capture loads the uids of its stored records.
    let _ = st.insert_flows(CaptureId(1), &[]);
});
