//! Record sinks, and the writer and detection threads that feed them.
//!
//! Building records from ended flows, serializing them (JSON, Zeek TSV, the table,
//! IPFIX datagrams) and the write and send system calls run on the writer thread, so
//! the packet path never waits on strings, formatting, the disk or the network. The
//! detectors (and the alerts' output) run on a detection thread after it, over the
//! writer's built records in the writer's order, and hand records and alerts to the
//! store; the two stages overlap. Records travel in batches over bounded channels
//! (back-pressure instead of unbounded memory), and emptied batches go back to their
//! producer, so the packet path allocates nothing per flow.
//!
//! Order: the writer holds each record until no producer can send one due earlier (each
//! batch carries its producer's [`RecordSender::mark`]), then writes the records it can
//! release, merged from the producers' queues, by the time they were due
//! ([`Ended::at`]), start time and `uid`. One order for one input, whatever `--threads` is: the files are the same byte
//! for byte, and the detectors, several of which judge a record by the ones before it,
//! see the same sequence.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tunnelwatch_flow::{Ended, FlowSink};
use tunnelwatch_model::{Alert, Cause, FlowRecord, Timestamp};
use tunnelwatch_output::ipfix::{IpfixConfig, IpfixExporter};
use tunnelwatch_output::{jsonl, table, zeek};

use crate::alert_sink::{AlertReport, AlertSink};
use crate::direct::DirectFile;

/// Records per batch sent to the writer.
const BATCH: usize = 1024;
/// Batches in flight before the sender waits.
const IN_FLIGHT: usize = 64;

/// One output and its format.
pub enum Sink {
    /// JSON lines.
    Json {
        /// Destination.
        out: Box<dyn Write + Send>,
        /// The line being built (reused).
        line: Vec<u8>,
    },
    /// Zeek conn.log TSV; the header is written before the first record.
    Zeek {
        /// Destination.
        out: Box<dyn Write + Send>,
        /// Header written.
        header: bool,
    },
    /// The readable table.
    Table {
        /// Destination.
        out: Box<dyn Write + Send>,
        /// Header written.
        header: bool,
    },
    /// IPFIX biflow records over UDP.
    Ipfix(Box<IpfixUdp>),
}

/// The IPFIX exporter and the UDP socket its datagrams go out on. A datagram that
/// cannot be sent is counted (the first error kept for the summary) and the export goes
/// on: a collector that is down or restarting must not stop the sensor.
pub struct IpfixUdp {
    target: SocketAddr,
    socket: UdpSocket,
    exporter: IpfixExporter,
    /// Datagrams the encoder finished, sent at once (reused).
    out: Vec<Vec<u8>>,
    sent: u64,
    send_errors: u64,
    first_error: Option<String>,
}

/// What the IPFIX export did, for the summary.
pub struct IpfixReport {
    /// The collector's address.
    pub target: SocketAddr,
    /// Records encoded.
    pub records: u64,
    /// Interim records whose counters were not remembered (see `IpfixCounters`).
    pub untracked: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams whose send failed.
    pub send_errors: u64,
    /// The first send error.
    pub first_error: Option<String>,
}

