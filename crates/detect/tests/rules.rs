//! Every rule with a positive and a benign case, on flow records built here: the
//! records are what the flow table writes for the traffic each case describes (the
//! first packets in wire order, Zeek's history and state, the header facts). The lab
//! and the public captures are the end-to-end cases (`crates/cli/tests/detection.rs`).

use std::net::IpAddr;

use tunnelwatch_detect::{Config, Detection};
use tunnelwatch_model::{
    Alert, Category, Cause, ConnState, Dynamics, FlowRecord, Severity, TcpFacts, TcpHeaderFacts,
    Timestamp,
};

const ATK: &str = "10.77.0.1";
const SRV: &str = "10.77.0.2";

/// A TCP flow record from `orig` to `resp:port` starting at `t` seconds.
fn tcp(orig: &str, resp: &str, port: u16, t: f64, first: &[&str]) -> FlowRecord {
    let from_orig = first.iter().filter(|p| p.starts_with('>')).count() as u64;
    let from_resp = first.len() as u64 - from_orig;
    FlowRecord {
        uid: format!("C{orig}-{port}-{t}"),
        community_id: "1:test".into(),
        ts: Timestamp::from_secs_f64(t),
        last_ts: Timestamp::from_secs_f64(t + 0.001),
        duration: 0.001,
        proto: "tcp".into(),
        ip_proto: 6,
        orig_h: orig.parse().unwrap(),
        orig_p: 40000 + (t as u16 % 20000),
        resp_h: resp.parse().unwrap(),
        resp_p: port,
        service: None,
        orig_pkts: from_orig,
        resp_pkts: from_resp,
        orig_bytes: 0,
        resp_bytes: 0,
        orig_ip_bytes: 40 * from_orig,
        resp_ip_bytes: 40 * from_resp,
        conn_state: ConnState::OTH,
        history: String::new(),
        cause: Cause::End,
        missed_bytes: 0,
        vlan: None,
        inner_vlan: None,
        tunnel_parents: Vec::new(),
        signatures: Vec::new(),
        dynamics: Dynamics::default(),
        tcp: Some(TcpFacts {
            first_packets: first.iter().map(|s| (*s).into()).collect(),
            ..Default::default()
        }),
        icmp: None,
        app: None,
        export: None,
    }
}

/// A complete, ordinary connection with data.
fn normal(orig: &str, resp: &str, port: u16, t: f64) -> FlowRecord {
    let mut r = tcp(orig, resp, port, t, &[">S", "<AS", ">A", ">AP"]);
    r.orig_pkts = 6;
    r.resp_pkts = 5;
    r.orig_bytes = 300;
    r.resp_bytes = 5000;
    r.history = "ShADadFf".into();
    r.conn_state = ConnState::SF;
    r.duration = 0.4;
    r.last_ts = Timestamp::from_secs_f64(t + 0.4);
    r.app = Some(Box::new(tunnelwatch_model::AppFacts {
        http: Some(Box::new(request("GET", "/", Some("example.org")))),
        ..Default::default()
    }));
    r
}

fn run_with(c: Config, records: &[FlowRecord]) -> Vec<Alert> {
    let mut d = Detection::new(c);
    let mut out = Vec::new();
    for r in records {
        d.record(r, &mut out);
    }
    d.finish(&mut out);
    out
}

/// The defaults without the time-series rules (beacon, repeated_fetch,
/// long_connection): the cases here are built as regular series of records, which
/// those rules rightly notice. Their own tests use [`run_series`].
fn config() -> Config {
    let mut c = Config::default();
    c.rules.disable = ["beacon", "repeated_fetch", "long_connection"]
        .map(String::from)
        .to_vec();
    c
}

fn run(records: &[FlowRecord]) -> Vec<Alert> {
    run_with(config(), records)
}

/// Every rule on.
fn run_series(records: &[FlowRecord]) -> Vec<Alert> {
    run_with(Config::default(), records)
}

fn rules(alerts: &[Alert]) -> Vec<&str> {
    let mut v: Vec<&str> = alerts.iter().map(|a| a.detector.as_str()).collect();
    v.sort();
    v.dedup();
    v
}

fn one<'a>(alerts: &'a [Alert], rule: &str) -> &'a Alert {
    let v: Vec<&Alert> = alerts.iter().filter(|a| a.detector == rule).collect();
    assert_eq!(v.len(), 1, "one {rule} alert expected in {alerts:#?}");
    v[0]
}

/// The same pattern against `ports` destination ports.
fn many(
    ports: std::ops::Range<u16>,
    first: &[&str],
    edit: impl Fn(&mut FlowRecord),
) -> Vec<FlowRecord> {
    ports
        .enumerate()
        .map(|(i, p)| {
            let mut r = tcp(ATK, SRV, p, 1000.0 + i as f64 * 0.01, first);
            edit(&mut r);
            r
        })
        .collect()
}

#[test]
fn header_oddities_positive_are_summarised_with_ports_and_counts() {
    let mut r = normal(ATK, SRV, 80, 1000.0);
    let t = r.tcp.as_mut().unwrap();
    t.orig_header = TcpHeaderFacts {
        reserved_bits: 3,
        urg_without_pointer: 1,
        pointer_without_urg: 2,
        bad_options: 1,
        ..Default::default()
    };
    let mut r2 = normal(ATK, SRV, 81, 1001.0);
    r2.tcp.as_mut().unwrap().orig_header.reserved_bits = 1;
    let a = run(&[r, r2]);
    let res = one(&a, "reserved_bits");
    assert_eq!(res.category, Category::TcpAnomaly);
    assert_eq!(res.severity, Severity::Medium);
    assert_eq!(res.evidence["count"], 4);
    assert_eq!(res.evidence["ports"]["80"], 3);
    assert_eq!(res.uids.len(), 2);
    assert!(res.message.contains("ports: 80:3,81"), "{}", res.message);
    for rule in [
        "urg_without_pointer",
        "pointer_without_urg",
        "bad_tcp_option",
    ] {
        assert_eq!(one(&a, rule).severity, Severity::Low);
    }
}

#[test]
fn header_oddities_benign_ecn_and_clean_headers_raise_nothing() {
    let mut r = normal(ATK, SRV, 443, 1000.0);
    r.dynamics.orig.flags = "CEAPSF".into(); // ECN negotiated: not reserved bits
    assert!(run(&[r]).is_empty());
}

#[test]
fn land_positive_and_loopback_client_benign() {
    let mut r = tcp(SRV, SRV, 139, 1000.0, &[">S"]);
    r.orig_p = 139;
    let a = run(&[r]);
    let land = one(&a, "land");
    assert_eq!(
        (land.category, land.severity),
        (Category::Dos, Severity::High)
    );
    // A local client talking to a local server: same address, different ports.
    assert!(rules(&run(&[normal(SRV, SRV, 80, 1000.0)])).is_empty());
}

#[test]
fn winnuke_positive_and_smb_benign() {
    let mut r = normal(ATK, SRV, 139, 1000.0);
    r.dynamics.orig.flags = "UAPSF".into();
    assert_eq!(one(&run(&[r]), "winnuke").category, Category::Dos);
    let mut b = normal(ATK, SRV, 139, 1000.0);
    b.dynamics.orig.flags = "APSF".into();
    assert!(run(&[b]).is_empty());
}

