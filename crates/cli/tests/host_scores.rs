//! Host scoring end to end (`docs/specs/scoring.md`): lab captures of an nmap SYN scan,
//! a reverse shell on port 443 and benign web browsing are read into one store, then
//! `alerts --hosts` ranks the attacking hosts first with the rules that convicted them,
//! the client view carries each client's score, and bad input gives a one-line error
//! and a non-zero exit.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelwatch"))
        .env_remove("TUNNELWATCH_NO_STORE")
        .env_remove("TUNNELWATCH_DB")
        .env_remove("TUNNELWATCH_CONFIG")
        .args(args)
        .output()
        .expect("run tunnelwatch")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host_scores");
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

const SCANNER: &str = "10.77.0.1";
const SHELL_CLIENT: &str = "10.78.0.1";
const SHELL_LISTENER: &str = "10.78.0.4";
const WEB_CLIENTS: [&str; 2] = ["10.77.0.3", "fd77::3"];

/// A store holding the three lab captures, read one after the other.
fn lab_store(name: &str) -> PathBuf {
    let p = tmp(name);
    let lab = support::workspace().join("tests/lab");
    for c in [
        "captures/scan_syn.pcap",
        "tunnels/captures/reverse_shell_443.pcap",
        "captures/benign_web.pcap",
    ] {
        let cap = lab.join(c);
        let r = tw(&[
            "read",
            s(&cap),
            "--db",
            s(&p),
            "--flows",
            "/dev/null",
            "--no-progress",
        ]);
        assert!(r.status.success(), "{c}: {}", stderr(&r));
    }
    p
}

fn hosts_json(db: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["alerts", "--hosts", "--format", "json", "--db", s(db)];
    args.extend_from_slice(extra);
    let o = tw(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn rules_of(h: &Value) -> Vec<&str> {
    h["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rule"].as_str().unwrap())
        .collect()
}

fn find<'a>(hosts: &'a [Value], ip: &str) -> Option<&'a Value> {
    hosts.iter().find(|h| h["host"] == ip)
}