impl IpfixUdp {
    fn send_out(&mut self) {
        for d in self.out.drain(..) {
            match self.socket.send(&d) {
                Ok(_) => self.sent += 1,
                Err(e) => {
                    self.send_errors += 1;
                    self.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }

    fn report(&self) -> IpfixReport {
        IpfixReport {
            target: self.target,
            records: self.exporter.counters().records,
            untracked: self.exporter.counters().untracked,
            sent: self.sent,
            send_errors: self.send_errors,
            first_error: self.first_error.clone(),
        }
    }
}

impl Sink {
    /// JSON lines to `out`.
    pub fn json(out: Box<dyn Write + Send>) -> Self {
        Sink::Json {
            out,
            line: Vec::with_capacity(4096),
        }
    }

    /// IPFIX to `target` (`ADDR:PORT`, a name is resolved once) from a UDP socket
    /// connected to it, with Observation Domain `domain`.
    pub fn ipfix(target: &str, domain: u32) -> Result<Self> {
        let addr = target
            .to_socket_addrs()
            .with_context(|| format!("--ipfix-export {target}: not an ADDR:PORT"))?
            .next()
            .with_context(|| format!("--ipfix-export {target}: no address"))?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .and_then(|s| s.connect(addr).map(|()| s))
            .with_context(|| format!("cannot open a UDP socket to {addr}"))?;
        let exporter = IpfixExporter::new(IpfixConfig {
            observation_domain: domain,
            ..IpfixConfig::default()
        });
        Ok(Sink::Ipfix(Box::new(IpfixUdp {
            target: addr,
            socket,
            exporter,
            out: Vec::new(),
            sent: 0,
            send_errors: 0,
            first_error: None,
        })))
    }

    fn write(&mut self, r: &FlowRecord, open: Timestamp) -> io::Result<()> {
        match self {
            Sink::Ipfix(x) => {
                x.exporter.push(r, &mut x.out);
                x.send_out();
                Ok(())
            }
            Sink::Json { out, line } => jsonl::write_record(out, line, r),
            Sink::Zeek { out, header } => {
                if !*header {
                    zeek::write_header(out, open)?;
                    *header = true;
                }
                zeek::write_record(out, r)
            }
            Sink::Table { out, header } => {
                if !*header {
                    table::write_header(out)?;
                    *header = true;
                }
                table::write_record(out, r)
            }
        }
    }

    fn finish(&mut self, open: Timestamp, close: Timestamp) -> io::Result<()> {
        match self {
            Sink::Json { out, .. } => out.flush(),
            Sink::Zeek { out, header } => {
                if !*header {
                    zeek::write_header(out, open)?;
                }
                zeek::write_footer(out, close)?;
                out.flush()
            }
            Sink::Table { out, .. } => out.flush(),
            Sink::Ipfix(x) => {
                x.exporter.finish(&mut x.out);
                x.send_out();
                Ok(())
            }
        }
    }
}

/// A record file of `read` (`-` is standard output): large and written once, so past
/// the page cache where the file system allows it ([`DirectFile`]). Anything but a
/// regular file (`/dev/null`, a pipe, a terminal) is written as [`open_out`] does.
pub fn open_records_out(target: &str) -> Result<Box<dyn Write + Send>> {
    let special = std::fs::metadata(target).is_ok_and(|m| !m.is_file());
    if target == "-" || special {
        return open_out(target);
    }
    let f = DirectFile::create(Path::new(target), true)
        .with_context(|| format!("cannot create output file {target}"))?;
    Ok(Box::new(f))
}

/// Opens `target` for writing (`-` is standard output).
pub fn open_out(target: &str) -> Result<Box<dyn Write + Send>> {
    if target == "-" {
        Ok(Box::new(BufWriter::with_capacity(1 << 16, io::stdout())))
    } else {
        let f =
            File::create(target).with_context(|| format!("cannot create output file {target}"))?;
        Ok(Box::new(BufWriter::with_capacity(1 << 16, f)))
    }
}

enum Msg {
    /// How many producers there are (sent before any record).
    Producers(usize),
    /// A batch of one producer.
    Records {
        producer: usize,
        /// The first packet time of the run so far.
        open: Timestamp,
        /// Every record the producer sends later is due at or after this time and, when
        /// due at the same time, started at or after this start.
        mark: (Timestamp, Timestamp),
        flows: Vec<Ended>,
        /// Where the emptied batch goes back.
        back: Sender<Vec<Ended>>,
    },
    Finish(Timestamp, Timestamp),
}

/// Records held until every producer's clock has passed the time they were due.
#[derive(Default)]
struct Reorder {
    /// Each producer's mark ([`RecordSender::mark`]) and start within it.
    marks: Vec<(Timestamp, Timestamp)>,
    /// Each producer's held records, in order (boxed: a record is large to move).
    queues: Vec<VecDeque<Held>>,
    /// For `take`: the least key after each record of a batch (reused).
    after: Vec<(Timestamp, Timestamp)>,
}

/// A held record with its due time and start.
type Held = (Timestamp, Timestamp, Box<FlowRecord>);

/// What the writer orders: an ended flow ([`Ended`]; in tests, a built record).
trait Due {
    /// When it was due ([`Ended::at`]).
    fn at(&self) -> Timestamp;
    /// The flow's first packet time.
    fn start(&self) -> Timestamp;
    /// Its record, built in place ([`Ended::take_record`]).
    fn take_record(&mut self) -> FlowRecord;
}

impl Due for Ended {
    fn at(&self) -> Timestamp {
        Ended::at(self)
    }
    fn start(&self) -> Timestamp {
        Ended::start(self)
    }
    fn take_record(&mut self) -> FlowRecord {
        Ended::take_record(self)
    }
}

/// The one order: due time, start, then [`same_time`].
fn held_order(a: &Held, b: &Held) -> Ordering {
    (a.0, a.1)
        .cmp(&(b.0, b.1))
        .then_with(|| same_time(&a.2, &b.2))
}

impl Reorder {
    /// For `n` producers.
    fn new(n: usize) -> Self {
        Reorder {
            marks: vec![(Timestamp::MIN, Timestamp::MIN); n],
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            after: Vec::new(),
        }
    }

    /// What no producer can precede any more: the least of their marks.
    fn limit(&self) -> (Timestamp, Timestamp) {
        let max = (Timestamp::MAX, Timestamp::MAX);
        self.marks.iter().copied().min().unwrap_or(max)
    }

    /// Takes `flows`, a batch of `producer` (its mark already noted), building their
    /// records, and moves into `out` what can be released, in order.
    fn take<D: Due>(&mut self, producer: usize, flows: &mut Vec<D>, out: &mut Vec<FlowRecord>) {
        if producer >= self.queues.len() {
            self.queues.resize_with(producer + 1, VecDeque::new);
        }
        // A record goes straight out when it is due before every mark and every later
        // record of the batch sorts after it, once what is held and sorts before it
        // has gone out: with one producer, nearly all of them (boxing and queueing
        // costs moves). Only ties with the mark or the batch wait.
        let limit = self.limit();
        let mut after = std::mem::take(&mut self.after);
        after.clear();
        let mut least = (Timestamp::MAX, Timestamp::MAX);
        for f in flows.iter().rev() {
            after.push(least);
            least = least.min((f.at(), f.start()));
        }
        for flow in flows.iter_mut() {
            let key = (flow.at(), flow.start());
            let later = after.pop().unwrap_or(least);
            let record = flow.take_record();
            if key < limit && key < later {
                // What is held and sorts before it is due before every mark too.
                self.release_while(out, |h| {
                    (h.0, h.1).cmp(&key).then_with(|| same_time(&h.2, &record)) == Ordering::Less
                });
                out.push(record);
                continue;
            }
            let held = (key.0, key.1, Box::new(record));
            // A producer hands its records over in order of due time: only records due
            // at the same time can need a place further back.
            let q = &mut self.queues[producer];
            let mut i = q.len();
            while i > 0 && held_order(&q[i - 1], &held) == Ordering::Greater {
                i -= 1;
            }
            q.insert(i, held);
        }
        flows.clear();
        self.after = after;
        self.release(false, out);
    }

    /// Moves into `out`, in order, the held records that `release` accepts, while it
    /// does: a merge of the producers' queues.
    fn release_while(&mut self, out: &mut Vec<FlowRecord>, release: impl Fn(&Held) -> bool) {
        if self.queues.iter().all(VecDeque::is_empty) {
            return;
        }
        loop {
            let mut best: Option<usize> = None;
            for (i, q) in self.queues.iter().enumerate() {
                let Some(h) = q.front() else { continue };
                let better = match best.and_then(|b| self.queues[b].front()) {
                    Some(b) => held_order(h, b) == Ordering::Less,
                    None => true,
                };
                if better {
                    best = Some(i);
                }
            }
            let Some(b) = best else { break };
            let q = &mut self.queues[b];
            if !q.front().is_some_and(&release) {
                break;
            }
            if let Some((_, _, r)) = q.pop_front() {
                out.push(*r);
            }
        }
    }

    /// Moves into `out`, in order, every held record due before every producer's mark
    /// (all of them when `all`).
    fn release(&mut self, all: bool, out: &mut Vec<FlowRecord>) {
        let limit = self.limit();
        self.release_while(out, |h| all || (h.0, h.1) < limit);
    }
}

/// Records due at the same time that started together: by `uid`, a flow's interim
/// record before its final one.
fn same_time(a: &FlowRecord, b: &FlowRecord) -> Ordering {
    let last = |r: &FlowRecord| r.cause != Cause::Status;
    a.uid.cmp(&b.uid).then(last(a).cmp(&last(b)))
}

/// What the writer did: records written and the first write error, if any.
pub struct Written {
    /// Records written (each to every sink).
    pub records: u64,
    /// The first error met; writing stops at it.
    pub error: Option<io::Error>,
    /// What detection raised, when it ran.
    pub alerts: Option<AlertReport>,
    /// What the IPFIX export did, when there was one.
    pub ipfix: Option<IpfixReport>,
}

/// What the store thread receives.
pub enum StoreBatch {
    /// Flow records.
    Flows(Vec<FlowRecord>),
    /// Alerts.
    Alerts(Vec<Alert>),
}

/// The writer thread.
pub struct RecordWriter {
    tx: SyncSender<Msg>,
    handle: JoinHandle<Written>,
}

impl RecordWriter {
    /// Starts the thread that owns `sinks` and `alerting`; each batch, once written to
    /// the sinks and seen by the detectors, is handed to `forward` (the store sink) with
    /// its alerts when there is one.
    pub fn spawn(
        mut sinks: Vec<Sink>,
        forward: Option<SyncSender<StoreBatch>>,
        alerting: Option<AlertSink>,
    ) -> Result<Self> {
        let (tx, rx) = sync_channel::<Msg>(IN_FLIGHT);
        // Detection, when on, runs on a thread of its own after this one: the two
        // stages overlap, and at the end of the input (when most flows of a capture
        // end at once) both cores work on the last records.
        let (next, returned, detecting) = match alerting {
            Some(a) => {
                let (dtx, returned, handle) = spawn_detection(a, forward)?;
                (Some(Next::Detect(dtx)), Some(returned), Some(handle))
            }
            None => (forward.map(Next::Store), None, None),
        };
        let handle = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut w = Written {
                    records: 0,
                    error: None,
                    alerts: None,
                    ipfix: None,
                };
                let mut order = Reorder::default();
                // Records released: written to the sinks up to `written`, handed on in
                // batches.
                let mut ready: Vec<FlowRecord> = Vec::new();
                let mut written = 0;
                for msg in rx {
                    // The clock's start, and the clock's end at the end of input.
                    let (open, close) = match msg {
                        Msg::Producers(n) => {
                            order = Reorder::new(n);
                            continue;
                        }
                        Msg::Records {
                            producer,
                            open,
                            mark,
                            mut flows,
                            back,
                        } => {
                            w.records += flows.len() as u64;
                            if let Some(m) = order.marks.get_mut(producer) {
                                *m = mark;
                            }
                            // After an error, keep draining so senders never block; the
                            // next stage still gets the built records.
                            if w.error.is_none() || next.is_some() {
                                order.take(producer, &mut flows, &mut ready);
                            }
                            flows.clear();
                            // The producer may be gone already; then the batch is freed.
                            let _ = back.send(flows);
                            (open, None)
                        }
                        Msg::Finish(open, close) => {
                            order.release(true, &mut ready);
                            (open, Some(close))
                        }
                    };
                    if w.error.is_none() {
                        'write: for r in &ready[written..] {
                            for s in sinks.iter_mut() {
                                if let Err(e) = s.write(r, open) {
                                    w.error = Some(e);
                                    break 'write;
                                }
                            }
                        }
                    }
                    written = ready.len();
                    // The next stage gets whole batches (`--threads` producers send
                    // small ones often).
                    if written >= BATCH || (close.is_some() && written > 0) {
                        // Fails only if the next stage is gone; it reports why. The
                        // next batch is one detection handed back, emptied here, or
                        // made at its size (growing it copies records).
                        let mut batch = || {
                            let next = match returned.as_ref().map(Receiver::try_recv) {
                                Some(Ok(mut seen)) => {
                                    seen.clear();
                                    seen
                                }
                                _ => Vec::with_capacity(2 * BATCH),
                            };
                            std::mem::replace(&mut ready, next)
                        };
                        match &next {
                            Some(Next::Detect(d)) => {
                                let _ = d.send(batch());
                            }
                            Some(Next::Store(f)) => {
                                let _ = f.send(StoreBatch::Flows(batch()));
                            }
                            None => ready.clear(),
                        }
                        written = 0;
                    }
                    if let Some(close) = close {
                        for s in sinks.iter_mut() {
                            if let Err(e) = s.finish(open, close) {
                                w.error.get_or_insert(e);
                            }
                        }
                    }
                }
                // Closing the channel tells detection the input has ended.
                drop(next);
                if let Some(h) = detecting {
                    match h.join() {
                        Ok(report) => w.alerts = Some(report),
                        Err(_) => {
                            w.error
                                .get_or_insert(io::Error::other("the detection thread panicked"));
                        }
                    }
                }
                w.ipfix = sinks.iter().find_map(|s| match s {
                    Sink::Ipfix(x) => Some(x.report()),
                    _ => None,
                });
                w
            })
            .context("cannot start the writer thread")?;
        Ok(RecordWriter { tx, handle })
    }