#[test]
fn xmas_and_null_scans_positive_from_one_port_benign_normal_traffic() {
    let mut recs = many(1..4, &[">UPF", "<AR"], |_| {});
    recs.extend(many(10..12, &[">", "<AR"], |_| {}));
    let a = run(&recs);
    let x = one(&a, "xmas_scan");
    assert_eq!((x.category, x.severity), (Category::Scan, Severity::Medium));
    assert_eq!(x.evidence["distinct_ports"], 3);
    assert_eq!(one(&a, "null_scan").evidence["distinct_ports"], 2);
    let benign: Vec<FlowRecord> = (0..20)
        .map(|i| normal(ATK, SRV, 80, 1000.0 + f64::from(i)))
        .collect();
    assert!(run(&benign).is_empty());
}

#[test]
fn fin_and_ack_scans_positive_benign_single_stale_packets() {
    let mut recs = many(20..30, &[">F", "<AR"], |_| {});
    recs.extend(many(30..40, &[">A", "<R"], |_| {}));
    let a = run(&recs);
    assert_eq!(one(&a, "fin_scan").severity, Severity::Medium);
    assert_eq!(one(&a, "ack_scan").evidence["distinct_ports"], 10);
    // A FIN and an ACK with data after the server forgot the connection: one port each.
    let mut stale = many(80..81, &[">FA", "<R"], |_| {});
    stale.extend(many(443..444, &[">AP", "<R"], |r| r.orig_bytes = 100));
    assert!(run(&stale).is_empty());
}

#[test]
fn half_open_closed_positive_benign_client_retrying_a_closed_server() {
    let a = run(&many(1..200, &[">S", "<AR"], |_| {}));
    let s = one(&a, "half_open_closed");
    assert_eq!(s.severity, Severity::High);
    assert_eq!(s.evidence["distinct_ports"], 199);
    // The same client tries port 8080 five times and 3 other ports once: a port hit more
    // than twice means a client retrying, not a scan (seed 004).
    let mut retry = many(8080..8081, &[">S", "<AR"], |_| {});
    for i in 1..5 {
        let mut r = retry[0].clone();
        r.uid = format!("Cretry{i}");
        retry.push(r);
    }
    retry.extend(many(9000..9003, &[">S", "<AR"], |_| {}));
    assert!(!rules(&run(&retry)).contains(&"half_open_closed"));
}

#[test]
fn half_open_open_and_connect_scan_positive_benign_complete_connections() {
    let mut recs = many(1..6, &[">S", "<AS", ">R"], |_| {});
    recs.extend(many(100..106, &[">S", "<AS", ">A", ">AR"], |r| {
        r.orig_pkts = 2
    }));
    let a = run(&recs);
    assert_eq!(one(&a, "half_open_open").evidence["distinct_ports"], 5);
    assert_eq!(one(&a, "connect_scan").evidence["distinct_ports"], 6);
    let benign: Vec<FlowRecord> = (1..30).map(|p| normal(ATK, SRV, p, 1000.0)).collect();
    assert!(run(&benign).is_empty());
}

#[test]
fn unanswered_syns_and_synacks_positive_benign_one_dead_server() {
    let mut recs = many(1..8, &[">S", ">S"], |r| r.resp_pkts = 0);
    recs.extend(many(50..57, &[">S", "<AS", "<AS"], |_| {}));
    let a = run(&recs);
    assert_eq!(one(&a, "syn_no_answer").evidence["flows"], 7);
    assert_eq!(one(&a, "synack_unanswered").evidence["flows"], 7);
    let dead = many(5432..5433, &[">S", ">S", ">S"], |r| r.resp_pkts = 0);
    assert!(run(&dead).is_empty());
}

#[test]
fn unused_connections_positive_dos_benign_keepalive_with_data() {
    let idle = |r: &mut FlowRecord| {
        r.duration = 30.0;
        r.orig_pkts = 3;
        r.resp_pkts = 2;
    };
    let mut recs = Vec::new();
    for i in 0..15 {
        let mut r = tcp(
            ATK,
            SRV,
            80,
            1000.0 + f64::from(i),
            &[">S", "<AS", ">A", ">FA"],
        );
        idle(&mut r);
        recs.push(r);
    }
    let a = run(&recs);
    let u = one(&a, "unused_connection");
    assert_eq!((u.category, u.severity), (Category::Dos, Severity::Medium));
    assert_eq!(u.evidence["count"], 15);
    // Fifteen connections that carried data.
    for r in &mut recs {
        r.orig_bytes = 10;
    }
    assert!(run(&recs).is_empty());
}

#[test]
fn ack_storm_and_zero_window_positive_and_benign() {
    let mut r = normal(ATK, SRV, 23, 1000.0);
    r.tcp.as_mut().unwrap().ack_storm_run = 50;
    r.tcp.as_mut().unwrap().resp_header.zero_window_run = 40;
    let a = run(&[r]);
    assert_eq!(one(&a, "ack_storm").evidence["ack_storm_run"], 50);
    let z = one(&a, "zero_window");
    assert_eq!(z.evidence["side"], "responder");
    assert_eq!(z.category, Category::Dos);
    let mut b = normal(ATK, SRV, 23, 1000.0);
    b.tcp.as_mut().unwrap().ack_storm_run = 3;
    b.tcp.as_mut().unwrap().resp_header.zero_window_run = 4;
    assert!(run(&[b]).is_empty());
}

#[test]
fn syn_flood_positive_from_spoofed_sources_benign_busy_server() {
    let flood: Vec<FlowRecord> = (0..300u32)
        .map(|i| {
            let src = IpAddr::from([10, 77, 1, (i % 250) as u8 + 1]).to_string();
            let mut r = tcp(
                &src,
                SRV,
                80,
                1000.0 + f64::from(i) * 0.001,
                &[">S", "<AS", "<AS"],
            );
            r.history = "Sh".into();
            r.conn_state = ConnState::S1;
            r
        })
        .collect();
    let a = run(&flood);
    let f = one(&a, "syn_flood");
    assert_eq!(f.evidence["count"], 300);
    assert_eq!(f.evidence["distinct_sources"], 250);
    assert_eq!(f.resp_h, Some(SRV.parse().unwrap()));
    assert!(f.severity >= Severity::Medium);
    // 300 complete connections from 250 clients to a busy server.
    let busy: Vec<FlowRecord> = (0..300u32)
        .map(|i| {
            let src = IpAddr::from([10, 77, 1, (i % 250) as u8 + 1]).to_string();
            normal(&src, SRV, 80, 1000.0 + f64::from(i) * 0.001)
        })
        .collect();
    assert!(run(&busy).is_empty());
    // One source trying 300 ports once each is a scan, not a flood.
    let scan = many(1..301, &[">S", "<AR"], |r| r.history = "Sr".into());
    assert!(!rules(&run(&scan)).contains(&"syn_flood"));
}

