//! The packet path alone: one sensor over capture files on this thread, the ended
//! flows dropped as they come — no records built, no JSON, no detectors, no other
//! thread. What `read`'s packet thread costs by itself, for timing changes to decode
//! and the flow table without the writer and detection sharing the cores.
//!
//! ```text
//! cargo run --release -p tunnelwatch-sensor --example replay -- corpus.pcap [more.pcap …]
//! ```
//!
//! Prints packets, flows, seconds and packets per second on standard error; a bad
//! file ends the run with its error after what was read.

use std::process::ExitCode;
use std::time::Instant;

use tunnelwatch_capture::CaptureFile;
use tunnelwatch_decode::LinkType;
use tunnelwatch_flow::{Ended, FlowSink};
use tunnelwatch_sensor::{Sensor, SensorConfig};

// The allocator `read` runs on.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts the ended flows and drops them.
struct Count(u64);

impl FlowSink for Count {
    fn ended(&mut self, _flow: Ended) {
        self.0 += 1;
    }
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: replay CAPTURE…");
        return ExitCode::from(2);
    }
    let mut sensor = Sensor::new(SensorConfig::default());
    let mut ended = Count(0);
    let start = Instant::now();
    let mut index = 0u64;
    for path in &paths {
        let mut cap = match CaptureFile::open(path.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("replay: {e}");
                return ExitCode::FAILURE;
            }
        };
        loop {
            match cap.next_packet() {
                Ok(Some(p)) => {
                    let link = LinkType(p.link.0);
                    sensor.packet_at(index, p.ts, link, p.data, p.orig_len, &mut ended);
                    index += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("replay: {e} (after {index} packets)");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let packets_done = start.elapsed().as_secs_f64();
    sensor.finish(&mut ended);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "replay: {index} packets, {} flows in {secs:.3} s ({packets_done:.3} s before the final flush): {:.2} Mpps",
        ended.0,
        index as f64 / secs / 1e6
    );
    ExitCode::SUCCESS
}