    /// Batching handles for the `n` producer threads of the run (asked for once, before
    /// any record is sent).
    pub fn senders(&self, n: usize) -> Vec<RecordSender> {
        let _ = self.tx.send(Msg::Producers(n));
        (0..n)
            .map(|producer| {
                let (back, returned) = channel();
                RecordSender {
                    producer,
                    batch: Vec::with_capacity(BATCH),
                    open: Timestamp::default(),
                    mark: Timestamp::MIN,
                    mark_start: Timestamp::MIN,
                    tx: self.tx.clone(),
                    back,
                    returned,
                }
            })
            .collect()
    }

    /// Flushes every sink (with the Zeek footer) and waits for the thread. Every
    /// sender must have been flushed before.
    pub fn finish(self, open: Timestamp, close: Timestamp) -> Written {
        let _ = self.tx.send(Msg::Finish(open, close));
        drop(self.tx);
        self.handle.join().unwrap_or_else(|_| Written {
            records: 0,
            error: Some(io::Error::other("the writer thread panicked")),
            alerts: None,
            ipfix: None,
        })
    }
}

/// Where the writer hands its built records.
enum Next {
    /// The detection thread (which hands them on to the store).
    Detect(SyncSender<Vec<FlowRecord>>),
    /// The store, when detection is off.
    Store(SyncSender<StoreBatch>),
}