#[test]
fn flow_flood_positive_benign_below_threshold() {
    let mut c = config();
    c.flood.flows = 100;
    let flows: Vec<FlowRecord> = (0..150)
        .map(|i| normal(ATK, SRV, 53, 1000.0 + f64::from(i) * 0.01))
        .collect();
    assert_eq!(
        one(&run_with(c.clone(), &flows), "flow_flood").evidence["count"],
        150
    );
    assert!(run_with(c, &flows[..60]).is_empty());
}

#[test]
fn port_scan_from_flows_positive_benign_answered() {
    let recs = many(1000..1040, &[">S"], |r| {
        r.resp_pkts = 0;
        r.tcp = None; // as from NetFlow: counters only
        r.conn_state = ConnState::S0;
    });
    let a = run(&recs);
    let p = one(&a, "port_scan");
    assert_eq!(p.evidence["unanswered"], 40);
    assert_eq!(p.evidence["shape"], "vertical");
    let answered: Vec<FlowRecord> = (1000..1040).map(|p| normal(ATK, SRV, p, 1000.0)).collect();
    assert!(run(&answered).is_empty());
}

#[test]
fn thresholds_alert_during_a_long_flow_once_and_not_on_short_ones() {
    let mut interim = normal(ATK, SRV, 443, 1000.0);
    interim.cause = Cause::Status;
    interim.duration = 5400.0;
    let mut fin = interim.clone();
    fin.cause = Cause::End;
    fin.duration = 10800.0;
    let a = run(&[interim, fin]);
    let d = one(&a, "long_duration");
    assert_eq!(d.evidence["interim"], true);
    assert_eq!(d.category, Category::Threshold);
    assert!(d.message.contains("still open"));
    let mut big = normal(ATK, SRV, 443, 1000.0);
    big.resp_bytes = 3 << 30; // a 3 GiB download
    big.resp_pkts = 3_000_000;
    assert_eq!(rules(&run(&[big])), ["many_bytes", "many_packets"]);
    assert!(run(&[normal(ATK, SRV, 443, 1000.0)]).is_empty());
}

#[test]
fn lists_black_white_red_and_min_severity() {
    let scan = many(1..40, &[">S", "<AR"], |_| {});
    let cfg = |toml: &str| Config::parse(toml, "test").unwrap();
    // White: the scanner is a known vulnerability scanner.
    let w = cfg(&format!("[[lists.white]]\nclient = \"{ATK}/32\"\n"));
    assert!(run_with(w, &scan).is_empty());
    // Red: only high alerts from this network (the 39-port scan is medium).
    let r = cfg("[[lists.red]]\nnet = \"10.77.0.0/16\"\nmin_severity = \"high\"\n");
    assert!(!rules(&run_with(r, &scan)).contains(&"half_open_closed"));
    // Black: a flow to the listed server is reported, and alerts about it kept.
    let b = cfg(&format!(
        "[alerts]\nmin_severity = \"high\"\n[[lists.black]]\nserver = \"{SRV}\"\nnote = \"old C2\"\n"
    ));
    let a = run_with(b, &scan);
    let bl = one(&a, "black_list");
    assert_eq!(bl.category, Category::List);
    assert_eq!(bl.evidence["flows"], 39);
    let s = one(&a, "half_open_closed");
    assert_eq!(
        (s.evidence["list"].as_str(), s.severity),
        (Some("black"), Severity::Medium)
    );
    // Disabled rules do not run.
    let off = cfg("[rules]\ndisable = [\"half_open_closed\", \"port_scan\"]\n");
    assert!(run_with(off, &scan).is_empty());
}

#[test]
fn summaries_do_not_depend_on_record_order_and_split_by_period() {
    let mut recs = many(1..30, &[">S", "<AR"], |r| r.conn_state = ConnState::REJ);
    recs.extend(many(1..30, &[">F", "<AR"], |r| {
        r.ts = Timestamp(r.ts.0 + 500_000_000_000);
        r.last_ts = r.ts;
    }));
    let mut forward = run(&recs);
    recs.reverse();
    let mut backward = run(&recs);
    let key = |a: &Alert| (a.detector.clone(), a.ts, a.message.clone());
    forward.sort_by_key(key);
    backward.sort_by_key(key);
    assert_eq!(forward, backward);
    assert_eq!(
        rules(&forward),
        ["fin_scan", "half_open_closed", "port_scan"]
    );
}

#[test]
fn too_many_findings_are_not_listed_port_by_port() {
    let a = run(&many(1..400, &[">UPF", "<AR"], |_| {}));
    let x = one(&a, "xmas_scan");
    assert!(x.message.contains("too many to list"), "{}", x.message);
    assert_eq!(x.severity, Severity::High);
    assert!(x.evidence["ports"].is_null());
    assert_eq!(x.uids.len(), 10);
}

/// A complete connection to `port` with these HTTP / SSH facts.
fn with_app(
    port: u16,
    http: Option<tunnelwatch_model::HttpFacts>,
    ssh: Option<&str>,
) -> FlowRecord {
    let mut r = normal(ATK, SRV, port, 1000.0);
    r.app = Some(Box::new(tunnelwatch_model::AppFacts {
        http: http.map(Box::new),
        ssh: ssh.map(|b| tunnelwatch_model::SshFacts {
            client: Some(b.into()),
            server: Some(b.into()),
        }),
        ..Default::default()
    }));
    r
}

fn request(method: &str, uri: &str, host: Option<&str>) -> tunnelwatch_model::HttpFacts {
    tunnelwatch_model::HttpFacts {
        method: Some(method.into()),
        uri: Some(uri.into()),
        version: Some("1.1".into()),
        host: host.map(Into::into),
        status: Some(200),
        resp_version: Some("1.1".into()),
        ..Default::default()
    }
}

#[test]
fn connect_without_tls_positive_ssh_and_shell_benign_browser() {
    let mut ssh = request("CONNECT", "10.78.0.3:443", Some("10.78.0.3:443"));
    ssh.after_connect = Some("ssh".into());
    let a = run(&[with_app(3128, Some(ssh), Some("SSH-2.0-OpenSSH_9.2p1"))]);
    let c = one(&a, "connect_without_tls");
    assert_eq!((c.category, c.severity), (Category::Tunnel, Severity::High));
    assert_eq!(c.evidence["tunnelled"], "ssh");
    assert!(
        !rules(&a).contains(&"ssh_in_http"),
        "one alert for one tunnel: {a:?}"
    );
    let mut shell = request("CONNECT", "example.org:443", Some("example.org:443"));
    shell.after_connect = Some("other".into());
    assert_eq!(
        rules(&run(&[with_app(3128, Some(shell), None)])),
        ["connect_without_tls"]
    );
    let mut browser = request("CONNECT", "example.org:443", Some("example.org:443"));
    browser.after_connect = Some("tls".into());
    assert!(run(&[with_app(3128, Some(browser), None)]).is_empty());
}

#[test]
fn connect_port_policy_positive_port_25_benign_443() {
    let mut smtp = request("CONNECT", "mail.example:25", Some("mail.example:25"));
    smtp.after_connect = Some("tls".into());
    let a = run(&[with_app(8080, Some(smtp), None)]);
    assert_eq!(one(&a, "connect_port_policy").evidence["port"], 25);
    let c = Config::parse("[http]\nconnect_ports = [443, 25]\n", "t").unwrap();
    let mut ok = request("CONNECT", "mail.example:25", Some("mail.example:25"));
    ok.after_connect = Some("tls".into());
    assert!(run_with(c, &[with_app(8080, Some(ok), None)]).is_empty());
}

