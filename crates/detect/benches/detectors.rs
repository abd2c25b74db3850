//! Detection cost per flow record, for all detectors together (what `read` runs on its
//! detection thread) and for each one alone. The records are the repository's golden
//! records (`tests/golden/*/flows.jsonl`: HTTP, TLS, SSH, DNS, ICMP, tunnels, VLANs),
//! replicated 1,000 times with distinct client addresses, uids and start times half a
//! second apart, in end order: many clients, the same servers, as in the benchmark
//! corpus. Each run ends with the detector's drop (as `read` ends with it). On mimalloc,
//! as the CLI. `cargo bench -p tunnelwatch-detect`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tunnelwatch_detect::{
    baseline, beacon, dns_flow, dns_tunnel, flood, http_checks, icmp_tunnel, interactive, policy,
    port_scan, replay, signature, stepping_stone, tcp_filter, threshold, upload, Config, Detection,
    Detector,
};
use tunnelwatch_model::{Alert, FlowRecord};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const COPIES: u32 = 1000;

fn records() -> Vec<FlowRecord> {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden");
    let mut base = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(golden)
        .expect("tests/golden")
        .filter_map(|e| Some(e.ok()?.path().join("flows.jsonl")))
        .filter(|p| p.exists())
        .collect();
    dirs.sort();
    for p in dirs {
        let text = std::fs::read_to_string(&p).expect("golden records");
        for line in text.lines() {
            base.push(serde_json::from_str::<FlowRecord>(line).expect("a golden record"));
        }
    }
    let t0 = base.iter().map(|r| r.ts).min().expect("records");
    let mut out = Vec::with_capacity(base.len() * COPIES as usize);
    for k in 0..COPIES {
        for r in &base {
            let mut r = r.clone();
            let shift = i64::from(k) * 500_000_000 - (r.ts.as_nanos() - t0.as_nanos());
            r.ts = r.ts.add_nanos(shift);
            r.last_ts = r.last_ts.add_nanos(shift);
            r.uid = format!("{}{k}", r.uid);
            r.orig_h = match r.orig_h {
                IpAddr::V4(_) => Ipv4Addr::from(0x0a00_0000 | k).into(),
                IpAddr::V6(_) => Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(k)).into(),
            };
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.last_ts);
    out
}

/// Feeds every record, advancing time as `Detection` does, then finishes.
fn run(d: &mut dyn Detector, records: &[FlowRecord], out: &mut Vec<Alert>) {
    let mut now = None;
    for r in records {
        d.record(r, out);
        if now.is_none_or(|n| r.last_ts > n) {
            now = Some(r.last_ts);
            d.advance(r.last_ts, out);
        }
    }
    d.finish(out);
}

type Make = fn(&Config) -> Box<dyn Detector>;

fn detectors(c: &mut Criterion) {
    let records = records();
    let config = Config::default();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.sample_size(10);
    g.bench_function("all", |b| {
        b.iter_batched(
            || Detection::new(config.clone()),
            |mut d| {
                let mut out = Vec::new();
                for r in &records {
                    d.record(r, &mut out);
                }
                d.finish(&mut out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    let each: [(&str, Make); 16] = [
        ("tcp_filter", |c| Box::new(tcp_filter::TcpFilter::new(c))),
        ("flood", |c| Box::new(flood::Flood::new(c))),
        ("port_scan", |c| Box::new(port_scan::PortScan::new(c))),
        ("threshold", |c| Box::new(threshold::Thresholds::new(c))),
        ("http_checks", |c| Box::new(http_checks::HttpChecks::new(c))),
        ("dns_tunnel", |c| Box::new(dns_tunnel::DnsTunnel::new(c))),
        ("dns_flow", |c| Box::new(dns_flow::DnsFlow::new(c))),
        ("icmp_tunnel", |c| Box::new(icmp_tunnel::IcmpTunnel::new(c))),
        ("upload", |c| Box::new(upload::Upload::new(c))),
        ("interactive", |c| {
            Box::new(interactive::Interactive::new(c))
        }),
        ("beacon", |c| Box::new(beacon::Beacon::new(c))),
        ("signature", |c| Box::new(signature::Signature::new(c))),
        ("stepping_stone", |c| {
            Box::new(stepping_stone::SteppingStone::new(c))
        }),
        ("replay", |c| Box::new(replay::Replay::new(c))),
        ("blacklist", |c| Box::new(policy::BlackList::new(c))),
        ("baseline", |c| Box::new(baseline::Baseline::new(c))),
    ];
    for (name, make) in each {
        g.bench_function(name, |b| {
            b.iter_batched(
                || make(&config),
                |mut d| {
                    let mut out = Vec::new();
                    run(&mut *d, &records, &mut out);
                    out.len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, detectors);
criterion_main!(benches);