#[test]
fn alerts_hosts_ranks_the_attackers_first_with_the_rules_that_convicted_them() {
    let db = lab_store("lab.db");
    let hosts = hosts_json(&db, &[]);
    let order: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    // The reverse shell's client (five rules on its one connection, each to a
    // destination only it contacted), the scanner (two high scan rules and a low one),
    // then the shell's listener (the operator typed there: reverse_shell alone).
    assert_eq!(order, [SHELL_CLIENT, SCANNER, SHELL_LISTENER], "{hosts:#?}");
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["rank"], i + 1);
    }
    let shell = &hosts[0];
    let rules = rules_of(shell);
    for r in [
        "reverse_shell",
        "signature",
        "interactive_in_other_protocol",
    ] {
        assert!(
            rules[..3].contains(&r),
            "{r} among the top three: {rules:?}"
        );
    }
    assert!(rules.contains(&"keystrokes"), "{rules:?}");
    assert_eq!(shell["alarm"], true);
    assert!(shell["probability"].as_f64().unwrap() > 0.99);
    // Each rule on a destination one client contacted: the likelihood ratio doubled.
    assert!(shell["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["rare_destination"] == 1));
    let scan = &hosts[1];
    assert_eq!(
        rules_of(scan),
        ["half_open_closed", "port_scan", "half_open_open"]
    );
    assert_eq!(scan["alarm"], true);
    // The scanned host also served a web client: not rare.
    assert_eq!(scan["contributions"][0]["rare_destination"], 0);
    let sum: f64 = scan["prior_log_odds"].as_f64().unwrap()
        + scan["contributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["log_lr"].as_f64().unwrap())
            .sum::<f64>();
    assert!((sum - scan["log_odds"].as_f64().unwrap()).abs() < 1e-9);
    let listener = &hosts[2];
    assert_eq!(rules_of(listener), ["reverse_shell"]);
    assert_eq!(listener["contributions"][0]["roles"][0], "resp");
    assert_eq!(listener["alarm"], false);
    // The benign web clients raised nothing: not ranked at all.
    for w in WEB_CLIENTS {
        assert!(find(&hosts, w).is_none(), "{w} is benign");
    }
    // The same store gives the same ranking, byte for byte.
    assert_eq!(hosts, hosts_json(&db, &[]));

    // The table: a header, one line per host; --top cuts it.
    let o = tw(&["alerts", "--hosts", "--db", s(&db), "--top", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("probability") && lines[0].contains("log-odds"));
    assert!(lines[1].contains(SHELL_CLIENT) && lines[1].contains("reverse_shell"));
    assert!(lines[2].contains(SCANNER) && lines[2].contains("half_open_closed"));

    // The client view carries the same scores; a client without alerts has the prior.
    let o = tw(&["views", "clients", "--db", s(&db), "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let view: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let nodes = view["trees"][0]["nodes"].as_array().unwrap();
    let score = |ip: &str| {
        nodes.iter().find(|n| n["host"] == ip).unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(score(SHELL_CLIENT), shell["probability"].as_f64().unwrap());
    assert_eq!(score(SCANNER), scan["probability"].as_f64().unwrap());
    for w in WEB_CLIENTS {
        assert!((score(w) - 0.001).abs() < 1e-12, "{w}: {}", score(w));
    }
    let o = tw(&["views", "clients", "--db", s(&db), "--depth", "1"]);
    assert!(stdout(&o).contains(&format!("o {SCANNER} (")) && stdout(&o).contains(", score 0.88"));
}

#[test]
fn alerts_hosts_reads_scoring_and_lists_from_the_config() {
    let db = lab_store("config.db");
    let conf = tmp("scoring.toml");
    // The scanner white-listed (a vulnerability scanner), the listener black-listed,
    // scans weighed as evidence of little worth.
    std::fs::write(
        &conf,
        format!(
            "[[lists.white]]\nclient = \"{SCANNER}\"\n\
             [[lists.black]]\nnet = \"{SHELL_LISTENER}\"\n\
             [scoring.rules]\nkeystrokes = 1.0\n"
        ),
    )
    .unwrap();
    let hosts = hosts_json(&db, &["--config", s(&conf)]);
    assert!(find(&hosts, SCANNER).is_none(), "white-listed: {hosts:#?}");
    let listener = find(&hosts, SHELL_LISTENER).unwrap();
    assert_eq!(listener["black_listed"], true);
    assert!(listener["prior_log_odds"].as_f64().unwrap() > -2.31);
    let shell = find(&hosts, SHELL_CLIENT).unwrap();
    let k = shell["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "keystrokes")
        .unwrap();
    // LR 1 (ln 1 = 0) doubled by the rare destination: ln 2.
    assert!(
        (k["log_lr"].as_f64().unwrap() - 2f64.ln()).abs() < 1e-9,
        "{k}"
    );
    // A filter narrows the evidence: scan alerts only leave no shell hosts.
    let scans = hosts_json(&db, &["category", "scan"]);
    assert_eq!(scans.len(), 1);
    assert_eq!(scans[0]["host"], SCANNER);
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {e}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {e}");
    }
    assert!(o.stdout.is_empty(), "nothing on standard output");
}

#[test]
fn alerts_hosts_bad_input_gives_one_line_error_and_non_zero_exit() {
    let missing = tmp("missing.db");
    let o = tw(&["alerts", "--hosts", "--db", s(&missing)]);
    assert_one_line_error(&o, &["missing.db", "no store here"]);
    assert!(!missing.exists(), "a query creates no store");

    let db = lab_store("bad.db");
    let o = tw(&["alerts", "--hosts", "--db", s(&db), "--format", "xml"]);
    assert_one_line_error(&o, &["--format xml", "table or json"]);
    let o = tw(&["alerts", "--db", s(&db), "--format", "yaml"]);
    assert_one_line_error(&o, &["--format yaml"]);

    let conf = tmp("bad.toml");
    for (text, needles) in [
        (
            "[scoring]\nbase_rate = 1.5\n",
            ["line 2", "scoring.base_rate"],
        ),
        (
            "[scoring.severity]\nhigh = -50\n",
            ["line 2", "scoring.severity.high"],
        ),
        (
            "[scoring.rules]\nno_such_rule = 3\n",
            ["line 1", "no_such_rule"],
        ),
    ] {
        std::fs::write(&conf, text).unwrap();
        let o = tw(&["alerts", "--hosts", "--db", s(&db), "--config", s(&conf)]);
        assert_one_line_error(&o, &needles);
        let o = tw(&["views", "clients", "--db", s(&db), "--config", s(&conf)]);
        assert_one_line_error(&o, &needles);
    }
    let o = tw(&["alerts", "--hosts", "--db", s(&db), "not a filter ("]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