#[test]
fn ssh_on_web_and_odd_ports_positive_benign_port_22() {
    let a = run(&[with_app(80, None, Some("SSH-2.0-OpenSSH_9.2p1"))]);
    assert_eq!(one(&a, "ssh_in_http").category, Category::Tunnel);
    let b = run(&[with_app(2222, None, Some("SSH-2.0-OpenSSH_9.2p1"))]);
    assert_eq!(one(&b, "ssh_non_standard_port").severity, Severity::Medium);
    assert!(run(&[with_app(22, None, Some("SSH-2.0-OpenSSH_9.2p1"))]).is_empty());
}

#[test]
fn foreign_protocol_on_web_ports_positive_benign_partial_flows_and_http() {
    let mut shell = normal(ATK, SRV, 443, 1000.0);
    shell.app = None;
    let a = run(&[shell.clone()]);
    assert_eq!(one(&a, "foreign_protocol_on_port").severity, Severity::Low);
    // The start was not seen (no SYN): the first payload may be mid-stream.
    let mut partial = shell.clone();
    partial.history = "DdA".into();
    assert!(run(&[partial]).is_empty());
    assert!(run(&[with_app(80, Some(request("GET", "/", Some("h"))), None)]).is_empty());
}

#[test]
fn http_grammar_rules_positive_and_benign() {
    let a = run(&[
        with_app(80, Some(request("FOO", "/", Some("h"))), None),
        with_app(8080, Some(request("GET", "/", None)), None),
    ]);
    assert_eq!(one(&a, "exotic_method").evidence["method"], "FOO");
    assert_eq!(
        one(&a, "http_without_host").category,
        Category::ProtocolAnomaly
    );
    let mut http10 = request("GET", "/", None);
    http10.version = Some("1.0".into());
    assert!(run(&[
        with_app(80, Some(http10), None),
        with_app(80, Some(request("PROPFIND", "/", Some("h"))), None)
    ])
    .is_empty());
    // A server that answers with HTTP before the client said anything.
    let mut speaks_first = with_app(
        80,
        Some(tunnelwatch_model::HttpFacts {
            status: Some(200),
            resp_version: Some("1.0".into()),
            ..Default::default()
        }),
        None,
    );
    speaks_first.orig_bytes = 0;
    assert_eq!(
        one(&run(&[speaks_first.clone()]), "response_without_request").severity,
        Severity::Medium
    );
    // The client sent bytes the parser did not take for a request (HTTP/0.9, a split
    // request line): not evidence.
    speaks_first.orig_bytes = 120;
    assert!(run(&[speaks_first]).is_empty());
}

#[test]
fn http_rules_alert_once_per_flow_across_interim_records() {
    let mut ssh = request("CONNECT", "x:443", Some("x:443"));
    ssh.after_connect = Some("ssh".into());
    let mut interim = with_app(3128, Some(ssh), Some("SSH-2.0-x"));
    interim.cause = Cause::Status;
    let mut fin = interim.clone();
    fin.cause = Cause::End;
    let a = run(&[interim.clone(), interim, fin]);
    assert_eq!(
        a.iter()
            .filter(|a| a.detector == "connect_without_tls")
            .count(),
        1
    );
}

/// A DNS flow from `client` with these query counters.
fn dns_flow(
    client: &str,
    t: f64,
    first: &str,
    f: impl Fn(&mut tunnelwatch_model::DnsFacts),
) -> FlowRecord {
    let mut r = normal(client, "10.77.0.53", 53, t);
    r.proto = "udp".into();
    r.ip_proto = 17;
    r.tcp = None;
    let mut d = tunnelwatch_model::DnsFacts {
        query: Some(first.into()),
        qtype: Some(1),
        ..Default::default()
    };
    f(&mut d);
    r.app = Some(Box::new(tunnelwatch_model::AppFacts {
        dns: Some(d),
        ..Default::default()
    }));
    r
}

#[test]
fn dns_tunnel_positive_when_metrics_agree_benign_busy_resolver_client() {
    // iodine-like: 200 unique long random NULL queries under one domain.
    let tunnel = dns_flow(ATK, 1000.0, "vaaaakardli.t.example", |d| {
        d.queries = 200;
        d.distinct_names = 200;
        d.name_bytes = 200 * 90;
        d.unusual_qtypes = 200;
        d.subdomain_entropy = 4.2;
    });
    let a = run(&[tunnel]);
    let t = one(&a, "dns_tunnel");
    assert_eq!((t.category, t.severity), (Category::Tunnel, Severity::High));
    assert_eq!(t.evidence["domain"], "t.example");
    assert_eq!(t.evidence["agreeing"], 4);
    // The same volume of ordinary lookups: short names, A/AAAA, many repeats — spread
    // over many flows (one per source port), as a host's resolver library sends them.
    let lookups: Vec<FlowRecord> = (0..200)
        .map(|i| {
            dns_flow(ATK, 1000.0 + f64::from(i), "www.example.org", |d| {
                d.queries = 1;
                d.distinct_names = 1;
                d.name_bytes = 15;
            })
        })
        .collect();
    assert!(run(&lookups).is_empty());
    // Long hashed names alone (a CDN or an anti-virus lookup service) are one metric.
    let cdn = dns_flow(ATK, 1000.0, "d3k1h2x9.cloudfront.example", |d| {
        d.queries = 100;
        d.distinct_names = 30;
        d.name_bytes = 100 * 60;
    });
    assert!(run(&[cdn]).is_empty());
}

#[test]
fn dns_tunnel_long_flow_adds_only_what_is_new_per_interim_record() {
    let mk = |q: u64, cause| {
        let mut r = dns_flow(ATK, 1000.0, "x.t.example", |d| {
            d.queries = q;
            d.distinct_names = q;
            d.name_bytes = q * 80;
            d.unusual_qtypes = q;
        });
        r.cause = cause;
        r
    };
    // Three records of one flow: 30, 60 then 90 queries in total; counted once → 90.
    let a = run(&[
        mk(30, Cause::Status),
        mk(60, Cause::Status),
        mk(90, Cause::End),
    ]);
    assert_eq!(one(&a, "dns_tunnel").evidence["queries"], 90);
}

/// An ICMP echo flow with these request and reply payload sizes.
fn echo(req: tunnelwatch_model::Stats, rep: tunnelwatch_model::Stats, pkts: u64) -> FlowRecord {
    let mut r = normal(ATK, SRV, 0, 1000.0);
    r.proto = "icmp".into();
    r.ip_proto = 1;
    r.orig_p = 8;
    r.tcp = None;
    r.app = None;
    r.orig_pkts = pkts;
    r.resp_pkts = pkts;
    r.icmp = Some(tunnelwatch_model::IcmpFacts {
        echo_ids: vec![4711],
        ..Default::default()
    });
    r.dynamics.orig.size = Some(req);
    r.dynamics.resp.size = Some(rep);
    r
}

