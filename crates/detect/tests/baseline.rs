//! The baseline methods on generated flow records with known seasonal behaviour: a
//! client that does the same thing at the same hour every day, then something else.
//! Each method must alarm when, and only when, it should; the profile must not absorb
//! a sudden tunnel; profiles need history before they may alarm; static limits work
//! without learning.

use tunnelwatch_detect::baseline::{Mode, ProfileKey, Profiles};
use tunnelwatch_detect::{Config, Detection};
use tunnelwatch_model::{Alert, Cause, ConnState, Dynamics, FlowRecord, Timestamp};

const DAY: f64 = 86_400.0;
/// 2026-11-02 00:00 UTC.
const T0: f64 = 1_793_577_600.0;
const CLIENT: &str = "10.0.0.5";
const SERVER: &str = "192.0.2.10";

/// A finished TCP connection.
fn conn(
    client: &str,
    server: &str,
    port: u16,
    t: f64,
    secs: f64,
    out: u64,
    back: u64,
) -> FlowRecord {
    FlowRecord {
        uid: format!("C{client}{server}{port}{t}"),
        community_id: "1:test".into(),
        ts: Timestamp::from_secs_f64(t),
        last_ts: Timestamp::from_secs_f64(t + secs),
        duration: secs,
        proto: "tcp".into(),
        ip_proto: 6,
        orig_h: client.parse().unwrap(),
        orig_p: 40000,
        resp_h: server.parse().unwrap(),
        resp_p: port,
        service: None,
        orig_pkts: 10 + out / 1400,
        resp_pkts: 10 + back / 1400,
        orig_bytes: out,
        resp_bytes: back,
        orig_ip_bytes: out + 520,
        resp_ip_bytes: back + 520,
        conn_state: ConnState::SF,
        history: "ShADadFf".into(),
        cause: Cause::End,
        missed_bytes: 0,
        vlan: None,
        inner_vlan: None,
        tunnel_parents: Vec::new(),
        signatures: Vec::new(),
        dynamics: Dynamics::default(),
        tcp: None,
        icmp: None,
        app: None,
        export: None,
    }
}

/// A small deterministic jitter in [-1, 1].
fn jitter(day: u32, i: u32) -> f64 {
    let x = (day * 7919 + i * 104_729) % 1000;
    f64::from(x) / 500.0 - 1.0
}

/// The client's routine on `day`: four connections to the server between 10:05 and
/// 10:50 (±20 % sizes), and an office neighbour's traffic at 10:00 and 15:00 so those
/// hours are observed.
fn routine(day: u32) -> Vec<FlowRecord> {
    let base = T0 + f64::from(day) * DAY;
    let mut v = Vec::new();
    for i in 0..4 {
        let t = base + 10.0 * 3600.0 + 300.0 + f64::from(i) * 600.0;
        let s = 1.0 + 0.2 * jitter(day, i);
        v.push(conn(
            CLIENT,
            SERVER,
            443,
            t,
            30.0 * s,
            (40_000.0 * s) as u64,
            (400_000.0 * s) as u64,
        ));
    }
    for h in [10.0, 15.0] {
        v.push(conn(
            "10.0.0.9",
            "198.51.100.1",
            443,
            base + h * 3600.0 + 60.0,
            5.0,
            2000,
            30_000,
        ));
    }
    v
}

/// A tunnel from the client at 10:00–11:00: 60 connections of 2 MB out.
fn tunnel(day: u32, server: &str) -> Vec<FlowRecord> {
    let base = T0 + f64::from(day) * DAY + 10.0 * 3600.0;
    (0..60)
        .map(|i| {
            conn(
                CLIENT,
                server,
                443,
                base + 120.0 + f64::from(i) * 55.0,
                50.0,
                2_000_000,
                80_000,
            )
        })
        .collect()
}

struct Run {
    d: Detection,
    alerts: Vec<Alert>,
}

impl Run {
    fn new(c: Config) -> Run {
        Run {
            d: Detection::new(c),
            alerts: Vec::new(),
        }
    }

