//! A readable table of flow records, one line each, in the spirit of Argus' `ra`:
//! start time, duration, protocol, the two endpoints with the direction seen, packets
//! and bytes per direction, state and history.

use std::io::{self, Write};

use tunnelwatch_model::FlowRecord;

/// Writes the column header.
pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<17} {:>10} {:<5} {:>39}  {:<3} {:<39} {:>7} {:>7} {:>10} {:>10} {:<6} History",
        "StartTime",
        "Dur",
        "Proto",
        "Orig",
        "Dir",
        "Resp",
        "OPkts",
        "RPkts",
        "OBytes",
        "RBytes",
        "State",
    )
}

fn endpoint(h: &std::net::IpAddr, p: u16) -> String {
    match h {
        std::net::IpAddr::V6(_) => format!("[{h}]:{p}"),
        _ => format!("{h}:{p}"),
    }
}

/// Writes one record.
pub fn write_record(out: &mut impl Write, r: &FlowRecord) -> io::Result<()> {
    let dir = match (r.orig_pkts > 0, r.resp_pkts > 0) {
        (true, true) => "<->",
        (true, false) => "->",
        (false, true) => "<-",
        (false, false) => "?",
    };
    writeln!(
        out,
        "{:<17} {:>10.6} {:<5} {:>39}  {:<3} {:<39} {:>7} {:>7} {:>10} {:>10} {:<6} {}{}",
        r.ts.to_string(),
        r.duration,
        r.proto
            .replace("unknown_transport", &format!("ip{}", r.ip_proto)),
        endpoint(&r.orig_h, r.orig_p),
        dir,
        endpoint(&r.resp_h, r.resp_p),
        r.orig_pkts,
        r.resp_pkts,
        r.orig_ip_bytes,
        r.resp_ip_bytes,
        r.conn_state.as_str(),
        if r.history.is_empty() {
            "-"
        } else {
            &r.history
        },
        if r.cause == tunnelwatch_model::Cause::Status {
            " (interim)"
        } else {
            ""
        },
    )
}