fn sizes(mean: f64, min: f64, max: f64, stddev: f64) -> tunnelwatch_model::Stats {
    tunnelwatch_model::Stats {
        mean,
        min,
        max,
        stddev,
    }
}

#[test]
fn icmp_tunnel_positive_ptunnel_like_benign_ping_and_mtu_probe() {
    // ptunnel-ng in the tunnel lab: requests mean 204 bytes, replies mean 552, 28–1052.
    let t = echo(
        sizes(204.0, 28.0, 1052.0, 301.7),
        sizes(551.7, 28.0, 1052.0, 464.2),
        25,
    );
    let a = run(&[t]);
    let i = one(&a, "icmp_tunnel");
    assert_eq!((i.category, i.severity), (Category::Tunnel, Severity::High));
    // Ping: one size, mirrored.
    assert!(run(&[echo(
        sizes(56.0, 56.0, 56.0, 0.0),
        sizes(56.0, 56.0, 56.0, 0.0),
        20
    )])
    .is_empty());
    // A path-MTU probe: varying and large, but every reply mirrors its request.
    let mtu = sizes(900.0, 500.0, 1472.0, 300.0);
    assert!(run(&[echo(mtu, mtu, 20)]).is_empty());
}

#[test]
fn upload_volume_positive_post_benign_download_and_small_upload() {
    let mut post = normal(ATK, SRV, 80, 1000.0);
    post.orig_bytes = 3 << 20;
    post.resp_bytes = 300;
    post.app = Some(Box::new(tunnelwatch_model::AppFacts {
        http: Some(Box::new(request("POST", "/upload", Some("h")))),
        ..Default::default()
    }));
    let a = run(&[post.clone()]);
    let u = one(&a, "upload_volume");
    assert_eq!(
        (u.category, u.severity),
        (Category::Threshold, Severity::Medium)
    );
    // The same bytes over SSH (scp up): low.
    let mut scp = post.clone();
    scp.app = None;
    scp.resp_p = 22;
    assert_eq!(one(&run(&[scp]), "upload_volume").severity, Severity::Low);
    // A download, and a small upload.
    let mut down = post.clone();
    std::mem::swap(&mut down.orig_bytes, &mut down.resp_bytes);
    let mut small = post;
    small.orig_bytes = 100_000;
    assert!(run(&[down, small]).is_empty());
}

/// An interactive flow's keystroke and burst counts: `(keys, bursts, small, typed)` per
/// side, originator first.
fn typing(mut r: FlowRecord, orig: (u64, u64, u64, u64), resp: (u64, u64, u64, u64)) -> FlowRecord {
    for (d, (k, n, s, t)) in [(&mut r.dynamics.orig, orig), (&mut r.dynamics.resp, resp)] {
        d.keystrokes = k;
        d.bursts = (n > 0).then_some(tunnelwatch_model::Bursts {
            count: n,
            small: s,
            typed: t,
        });
    }
    r
}

#[test]
fn keystrokes_positive_ssh_session_benign_chatty_protocol() {
    // The tunnel lab's OpenSSH 9.2 session: 87 of the client's 98 bursts were keys.
    let mut ssh = normal(ATK, SRV, 22, 1000.0);
    ssh.app = None;
    ssh.service = Some("ssh".into());
    let s = typing(ssh.clone(), (87, 98, 92, 77), (0, 114, 103, 77));
    let a = run(&[s]);
    let k = one(&a, "keystrokes");
    assert_eq!(
        (k.category, k.severity),
        (Category::CovertChannel, Severity::Low)
    );
    assert_eq!(
        rules(&a),
        ["keystrokes"],
        "typing in SSH on port 22 is nothing more"
    );
    // A TLS app whose small records sometimes look like keys: 15 of 85 bursts.
    let chatty = typing(ssh, (0, 109, 63, 36), (15, 85, 40, 24));
    assert!(run(&[chatty]).is_empty());
}

#[test]
fn reverse_shell_positive_typed_back_and_line_mode_benign_server_first_protocols() {
    // socat pty shell to port 443: the operator at the listener typed 83 keys.
    let mut pty = normal(ATK, SRV, 443, 1000.0);
    pty.app = None;
    let pty = typing(pty, (0, 107, 106, 85), (83, 88, 88, 76));
    let a = run(&[pty]);
    let r = one(&a, "reverse_shell");
    assert_eq!(
        (r.category, r.severity),
        (Category::CovertChannel, Severity::High)
    );
    // ncat -e /bin/sh to port 80: the listener spoke first, 8 command lines, output back.
    let mut line = normal(ATK, SRV, 80, 1100.0);
    line.app = None;
    line.orig_bytes = 3700;
    line.resp_bytes = 58;
    line.tcp.as_mut().unwrap().first_data = Some("resp".into());
    let line = typing(line, (0, 8, 6, 0), (0, 8, 8, 0));
    assert_eq!(
        one(&run(std::slice::from_ref(&line)), "reverse_shell").severity,
        Severity::High
    );
    // The same through a proxy's CONNECT: the far end spoke first inside the tunnel.
    let mut via = line.clone();
    via.resp_p = 3128;
    via.tcp.as_mut().unwrap().first_data = Some("orig".into());
    let mut connect = request("CONNECT", "10.77.0.9:443", Some("10.77.0.9:443"));
    connect.status = Some(200);
    connect.after_connect = Some("server_first".into());
    via.app = Some(Box::new(tunnelwatch_model::AppFacts {
        http: Some(Box::new(connect)),
        ..Default::default()
    }));
    assert!(rules(&run(&[via])).contains(&"reverse_shell"));
    // Server-first protocols on their own ports (SMTP, FTP banners), an HTTP server
    // that answered more than it got, and UDP "typing back" (no client or server).
    let mut smtp = line.clone();
    smtp.resp_p = 25;
    let mut web = line.clone();
    web.tcp.as_mut().unwrap().first_data = Some("orig".into());
    let mut udp = typing(
        normal(ATK, SRV, 17501, 1200.0),
        (0, 797, 797, 0),
        (60, 790, 789, 0),
    );
    udp.ip_proto = 17;
    udp.proto = "udp".into();
    udp.app = None;
    assert!(!rules(&run(&[smtp, web, udp])).contains(&"reverse_shell"));
}

