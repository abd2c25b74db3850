//! Detection on its own thread after the writer: every record built there goes through the
//! detectors; the alerts they raise are written as JSON lines (`--alerts`), handed to
//! the store with the records, and counted by category and severity for the summary.

use std::collections::BTreeMap;
use std::io::{self, Write};

use tunnelwatch_detect::baseline::Profiles;
use tunnelwatch_detect::{Detection, DetectionStats};
use tunnelwatch_model::{Alert, Category, FlowRecord, Severity};

/// The detectors and where their alerts go.
pub struct AlertSink {
    detection: Detection,
    out: Option<Box<dyn Write + Send>>,
    line: Vec<u8>,
    counts: BTreeMap<(Category, Severity), u64>,
    error: Option<io::Error>,
}

/// What detection did in a run.
#[derive(Debug, Default)]
pub struct AlertReport {
    /// Alerts raised, by category and severity.
    pub counts: BTreeMap<(Category, Severity), u64>,
    /// What the policy dropped.
    pub stats: DetectionStats,
    /// The first error writing `--alerts`.
    pub error: Option<io::Error>,
    /// The baseline's profiles at the end of the run (to be stored).
    pub profiles: Profiles,
}

impl AlertSink {
    /// Runs `detection`, writing alerts to `out` when given.
    pub fn new(detection: Detection, out: Option<Box<dyn Write + Send>>) -> Self {
        AlertSink {
            detection,
            out,
            line: Vec::with_capacity(1024),
            counts: BTreeMap::new(),
            error: None,
        }
    }

    /// One record through the detectors; the alerts raised are appended to `raised`.
    pub fn record(&mut self, r: &FlowRecord, raised: &mut Vec<Alert>) {
        let from = raised.len();
        self.detection.record(r, raised);
        self.take(&raised[from..]);
    }

    /// The end of the input: pending summaries are raised into `raised`.
    pub fn finish(&mut self, raised: &mut Vec<Alert>) {
        let from = raised.len();
        self.detection.finish(raised);
        self.take(&raised[from..]);
        if let Some(o) = self.out.as_mut() {
            if let Err(e) = o.flush() {
                self.error.get_or_insert(e);
            }
        }
    }

    fn take(&mut self, alerts: &[Alert]) {
        for a in alerts {
            *self.counts.entry((a.category, a.severity)).or_default() += 1;
            if let (Some(o), None) = (self.out.as_mut(), &self.error) {
                self.line.clear();
                let res = serde_json::to_writer(&mut self.line, a)
                    .map_err(io::Error::other)
                    .and_then(|_| {
                        self.line.push(b'\n');
                        o.write_all(&self.line)
                    });
                if let Err(e) = res {
                    self.error = Some(e);
                }
            }
        }
    }

    /// The run's report. Its commands end the process after the run, so the
    /// detectors' state is left for the process's end to give back rather than freed
    /// map entry by map entry and box by box: after a large capture that took a tenth
    /// of a second on the detection thread, the last one to finish.
    pub fn report(self) -> AlertReport {
        let AlertSink {
            mut detection,
            out,
            counts,
            error,
            ..
        } = self;
        drop(out);
        let report = AlertReport {
            profiles: detection.baseline().take_profiles(),
            stats: detection.stats(),
            counts,
            error,
        };
        std::mem::forget(detection);
        report
    }
}