/// The detection stage's ends: where the writer sends batches of built records, where
/// seen batches come back (without a store), and the thread.
type DetectionStage = (
    SyncSender<Vec<FlowRecord>>,
    Receiver<Vec<FlowRecord>>,
    JoinHandle<AlertReport>,
);

/// Starts the detection stage: every batch of built records goes through `alerting` in
/// the order the writer wrote them, then to the store with the alerts it raised. When
/// the writer drops its sender, pending summaries are raised and the report returned.
/// Without a store, each batch goes back to the writer, which made its records: freed
/// there, a record's strings go back to the allocator's pages they came from, not
/// through another thread's (a tenth of detection's work), and the batch is filled again.
fn spawn_detection(
    mut alerting: AlertSink,
    forward: Option<SyncSender<StoreBatch>>,
) -> Result<DetectionStage> {
    let (tx, rx) = sync_channel::<Vec<FlowRecord>>(IN_FLIGHT);
    let (back, returned) = channel::<Vec<FlowRecord>>();
    let handle = std::thread::Builder::new()
        .name("detect".into())
        .spawn(move || {
            let mut raised: Vec<Alert> = Vec::new();
            for batch in rx {
                for r in &batch {
                    alerting.record(r, &mut raised);
                }
                if let Some(f) = &forward {
                    // Fails only if the store thread is gone; it reports why.
                    let _ = f.send(StoreBatch::Flows(batch));
                } else {
                    // The writer may be gone already; then the batch is freed here.
                    let _ = back.send(batch);
                }
                send_alerts(&forward, &mut raised);
            }
            alerting.finish(&mut raised);
            send_alerts(&forward, &mut raised);
            alerting.report()
        })
        .context("cannot start the detection thread")?;
    Ok((tx, returned, handle))
}