#[test]
fn interactive_in_other_protocol_positive_tls_icmp_httptunnel_benign_ssh_and_media() {
    // SSH inside stunnel's TLS to 443: 37 keys.
    let mut tls = normal(ATK, SRV, 443, 1000.0);
    tls.service = Some("ssl".into());
    tls.app = None;
    let t = typing(tls.clone(), (37, 50, 41, 33), (0, 59, 48, 33));
    let a = run(&[t]);
    let i = one(&a, "interactive_in_other_protocol");
    assert_eq!((i.category, i.severity), (Category::Tunnel, Severity::High));
    assert_eq!(i.evidence["claimed"], "ssl");
    // GNU httptunnel's upload request: 33 typed bursts of 46, the proxy silent.
    let mut post = normal(ATK, SRV, 3128, 1100.0);
    post.service = Some("http".into());
    let post = typing(post, (0, 46, 41, 33), (0, 0, 0, 0));
    assert!(rules(&run(&[post])).contains(&"interactive_in_other_protocol"));
    // The same keys in SSH on port 22; a TCP/443 call whose server sends small
    // messages at a typing pace while the client streams (not one-way); QUIC on
    // UDP 443 with a few key-like exchanges.
    let mut ssh = tls.clone();
    ssh.resp_p = 22;
    ssh.service = Some("ssh".into());
    let ssh = typing(ssh, (37, 50, 41, 33), (0, 59, 48, 33));
    let mut call = tls.clone();
    call.service = None;
    let call = typing(call, (0, 371, 15, 3), (0, 85, 82, 68));
    let mut quic = typing(tls, (2, 142, 99, 52), (12, 149, 85, 43));
    quic.ip_proto = 17;
    quic.proto = "udp".into();
    quic.service = None;
    let a = run(&[ssh, call, quic]);
    assert!(
        !rules(&a).contains(&"interactive_in_other_protocol"),
        "{a:#?}"
    );
}

/// A deterministic stream of numbers in [0, 1) (a 64-bit LCG), for jitter.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One HTTP GET of `url` on `host` from ATK at `t`, `bytes` sent, as its own connection.
fn fetch(host: &str, url: &str, t: f64, bytes: u64, n: usize) -> FlowRecord {
    let mut r = normal(ATK, SRV, 443, t);
    r.uid = format!("Cfetch{n}-{t}");
    r.orig_bytes = bytes;
    r.app = Some(Box::new(tunnelwatch_model::AppFacts {
        http: Some(Box::new(request("GET", url, Some(host)))),
        ..Default::default()
    }));
    r
}

fn series(times: &[f64], sizes: impl Fn(usize) -> u64) -> Vec<FlowRecord> {
    times
        .iter()
        .enumerate()
        .map(|(i, t)| fetch("cdn.example", &format!("/r/{i}"), *t, sizes(i), i))
        .collect()
}

fn beacons(a: &[Alert]) -> Vec<&Alert> {
    a.iter().filter(|a| a.detector == "beacon").collect()
}

#[test]
fn beacon_positive_jitter_and_sleep_schedule_benign_browsing_updates_bursts() {
    let mut rng = Lcg(7);
    // Cobalt-Strike-like: 60 s sleep with 30 % jitter (each interval 42-60 s), 3 hours.
    let mut t = 1000.0;
    let jittered: Vec<f64> = (0..180)
        .map(|_| {
            t += 60.0 * (1.0 - 0.3 * rng.next());
            t
        })
        .collect();
    let a = run_series(&series(&jittered, |_| 310));
    let b = beacons(&a);
    assert!(!b.is_empty(), "jittered beacon missed: {a:#?}");
    assert!(b.iter().all(|x| x.category == Category::Beacon));
    assert!(b
        .iter()
        .any(|x| x.evidence["series"] == "name" && x.severity >= Severity::Medium));
    // A sleep schedule: 6 check-ins 5 min ± 10 % apart at 9:00 each day, asleep the
    // rest of the day, 4 days: 3 of the 23 intervals are sleeps.
    let mut times = Vec::new();
    for day in 0..4 {
        let mut t = 86_400.0 * f64::from(day) + 9.0 * 3600.0;
        for _ in 0..6 {
            times.push(t);
            t += 300.0 * (0.9 + 0.2 * rng.next());
        }
    }
    let a = run_series(&series(&times, |i| 200 + (i % 3) as u64));
    let b = beacons(&a);
    assert!(
        b.iter()
            .any(|x| x.evidence["sleeps"].as_u64().unwrap() >= 1 && x.severity >= Severity::Medium),
        "beacon with a sleep schedule missed: {a:#?}"
    );
    // A person browsing: exponential gaps (mean 90 s) and varied sizes.
    let mut t = 1000.0;
    let browsing: Vec<f64> = (0..60)
        .map(|_| {
            t += -90.0 * (1.0 - rng.next()).ln();
            t
        })
        .collect();
    let sizes: Vec<u64> = (0..60)
        .map(|_| 200 + (rng.next() * 3000.0) as u64)
        .collect();
    assert!(beacons(&run_series(&series(&browsing, |i| sizes[i]))).is_empty());
    // An updater: 12 checks 1-6 s apart (the lab's benign_update, CV ~0.6), and a page
    // loading 30 resources 50 ms apart.
    let mut t = 1000.0;
    let updates: Vec<f64> = (0..12)
        .map(|_| {
            t += 1.0 + 5.0 * rng.next();
            t
        })
        .collect();
    assert!(beacons(&run_series(&series(&updates, |_| 180))).is_empty());
    let page: Vec<f64> = (0..30).map(|i| 1000.0 + 0.05 * f64::from(i)).collect();
    assert!(beacons(&run_series(&series(&page, |_| 400))).is_empty());
}

/// Forty fetches of one name 30 s apart, 90 bytes each: a beacon.
fn check_ins() -> Vec<FlowRecord> {
    let times: Vec<f64> = (0..40).map(|i| 1000.0 + 30.0 * f64::from(i)).collect();
    series(&times, |_| 90)
}

#[test]
fn beacon_keys_by_name_across_addresses_and_ignores_multicast() {
    // One name, a different server address for every check-in: the ip series never
    // fill, the name series does.
    let mut recs = check_ins();
    for (i, r) in recs.iter_mut().enumerate() {
        r.resp_h = format!("203.0.113.{}", i + 1).parse().unwrap();
    }
    let a = run_series(&recs);
    let b = beacons(&a);
    assert!(!b.is_empty());
    assert!(b.iter().all(|x| x.evidence["series"] == "name"), "{a:#?}");
    assert!(b[0].evidence["servers"].as_u64().unwrap() >= 10);
    // mDNS every 36 s to 224.0.0.251.
    let mut mdns = series(
        &(0..40)
            .map(|i| 1000.0 + 36.0 * f64::from(i))
            .collect::<Vec<_>>(),
        |_| 40,
    );
    for r in &mut mdns {
        r.resp_h = "224.0.0.251".parse().unwrap();
        r.app = None;
    }
    assert!(beacons(&run_series(&mdns)).is_empty());
}

#[test]
fn beacon_alerts_keep_the_first_connection() {
    // A series' first connection is kept compactly until the second arrives (most
    // never get one): its uid, Community ID and server must still be in the alert.
    let mut recs = check_ins();
    for (i, r) in recs.iter_mut().enumerate() {
        r.community_id = format!("1:c{i}");
    }
    recs[0].resp_h = "203.0.113.1".parse().unwrap();
    let a = run_series(&recs);
    let b = beacons(&a);
    let name = b
        .iter()
        .find(|x| x.evidence["series"] == "name")
        .unwrap_or_else(|| panic!("name series missed: {a:#?}"));
    assert_eq!(name.uids[0], recs[0].uid);
    assert_eq!(name.uids[1], recs[1].uid);
    assert_eq!(name.community_id.as_deref(), Some("1:c0"));
    assert_eq!(name.evidence["servers"], 2, "{name:#?}");
    assert_eq!(name.resp_h, None, "two servers: none named");
    // The address series of SRV starts at the second record.
    let ip = b
        .iter()
        .find(|x| x.evidence["series"] == "ip")
        .unwrap_or_else(|| panic!("ip series missed: {a:#?}"));
    assert_eq!(ip.uids[0], recs[1].uid);
    assert_eq!(ip.community_id.as_deref(), Some("1:c1"));
    assert_eq!(ip.resp_h, Some(SRV.parse().unwrap()));
    assert_eq!(ip.evidence["key"], format!("{SRV}:443/tcp"));
}