    fn feed(&mut self, records: &[FlowRecord]) {
        let mut recs = records.to_vec();
        recs.sort_by_key(|r| r.last_ts);
        for r in &recs {
            self.d.record(r, &mut self.alerts);
        }
    }

    fn learn(&mut self, days: std::ops::Range<u32>) {
        self.d.baseline().set_mode(Mode::Learn);
        for day in days {
            self.feed(&routine(day));
        }
        self.d.baseline().set_mode(Mode::Detect);
    }

    fn baseline_alerts(&self) -> Vec<&Alert> {
        self.alerts
            .iter()
            .filter(|a| a.detector.starts_with("baseline_"))
            .collect()
    }

    fn rules(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .baseline_alerts()
            .iter()
            .map(|a| a.detector.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.rules.disable = [
        "beacon",
        "repeated_fetch",
        "long_connection",
        "many_bytes",
        "upload_volume",
    ]
    .map(String::from)
    .to_vec();
    c
}

#[test]
fn the_usual_day_after_learning_is_quiet() {
    let mut run = Run::new(config());
    run.learn(0..7);
    for day in 7..10 {
        run.feed(&routine(day));
    }
    run.d.finish(&mut run.alerts);
    assert!(
        run.baseline_alerts().is_empty(),
        "{:#?}",
        run.baseline_alerts()
    );
}

#[test]
fn a_tunnel_at_the_learnt_hour_raises_all_three_methods() {
    let mut run = Run::new(config());
    run.learn(0..7);
    let mut day7 = routine(7);
    day7.extend(tunnel(7, SERVER));
    run.feed(&day7);
    // 60 connections of 2 MB in an hour are also bursts this pair never made.
    assert_eq!(
        run.rules(),
        [
            "baseline_guess",
            "baseline_probability",
            "baseline_statistical"
        ],
        "{:#?}",
        run.alerts
    );
    let stat = run
        .baseline_alerts()
        .into_iter()
        .find(|a| a.detector == "baseline_statistical")
        .unwrap();
    assert_eq!(stat.severity.as_str(), "high");
    let e = &stat.evidence;
    assert_eq!(e["method"], "statistical");
    assert_eq!(e["slot"], "10:00 UTC");
    assert!(e["out_bytes_running"].as_f64().unwrap() > e["out_bytes_reference"].as_f64().unwrap());
    assert!(e["learnt_hours"].as_f64().unwrap() >= 7.0);
    // The robust pair is there too: about 160 kB out at 10:00 (±20 %).
    let median = e["out_bytes_learnt_median"].as_f64().unwrap();
    assert!((128_000.0..192_000.0).contains(&median), "{median}");
    assert!(e["out_bytes_learnt_mad"].as_f64().unwrap() > 0.0);
    // While the hour runs: the alert came before the tunnel's last connection.
    let last = tunnel(7, SERVER).last().unwrap().last_ts;
    assert!(stat.ts < last, "raised during the hour");
}

#[test]
fn a_new_destination_is_judged_against_the_clients_profile() {
    let mut run = Run::new(config());
    run.learn(0..7);
    let mut day7 = routine(7);
    day7.extend(tunnel(7, "203.0.113.66"));
    run.feed(&day7);
    let a = run.baseline_alerts();
    assert!(!a.is_empty());
    assert!(a.iter().all(|a| a.evidence["scope"] == "client"), "{a:#?}");
}

#[test]
fn the_profile_does_not_absorb_a_tunnel() {
    let mut run = Run::new(config());
    run.learn(0..7);
    let before = run.d.baseline().profiles().clone();
    for day in 7..10 {
        let mut d = routine(day);
        d.extend(tunnel(day, SERVER));
        run.feed(&d);
    }
    run.d.finish(&mut run.alerts);
    // Three days of the tunnel, three days of alarms: none of it was learnt.
    let days: std::collections::BTreeSet<i64> = run
        .baseline_alerts()
        .iter()
        .filter(|a| a.detector == "baseline_statistical")
        .map(|a| a.ts.as_nanos() / 86_400_000_000_000)
        .collect();
    assert_eq!(days.len(), 3, "{days:?}");
    let key = |p: &Profiles| {
        p.keys
            .iter()
            .find(|(k, _)| k.server.is_some() && k.client.to_string() == CLIENT)
            .map(|(_, s)| s[&10].mean[1])
            .unwrap()
    };
    assert_eq!(key(&before), key(run.d.baseline().profiles()));
}

#[test]
fn slow_change_is_followed_not_alarmed() {
    let mut run = Run::new(config());
    run.learn(0..7);
    // Ten more days, each 4 % busier than the one before.
    for day in 7..17 {
        let g = 1.04f64.powi((day - 6) as i32);
        let recs: Vec<FlowRecord> = routine(day)
            .into_iter()
            .map(|mut r| {
                r.orig_bytes = (r.orig_bytes as f64 * g) as u64;
                r.resp_bytes = (r.resp_bytes as f64 * g) as u64;
                r
            })
            .collect();
        run.feed(&recs);
    }
    run.d.finish(&mut run.alerts);
    assert!(
        run.baseline_alerts().is_empty(),
        "{:#?}",
        run.baseline_alerts()
    );
}

#[test]
fn bursts_the_pair_never_made_raise_the_probabilistic_method() {
    let mut run = Run::new(config());
    run.learn(0..7);
    let base = T0 + 7.0 * DAY + 10.0 * 3600.0;
    let mut day7 = routine(7);
    // Six connections in two minutes carrying 1.2 MB: the seed's "more than 5
    // connections in 5 minutes over 1 MB" — an event this pair never had.
    for i in 0..6 {
        day7.push(conn(
            CLIENT,
            SERVER,
            443,
            base + 3000.0 + f64::from(i) * 20.0,
            5.0,
            200_000,
            4000,
        ));
    }
    run.feed(&day7);
    let p: Vec<&Alert> = run
        .baseline_alerts()
        .into_iter()
        .filter(|a| a.detector == "baseline_probability")
        .collect();
    assert_eq!(p.len(), 1, "{:#?}", run.alerts);
    assert_eq!(p[0].evidence["bursts_running"], 1);
}

#[test]
fn profiles_need_history_before_they_may_alarm() {
    let mut run = Run::new(config());
    run.learn(0..2); // two days: below min_history (3)
    let mut day2 = routine(2);
    day2.extend(tunnel(2, SERVER));
    run.feed(&day2);
    assert!(
        run.baseline_alerts().is_empty(),
        "{:#?}",
        run.baseline_alerts()
    );
}

#[test]
fn learning_online_for_a_period_then_detecting() {
    let mut run = Run::new(config());
    let end = Timestamp::from_secs_f64(T0 + 7.0 * DAY);
    run.d.baseline().set_mode(Mode::LearnUntil(end));
    for day in 0..7 {
        let mut d = routine(day);
        if day == 3 {
            // Something unusual during learning is learnt, not raised.
            d.extend(tunnel(day, "203.0.113.9").into_iter().map(|mut r| {
                r.orig_h = "10.0.0.77".parse().unwrap();
                r
            }));
        }
        run.feed(&d);
    }
    assert!(run.baseline_alerts().is_empty());
    let mut day8 = routine(8);
    day8.extend(tunnel(8, SERVER));
    run.feed(&day8);
    assert!(
        run.rules().contains(&"baseline_statistical".to_string()),
        "{:#?}",
        run.alerts
    );
}

#[test]
fn static_limits_work_without_learning() {
    let text = r#"
        [[baseline.static]]
        client = "10.0.0.0/8"
        port = 443
        connections = 20
        note = "no more than 20 HTTPS connections an hour to one server"
    "#;
    let mut c = Config::parse(text, "test.toml").unwrap();
    c.rules.disable = config().rules.disable;
    let mut run = Run::new(c);
    run.feed(&routine(0));
    assert!(run.baseline_alerts().is_empty());
    run.feed(&tunnel(1, SERVER));
    let a = run.baseline_alerts();
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].detector, "baseline_static");
    assert_eq!(a[0].evidence["limit"], 20.0);
    assert_eq!(a[0].evidence["running"], 21.0);
    assert!(a[0].message.contains("no more than 20"));
}

