//! Store benchmark (not a test): ingest N synthetic full flow records the way `read`'s
//! store thread does (transactions of 64 Ki records), then time the analyst's queries:
//! top-20 clients by outbound bytes, a full client-view page, a host filter.
//!
//! `cargo run --release -p tunnelwatch-store --example store_bench -- DB N [FLOWS.jsonl]`
//! (see `bench/store.sh`). Without a file, records are synthetic, shaped like the
//! sensor's (dynamics, TCP facts, HTTP facts; ~1 KB of JSON each), 50,000 clients each
//! talking to a few of 2,000 servers over 30 days, in time order. With a file (what
//! `tunnelwatch read --flows` wrote for the benchmark capture), its records are stored
//! again and again until N, each replay one day later with its own uids: the same
//! network seen on N / records days.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use tunnelwatch_model::{
    AppFacts, Cause, ConnState, DirectionStats, Dynamics, FlowRecord, HttpFacts, Stats, TcpFacts,
    Timestamp,
};
use tunnelwatch_store::query::FlowQuery;
use tunnelwatch_store::views::{Kind, RankBy, ViewOptions};
use tunnelwatch_store::{CaptureIdentity, Mode, Store};

// The allocator `tunnelwatch` uses, so ingest is measured as `read` runs it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn dir(pkts: u64, bytes: u64, h: u64) -> DirectionStats {
    let st = |m: f64| Stats {
        mean: m,
        min: m / 2.0,
        max: m * 3.0,
        stddev: m / 4.0,
    };
    DirectionStats {
        payload_bytes: bytes,
        link_bytes: bytes + 54 * pkts,
        flags: "APSF".into(),
        first_flags: vec!["S".into(), "A".into(), "AP".into(), "A".into()],
        iat: Some(st((h % 1000) as f64 / 1e4)),
        size: Some(st((bytes / pkts.max(1)) as f64)),
        idle_periods: h % 3,
        zero_windows: 0,
        retransmissions: h % 2,
        ttl_min: Some(63),
        ttl_max: Some(64),
        fragments: 0,
        truncated: 0,
        ..Default::default()
    }
}