#[test]
fn repeated_fetch_positive_one_url_too_often_benign_many_urls() {
    let same: Vec<FlowRecord> = (0..25)
        .map(|i| {
            fetch(
                "shop.example",
                "/api/status",
                1000.0 + 0.7 * f64::from(i),
                120,
                i as usize,
            )
        })
        .collect();
    let a = run_series(&same);
    let f = one(&a, "repeated_fetch");
    assert_eq!((f.category, f.severity), (Category::Beacon, Severity::Low));
    assert_eq!(f.evidence["url"], "shop.example/api/status");
    // 25 different pages, and the same page 25 times over an hour.
    let pages = series(
        &(0..25)
            .map(|i| 1000.0 + 0.7 * f64::from(i))
            .collect::<Vec<_>>(),
        |_| 120,
    );
    let slow: Vec<FlowRecord> = (0..25)
        .map(|i| {
            fetch(
                "shop.example",
                "/api/status",
                1000.0 + 150.0 * f64::from(i),
                120,
                i as usize,
            )
        })
        .collect();
    assert!(!rules(&run_series(&pages)).contains(&"repeated_fetch"));
    assert!(!rules(&run_series(&slow)).contains(&"repeated_fetch"));
}

#[test]
fn long_connection_positive_open_flow_crossing_buckets_benign_short_flows() {
    // One connection reported every 30 min by interim records for 9 hours.
    let mut recs = Vec::new();
    for k in 1..=18 {
        let mut r = normal(ATK, SRV, 443, 1000.0);
        r.cause = if k == 18 { Cause::End } else { Cause::Status };
        r.duration = 1800.0 * f64::from(k);
        r.last_ts = Timestamp::from_secs_f64(1000.0 + r.duration);
        recs.push(r);
    }
    let a = run_series(&recs);
    let sev: Vec<Severity> = a
        .iter()
        .filter(|a| a.detector == "long_connection")
        .map(|a| a.severity)
        .collect();
    assert_eq!(
        sev,
        [Severity::Low, Severity::Low, Severity::Medium],
        "1 h, 4 h, 8 h"
    );
    // Many short connections adding up to 20 minutes.
    let short: Vec<FlowRecord> = (0..40)
        .map(|i| {
            let mut r = normal(ATK, SRV, 443, 1000.0 + 60.0 * f64::from(i));
            r.duration = 30.0;
            r
        })
        .collect();
    assert!(!rules(&run_series(&short)).contains(&"long_connection"));
}

#[test]
fn signature_positive_rule_category_and_severity_benign_no_hit_or_unknown_rule() {
    let mut r = normal(ATK, SRV, 3128, 1000.0);
    r.signatures = vec![tunnelwatch_model::SignatureHit {
        name: "ssh_banner".into(),
        dir: "orig".into(),
        offset: 80,
    }];
    let a = run(&[r.clone()]);
    let s = one(&a, "signature");
    assert_eq!((s.category, s.severity), (Category::Tunnel, Severity::High));
    assert_eq!(s.evidence["offset"], 80);
    // A shell rule carries its own category; an interim then final record alert once.
    let mut shell = r.clone();
    shell.signatures[0].name = "shell_no_job_control".into();
    shell.cause = Cause::Status;
    let mut last = shell.clone();
    last.cause = Cause::End;
    let a = run(&[shell, last]);
    assert_eq!(one(&a, "signature").category, Category::CovertChannel);
    // No hit, or a hit of a rule no longer configured.
    let mut gone = r.clone();
    gone.signatures[0].name = "not_a_rule".into();
    r.signatures.clear();
    assert!(run(&[r, gone]).is_empty());
}

#[test]
fn shipped_signatures_parse_and_compile() {
    let c = Config::default();
    assert!(c.signatures.rules.len() >= 10);
    for r in &c.signatures.rules {
        r.bytes().unwrap_or_else(|e| panic!("{}: {e}", r.name));
    }
    let off = Config::parse("[signatures]\nbuiltin = false\n", "t").unwrap();
    assert!(off.signatures.rules.is_empty());
}

/// A DNS flow of `pkts` packets over `secs` seconds to `resp:port`.
fn dns_metrics(resp: &str, port: u16, t: f64, pkts: u64, secs: f64) -> FlowRecord {
    let mut r = normal(ATK, resp, port, t);
    r.uid = format!("Cdns-{t}");
    r.app = None;
    r.ip_proto = if port == 53 { 17 } else { 6 };
    r.proto = if port == 53 { "udp" } else { "tcp" }.into();
    r.orig_pkts = pkts / 2;
    r.resp_pkts = pkts - pkts / 2;
    r.duration = secs;
    r.last_ts = Timestamp::from_secs_f64(t + secs);
    r
}

#[test]
fn dns_tunnel_flow_positive_long_busy_flows_benign_lookups_and_one_metric() {
    // iodine over one UDP 5-tuple: 434 packets in 24 s.
    let a = run(&[dns_metrics("10.0.2.20", 53, 1000.0, 434, 24.5)]);
    let d = one(&a, "dns_tunnel_flow");
    assert_eq!(
        (d.category, d.severity),
        (Category::Tunnel, Severity::Medium)
    );
    assert_eq!(d.evidence["carrier"], "DNS");
    // dns2tcp through DoH to 1.1.1.1: low (encrypted DNS).
    let a = run(&[dns_metrics("1.1.1.1", 443, 1000.0, 50, 8.1)]);
    assert_eq!(one(&a, "dns_tunnel_flow").severity, Severity::Low);
    // Lookups; a long but quiet flow (one metric); many packets at once (one metric);
    // the same long flow to a web server on 443 (not DNS).
    let mut v: Vec<FlowRecord> = (0..100)
        .map(|i| dns_metrics(SRV, 53, 1000.0 + f64::from(i), 2, 0.02))
        .collect();
    v.push(dns_metrics(SRV, 53, 2000.0, 4, 9.0));
    v.push(dns_metrics(SRV, 53, 2100.0, 40, 0.3));
    let mut web = dns_metrics(SRV, 443, 2200.0, 434, 24.5);
    web.app = normal(ATK, SRV, 443, 0.0).app;
    v.push(web);
    let a = run(&v);
    assert!(a.is_empty(), "{a:#?}");
    // The profile is learnt: where DNS flows are routinely long and busy (a resolver
    // on one source port), such a flow is not an anomaly.
    let mut busy: Vec<FlowRecord> = (0..300)
        .map(|i| {
            dns_metrics(
                SRV,
                53,
                1000.0 + f64::from(i),
                400 + (i % 60) as u64,
                20.0 + f64::from(i % 9),
            )
        })
        .collect();
    busy.push(dns_metrics(SRV, 53, 5000.0, 434, 24.5));
    let a = run(&busy);
    assert!(
        a.len() < 10,
        "{} alerts: the profile did not learn",
        a.len()
    );
    assert!(!a.iter().any(|x| x.uids[0] == "Cdns-5000"));
}