/// Hands the alerts raised so far to the store, when there is one.
fn send_alerts(forward: &Option<SyncSender<StoreBatch>>, raised: &mut Vec<Alert>) {
    if raised.is_empty() {
        return;
    }
    let batch = std::mem::take(raised);
    if let Some(f) = forward {
        let _ = f.send(StoreBatch::Alerts(batch));
    }
}

/// Collects one producer's records into batches for the writer.
pub struct RecordSender {
    producer: usize,
    batch: Vec<Ended>,
    /// The first packet time of the run so far (the Zeek header's `#open`).
    pub open: Timestamp,
    /// Every record the producer sends from now on is due ([`Ended::at`]) at or after
    /// this: its table's clock ([`tunnelwatch_sensor::Sensor::now`], set before each
    /// packet) or the due time of the last record it sent, whichever is later (a table
    /// hands records over in due order). Sent with each batch; the writer holds records
    /// until every producer's mark has passed them.
    pub mark: Timestamp,
    /// At the end of input (records due at [`Timestamp::MAX`], in order of start): the
    /// start of the last one sent, so the writer need not hold them all.
    mark_start: Timestamp,
    tx: SyncSender<Msg>,
    back: Sender<Vec<Ended>>,
    returned: Receiver<Vec<Ended>>,
}