fn record(i: u64, n: u64) -> FlowRecord {
    let h = mix(i);
    let client = (h % 50_000) as u32;
    let server = (mix(u64::from(client) * 8 + (h >> 20) % 8) % 2000) as u32;
    let ports = [80u16, 443, 53, 3128, 8080, 22];
    let span_us = 30 * 86_400 * 1_000_000u64;
    let ts_us = 1_700_000_000_000_000 + (i as u128 * span_us as u128 / n.max(1) as u128) as u64;
    let dur_us = (h >> 8) % 120_000_000;
    let ts = Timestamp(ts_us as i64 * 1000);
    let last_ts = Timestamp((ts_us + dur_us) as i64 * 1000);
    let (op, rp) = (3 + (h >> 12) % 40, 2 + (h >> 18) % 60);
    let (ob, rb) = ((h >> 24) % 20_000, (h >> 30) % 200_000);
    FlowRecord {
        uid: format!("C{:016x}", h),
        community_id: format!("1:{:027x}=", mix(h)),
        ts,
        last_ts,
        duration: FlowRecord::duration_of(ts, last_ts),
        proto: "tcp".into(),
        ip_proto: 6,
        orig_h: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client)),
        orig_p: 1024 + (h % 60_000) as u16,
        resp_h: IpAddr::V4(Ipv4Addr::from(0xc633_6400 + server)),
        resp_p: ports[(server % 6) as usize],
        service: Some("http".into()),
        orig_pkts: op,
        resp_pkts: rp,
        orig_bytes: ob,
        resp_bytes: rb,
        orig_ip_bytes: ob + 40 * op,
        resp_ip_bytes: rb + 40 * rp,
        conn_state: ConnState::SF,
        history: "ShADadFf".into(),
        cause: Cause::End,
        missed_bytes: 0,
        vlan: None,
        inner_vlan: None,
        tunnel_parents: Vec::new(),
        signatures: Vec::new(),
        dynamics: Dynamics {
            orig: dir(op, ob, h),
            resp: dir(rp, rb, h >> 5),
        },
        tcp: Some(TcpFacts {
            syn_synack: Some(0.012),
            synack_ack: Some(0.0004),
            teardown: Some(0.03),
            orig_mss: Some(1460),
            resp_mss: Some(1460),
            orig_wscale: Some(7),
            resp_wscale: Some(7),
            first_packets: vec![">S".into(), "<AS".into(), ">A".into(), ">AP".into()],
            ..Default::default()
        }),
        icmp: None,
        app: Some(Box::new(AppFacts {
            http: Some(Box::new(HttpFacts {
                method: Some("GET".into()),
                uri: Some(format!("/index/{}.html", h % 977)),
                version: Some("1.1".into()),
                host: Some(format!("srv{server}.example")),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
                status: Some(200),
                resp_version: Some("1.1".into()),
                after_connect: None,
            })),
            ..AppFacts::default()
        })),
        export: None,
    }
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`
/// (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let db = PathBuf::from(args.next().unwrap_or_else(|| "bench-store.db".into()));
    let n: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let mut skip_ingest = false;
    let mut skip_queries = false;
    let mut source: Option<Vec<FlowRecord>> = None;
    for a in args {
        if a == "--queries-only" {
            skip_ingest = true;
        } else if a == "--ingest-only" {
            skip_queries = true;
        } else {
            let text = std::fs::read_to_string(&a)?;
            let recs: Vec<FlowRecord> = text
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            eprintln!("{}: {} records", a, recs.len());
            source = Some(recs);
        }
    }
    let host = match &source {
        Some(recs) => recs
            .get(recs.len() / 2)
            .map_or("10.0.1.44".to_string(), |r| r.orig_h.to_string()),
        None => "10.0.1.44".to_string(),
    };
    let make = |k: u64| match &source {
        Some(recs) if !recs.is_empty() => {
            let len = recs.len() as u64;
            let mut r = recs[(k % len) as usize].clone();
            let day = (k / len) as i64;
            if day > 0 {
                let shift = day * 86_400_000_000_000;
                r.ts = Timestamp(r.ts.0 + shift);
                r.last_ts = Timestamp(r.last_ts.0 + shift);
                r.uid = format!("{}d{day}", r.uid);
            }
            r
        }
        _ => record(k, n),
    };
    if !skip_ingest {
        let mut store = Store::open(&db, Mode::ReadWrite)?;
        let cid = store.begin_capture(&CaptureIdentity::named(&format!("bench-{n}")))?;
        let t0 = Instant::now();
        let cpu0 = cpu_seconds();
        let mut build = 0f64;
        let mut batch = Vec::with_capacity(65_536);
        let mut i = 0;
        while i < n {
            let tb = Instant::now();
            batch.clear();
            let end = (i + 65_536).min(n);
            batch.extend((i..end).map(make));
            build += tb.elapsed().as_secs_f64();
            store.insert_flows(cid, &batch)?;
            i = end;
            if i % (1 << 20) < 65_536 {
                let el = t0.elapsed().as_secs_f64() - build;
                eprintln!("  {i} records, {:.0} records/s so far", i as f64 / el);
            }
        }
        // Closing is part of ingest: the last WAL checkpoint runs there.
        drop(store);
        let el = t0.elapsed().as_secs_f64() - build;
        println!(
            "ingest: {n} records in {el:.1} s of store time = {:.0} records/s (record building excluded: {build:.1} s); CPU {:.1} s (building included)",
            n as f64 / el,
            cpu_seconds() - cpu0
        );
    }
    if skip_queries {
        return Ok(());
    }
    let store = Store::open(&db, Mode::ReadOnly)?;
    let timed = |name: &str, f: &mut dyn FnMut() -> Result<String, Box<dyn std::error::Error>>| {
        let mut best = f64::MAX;
        let mut what = String::new();
        for _ in 0..3 {
            let t = Instant::now();
            what = f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{name}: {:.1} ms (best of 3) — {what}", best * 1e3);
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    timed("top-20 clients by out_bytes", &mut || {
        let v = store.view(&ViewOptions {
            kind: Kind::Clients,
            by: RankBy::OutBytes,
            limit: Some(20),
            depth: 1,
            ..ViewOptions::default()
        })?;
        Ok(format!(
            "{} clients in range, first {}",
            v.trees[0].global.nodes, v.trees[0].nodes[0].label
        ))
    })?;
    timed(
        "client view page (top 20 clients by out_bytes, their top 20 servers, 50 connections each)",
        &mut || {
            let v = store.view(&ViewOptions {
                kind: Kind::Clients,
                by: RankBy::OutBytes,
                limit: Some(20),
                depth: 3,
                conns_per_node: 50,
                ..ViewOptions::default()
            })?;
            let text = tunnelwatch_store::views::render_text(&v);
            Ok(format!("{} lines", text.lines().count()))
        },
    )?;
    timed(
        "server view page (top 20 servers by conns, depth 2)",
        &mut || {
            let v = store.view(&ViewOptions {
                kind: Kind::Servers,
                by: RankBy::Conns,
                limit: Some(20),
                depth: 2,
                ..ViewOptions::default()
            })?;
            Ok(format!("{} servers", v.trees[0].global.nodes))
        },
    )?;
    let host = host.as_str();
    timed(
        &format!("flows 'host {host}' (decoded records)"),
        &mut || {
            let q = FlowQuery {
                filter: format!("host {host}"),
                ..FlowQuery::default()
            };
            let n = store.flows(&q, |_| true)?;
            Ok(format!("{n} flows"))
        },
    )?;
    timed(
        "flows 'net 10.0.1.0/24 and port 3128 and bytes > 100k'",
        &mut || {
            let q = FlowQuery {
                filter: "net 10.0.1.0/24 and port 3128 and bytes > 100k".into(),
                ..FlowQuery::default()
            };
            let n = store.flows(&q, |_| true)?;
            Ok(format!("{n} flows"))
        },
    )?;
    Ok(())
}