/// An interactive SSH session typed by its originator, with ON periods at `onsets`
/// seconds after `t`.
fn session(orig: &str, resp: &str, t: f64, onsets: &[f64]) -> FlowRecord {
    let mut r = normal(orig, resp, 22, t);
    r.uid = format!("Cssh-{orig}-{resp}-{t}");
    r.app = None;
    r.duration = 60.0;
    r.last_ts = Timestamp::from_secs_f64(t + 60.0);
    r.dynamics.orig.keystrokes = 40;
    r.dynamics.orig.onsets = onsets.iter().map(|o| t + o).collect();
    r
}

#[test]
fn stepping_stone_positive_relayed_typing_benign_independent_sessions() {
    const RELAY: &str = "10.77.0.5";
    let on = [0.5, 3.1, 7.4, 9.0, 14.2, 19.8, 25.3, 31.0];
    // Typed into the relay, and from it onward a few ms later.
    let inbound = session(ATK, RELAY, 1000.0, &on);
    let relayed: Vec<f64> = on.iter().map(|o| o + 0.004).collect();
    let outbound = session(
        RELAY,
        SRV,
        1000.2,
        &relayed.iter().map(|o| o - 0.2).collect::<Vec<_>>(),
    );
    let a = run(&[inbound.clone(), outbound.clone()]);
    let s = one(&a, "stepping_stone");
    assert_eq!(
        (s.category, s.severity),
        (Category::Tunnel, Severity::Medium)
    );
    assert_eq!(s.evidence["relay"], RELAY);
    assert_eq!(s.evidence["matched_onsets"], 8);
    // Either order of arrival.
    assert!(rules(&run(&[outbound.clone(), inbound.clone()])).contains(&"stepping_stone"));
    // The relay's own user typing elsewhere at the same time: other rhythm.
    let other = session(
        RELAY,
        SRV,
        1000.0,
        &[1.7, 4.9, 6.2, 11.8, 16.5, 22.0, 27.7, 33.3],
    );
    // The same rhythm, but not through one host, or at another time.
    let unlinked = session("10.77.0.9", SRV, 1000.0, &on);
    let later = session(RELAY, SRV, 2000.0, &on);
    for x in [other, unlinked, later] {
        assert!(!rules(&run(&[inbound.clone(), x])).contains(&"stepping_stone"));
    }
}

#[test]
fn upload_volume_per_pair_positive_small_posts_add_up_benign_browsing() {
    // 40 POSTs of 400 KB to one server within an hour: each under 1 MiB, 16 MB in all.
    let posts: Vec<FlowRecord> = (0..40)
        .map(|i| {
            let mut r = normal(ATK, SRV, 443, 1000.0 + 60.0 * f64::from(i));
            r.uid = format!("Cpost{i}");
            r.orig_bytes = 400_000;
            r.resp_bytes = 300;
            r.app = Some(Box::new(tunnelwatch_model::AppFacts {
                http: Some(Box::new(request("POST", "/u", Some("h")))),
                ..Default::default()
            }));
            r
        })
        .collect();
    let a = run(&posts);
    let u = one(&a, "upload_volume");
    assert_eq!(u.evidence["scope"], "pair");
    assert_eq!(u.severity, Severity::Medium);
    // The same bytes as downloads, and uploads spread over a day (other windows).
    let mut down = posts.clone();
    for r in &mut down {
        std::mem::swap(&mut r.orig_bytes, &mut r.resp_bytes);
    }
    let mut slow = posts.clone();
    for (i, r) in slow.iter_mut().enumerate() {
        r.ts = Timestamp::from_secs_f64(1000.0 + 7200.0 * i as f64);
        r.last_ts = r.ts;
    }
    assert!(run(&down).is_empty());
    assert!(run(&slow).is_empty());
}

#[test]
fn tcp_replay_positive_acks_before_the_synack_benign_handshake_and_asymmetric_route() {
    // A blind connection streamed at once: SYN, the ACK of a predicted SYN/ACK, data;
    // the target's real SYN/ACK comes after.
    let blind = tcp(ATK, SRV, 513, 1000.0, &[">S", ">A", ">AP", "<AS"]);
    let a = run(&[blind]);
    let r = one(&a, "tcp_replay");
    assert_eq!(
        (r.category, r.severity),
        (Category::TcpAnomaly, Severity::High)
    );
    assert_eq!(r.evidence["check"], "out_of_phase");
    // A normal handshake; a sensor that sees only the client's side (no SYN/ACK); a
    // retransmitted SYN.
    for first in [
        &[">S", "<AS", ">A", ">AP"][..],
        &[">S", ">A", ">AP", ">AF"],
        &[">S", ">S", "<AS", ">A"],
    ] {
        let a = run(&[tcp(ATK, SRV, 513, 1000.0, first)]);
        assert!(!rules(&a).contains(&"tcp_replay"), "{first:?}: {a:#?}");
    }
}

#[test]
fn icmp_tunnel_positive_random_payloads_benign_large_pattern_ping() {
    // A tunnel that pads both ways to 1024 bytes of encrypted data: mirrored sizes,
    // random content.
    let even = sizes(1024.0, 1024.0, 1024.0, 0.0);
    let mut t = echo(even, even, 20);
    t.icmp.as_mut().unwrap().payload_entropy = Some(7.8);
    let a = run(&[t.clone()]);
    let i = one(&a, "icmp_tunnel");
    assert_eq!(
        (i.category, i.severity),
        (Category::Tunnel, Severity::Medium)
    );
    assert_eq!(i.evidence["payload_entropy"], 7.8);
    // `ping -s 1024`: the same sizes, iputils' counting pattern (near 0 bits a byte).
    t.icmp.as_mut().unwrap().payload_entropy = Some(0.1);
    assert!(run(&[t]).is_empty());
}

#[test]
fn the_first_flows_kept_for_an_alert_do_not_depend_on_arrival_order() {
    use tunnelwatch_detect::summary::{keep_first, FirstFlows};
    let records: Vec<FlowRecord> = (0..40)
        .map(|i| tcp(ATK, SRV, 80, 100.0 + f64::from(i % 13) * 0.5, &[">S"]))
        .collect();
    let mut want: Vec<(Timestamp, String)> =
        records.iter().map(|r| (r.ts, r.uid.clone())).collect();
    want.sort();
    want.truncate(5);
    // In order, reversed, and interleaved (equal start times and uids included).
    let orders: [Vec<usize>; 3] = [
        (0..40).collect(),
        (0..40).rev().collect(),
        (0..40).map(|i| (i * 7) % 40).collect(),
    ];
    for order in orders {
        let mut kept = FirstFlows::new();
        for &i in &order {
            keep_first(&mut kept, &records[i], 5);
        }
        let got: Vec<(Timestamp, String)> = kept.into_iter().map(|k| (k.0, k.1)).collect();
        assert_eq!(got, want, "{order:?}");
    }
}