impl RecordSender {
    /// Sends what is batched.
    pub fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.send();
        }
    }

    /// Sends what is batched and the mark, even with no records: lets the writer
    /// release what other producers sent.
    pub fn send(&mut self) {
        let next = self
            .returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let flows = std::mem::replace(&mut self.batch, next);
        // Fails only if the writer is gone, which `RecordWriter::finish` reports.
        let _ = self.tx.send(Msg::Records {
            producer: self.producer,
            open: self.open,
            mark: (self.mark, self.mark_start),
            flows,
            back: self.back.clone(),
        });
    }
}

impl FlowSink for RecordSender {
    fn ended(&mut self, flow: Ended) {
        // A table hands over its records in order of due time: none later is due earlier.
        self.mark = self.mark.max(flow.at());
        if flow.at() == Timestamp::MAX {
            self.mark_start = flow.start();
        }
        self.batch.push(flow);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_files_that_are_devices_are_written_plainly() {
        // /dev/null takes O_DIRECT but cannot be truncated to a length.
        let mut out = open_records_out("/dev/null").unwrap();
        out.write_all(&[b'x'; 5000]).unwrap();
        out.flush().unwrap();
    }

    /// A producer's batch in the property test, and its mark after it.
    type TestBatch = (Vec<(Timestamp, FlowRecord)>, Timestamp);

    /// A built record and the time it was due.
    impl Due for (Timestamp, FlowRecord) {
        fn at(&self) -> Timestamp {
            self.0
        }
        fn start(&self) -> Timestamp {
            self.1.ts
        }
        fn take_record(&mut self) -> FlowRecord {
            self.1.clone()
        }
    }

    fn record(uid: &str, ts: i64, cause: Cause) -> FlowRecord {
        let line = include_str!("../../../tests/golden/http-get/flows.jsonl");
        let first = line.lines().next().unwrap_or_default();
        let mut r: FlowRecord = serde_json::from_str(first).expect("a golden record");
        r.uid = uid.into();
        r.ts = Timestamp(ts);
        r.cause = cause;
        r
    }

    /// What `Reorder::take` does with one built record of `producer`.
    fn hold(o: &mut Reorder, producer: usize, at: Timestamp, r: FlowRecord) {
        let q = &mut o.queues[producer];
        q.push_back((at, r.ts, Box::new(r)));
        q.make_contiguous().sort_by(held_order);
    }

    fn uids(v: &[FlowRecord]) -> Vec<&str> {
        v.iter().map(|r| r.uid.as_str()).collect()
    }

    #[test]
    fn records_wait_for_every_producer_then_come_in_one_order() {
        let mut o = Reorder::new(2);
        let mut out = Vec::new();
        // Producer 0 is at 100: its records due before are complete, but producer 1
        // has said nothing yet.
        o.marks[0] = (Timestamp(100), Timestamp::MIN);
        hold(&mut o, 0, Timestamp(50), record("Cb", 10, Cause::End));
        hold(&mut o, 0, Timestamp(90), record("Cd", 10, Cause::Timeout));
        o.release(false, &mut out);
        assert!(out.is_empty());
        // Producer 1 reaches 60 with two records due earlier than producer 0's.
        o.marks[1] = (Timestamp(60), Timestamp::MIN);
        hold(&mut o, 1, Timestamp(50), record("Ca", 10, Cause::End));
        hold(&mut o, 1, Timestamp(40), record("Cc", 30, Cause::End));
        o.release(false, &mut out);
        // By due time, then start, then uid; what is due at 90 waits for producer 1.
        assert_eq!(uids(&out), ["Cc", "Ca", "Cb"]);
        out.clear();
        // An interim record comes before its flow's final one due at the same time.
        hold(&mut o, 0, Timestamp(90), record("Cd", 10, Cause::Status));
        o.marks[1] = (Timestamp(200), Timestamp::MIN);
        o.release(false, &mut out);
        assert_eq!(uids(&out), ["Cd", "Cd"]);
        assert_eq!(out[0].cause, Cause::Status);
        out.clear();
        // The end of input: by start, released as far as every producer has flushed.
        o.marks = vec![
            (Timestamp::MAX, Timestamp(20)),
            (Timestamp::MAX, Timestamp(5)),
        ];
        hold(&mut o, 0, Timestamp::MAX, record("Cf", 20, Cause::End));
        hold(&mut o, 1, Timestamp::MAX, record("Ce", 3, Cause::End));
        o.release(false, &mut out);
        assert_eq!(uids(&out), ["Ce"]);
        o.release(true, &mut out);
        assert_eq!(uids(&out), ["Ce", "Cf"]);
        assert!(o.queues.iter().all(VecDeque::is_empty));
    }

    proptest! {
        /// Producers each hand over records in due order with a mark after each batch
        /// (nothing later is due before it), in any interleaving: what comes out is
        /// every record once, in (due time, start, uid) order.
        #[test]
        fn any_interleaving_gives_the_one_order(
            streams in prop::collection::vec(
                prop::collection::vec(
                    (prop::collection::vec((0i64..3, 0i64..4), 0..6), 0i64..3),
                    0..8,
                ),
                1..4,
            ),
            picks in prop::collection::vec(0usize..3, 0..64),
        ) {
            // Per producer: batches of (due-time step, start) and a mark step.
            let mut uid = 0u32;
            let mut batches: Vec<VecDeque<TestBatch>> = Vec::new();
            let mut all = Vec::new();
            for stream in &streams {
                let mut clock = 0i64;
                let mut q = VecDeque::new();
                for (recs, mark_step) in stream {
                    let mut batch = Vec::new();
                    for (step, start) in recs {
                        clock += step;
                        uid += 1;
                        let r = record(&format!("C{uid:05}"), *start, Cause::End);
                        all.push((clock, r.ts.0, r.uid.clone()));
                        batch.push((Timestamp(clock), r));
                    }
                    clock += mark_step;
                    q.push_back((batch, Timestamp(clock)));
                }
                batches.push(q);
            }
            let mut o = Reorder::new(streams.len());
            let mut out = Vec::new();
            let mut next = picks.into_iter();
            while batches.iter().any(|q| !q.is_empty()) {
                let live: Vec<usize> = (0..batches.len()).filter(|p| !batches[*p].is_empty()).collect();
                let p = live[next.next().unwrap_or(0) % live.len()];
                if let Some((mut batch, mark)) = batches[p].pop_front() {
                    o.marks[p] = (mark, Timestamp::MIN);
                    o.take(p, &mut batch, &mut out);
                }
            }
            o.release(true, &mut out);
            all.sort();
            let want: Vec<&str> = all.iter().map(|a| a.2.as_str()).collect();
            prop_assert_eq!(uids(&out), want);
        }
    }
}