#[test]
fn a_flood_of_new_clients_is_bounded_and_counted() {
    let mut c = config();
    c.baseline.max_keys = 10;
    let mut run = Run::new(c);
    let flood: Vec<FlowRecord> = (0..500u32)
        .map(|i| {
            let src = format!("198.18.{}.{}", i / 250, i % 250);
            conn(&src, SERVER, 80, T0 + f64::from(i), 0.0, 0, 0)
        })
        .collect();
    run.feed(&flood);
    run.d.finish(&mut run.alerts);
    let b = run.d.baseline();
    assert!(b.stats().refused >= 480, "{:?}", b.stats());
    assert!(b.profiles().keys.len() <= 10);
}

#[test]
fn the_end_counts_the_same_when_profiles_are_not_kept() {
    // Learnt keys, then on day 5 the routine (known keys), a tunnel (an alarmed hour is
    // not learnt) and a flood of new clients beyond `max_keys` from 09:50 on, cut at
    // 11:00 (one hour running at the end) or at 10:08 (two: 09:00 is not closed until
    // 10:10). `read --no-store` does not fold the last one, but must count the same.
    let day = 5;
    let ten = T0 + f64::from(day) * DAY + 10.0 * 3600.0;
    let end = |cut: f64, keep: bool| {
        let mut c = config();
        c.baseline.max_keys = 40;
        let mut run = Run::new(c);
        run.learn(0..day);
        let mut last = routine(day);
        last.extend(tunnel(day, SERVER));
        last.extend((0..120u32).map(|i| {
            let src = format!("198.18.0.{i}");
            conn(
                &src,
                SERVER,
                443,
                ten - 600.0 + f64::from(i) * 35.0,
                1.0,
                100,
                100,
            )
        }));
        last.retain(|r| r.last_ts.as_secs_f64_micros() < cut);
        run.d.baseline().set_keep_profiles(keep);
        run.feed(&last);
        run.d.finish(&mut run.alerts);
        let stats = run.d.baseline().stats().clone();
        (stats, run.alerts)
    };
    for cut in [ten + 3600.0, ten + 480.0] {
        let (kept, kept_alerts) = end(cut, true);
        let (counted, counted_alerts) = end(cut, false);
        assert!(kept.refused > 0, "{kept:?}");
        assert_eq!(kept, counted, "cut {cut}");
        assert!(kept_alerts == counted_alerts);
        let alarmed = kept_alerts
            .iter()
            .filter(|a| a.detector.starts_with("baseline_"));
        assert!(
            alarmed.count() >= 2,
            "the tunnel's hour alarmed (cut {cut})"
        );
    }
}

#[test]
fn distinct_servers_are_counted_once_each_up_to_the_cap() {
    // Servers reached on several ports and again and again within the hour; past the
    // cap of 4,096 the count stops.
    for (servers, records, want) in [(120u32, 600u32, 120.0), (5000, 9000, 4096.0)] {
        let mut run = Run::new(config());
        run.d.baseline().set_mode(Mode::Learn);
        let ten = T0 + 10.0 * 3600.0;
        let recs: Vec<FlowRecord> = (0..records)
            .map(|i| {
                let s = (i * 7919) % servers;
                let server = format!("10.{}.{}.{}", s >> 16, (s >> 8) & 255, s & 255);
                let port = 443 + (i % 3) as u16;
                conn(
                    CLIENT,
                    &server,
                    port,
                    ten + f64::from(i) * 0.3,
                    0.1,
                    100,
                    100,
                )
            })
            .collect();
        run.feed(&recs);
        run.d.finish(&mut run.alerts);
        let client = ProfileKey {
            client: CLIENT.parse().unwrap(),
            server: None,
            port: None,
        };
        let learnt = &run.d.baseline().profiles().keys[&client][&10];
        assert_eq!(learnt.mean[6], want, "{servers} servers");
    }
}
