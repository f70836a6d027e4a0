//! Memory under floods (issue 20): `cargo bench --bench flood`.
//!
//! The release binary with its embedded broker and simulated hardware, as
//! its own processes (agent, broker supervisor, broker), and a watcher: an
//! MQTT 5 subscriber that keeps up, on the agent's state topics and on the
//! topic the agent answers requests on. RSS is the sum of VmRSS of the
//! agent and all its descendants, read from /proc every 100 ms. Each case
//! has a fresh agent: a warm-up (1,000 tilts, 1,000 commands: the code of
//! the cases is in memory), idle, the case, its client leaves, a pause
//! (`FLOOD_SETTLE_S`), RSS "after". The cases:
//!
//! 1. a tilt stream on `<base>/tilt/set`, QoS 1, paced: an hour at 100/s
//!    (360,000 tilts) sent at 10,000/s, 36 s; the last tilt is a request,
//!    whose answer says the agent went through the whole stream;
//! 2. the same stream unpaced (as fast as the client sends: no subscriber
//!    keeps up with that for long, the agent skips tilts, the newest wins);
//! 3. 20,000 QoS 1 `matrix/set` commands, each a request (response topic,
//!    correlation data), sent as fast as the agent answers them (at most
//!    100 unanswered);
//! 4. 20,000 such commands as fast as the client sends them, from a client
//!    that keeps at most 100 unacknowledged (as many clients do);
//! 5. the same from a client with rumqttc's window (65,535: rumqttd sends
//!    no Receive Maximum), as benches/e2e.rs floods.
//!
//! A command is lost when it is not answered. The broker's own word is
//! counted too: rumqttd warns when a subscriber's read cursor jumps over
//! messages its commit log no longer holds (`RUST_LOG` is set so that it
//! does), and the bench adds up what each jump skipped, per topic filter.
//! The whole run takes about 2 minutes.
//!
//! Environment: `FLOOD_CASES` (1,2,3,4,5), `FLOOD_TILTS` (360000),
//! `FLOOD_TILT_RATE` per second (10000), `FLOOD_COMMANDS` (20000),
//! `FLOOD_SETTLE_S` (5), `FLOOD_RUMQTTD_TOML` (a rumqttd file given to the
//! agent as `broker.config_file`, to compare settings; default: the
//! built-in broker/rumqttd.toml), `FLOOD_AGENT_BIN` (another build of the
//! agent, the static musl one say; default: target/release/edge-agent,
//! which cargo builds for the bench), `FLOOD_TIMEOUT_S` (600: the whole
//! run; past it the bench ends the agent and itself).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{children, env_or, free_port, status_kib};
use edge_agent::parts::matrix::Frame;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// The goals of issue 20.
const PEAK_LIMIT_KIB: u64 = 32 * 1024;
const AFTER_OVER_IDLE_KIB: u64 = 2 * 1024;

/// How often RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Unanswered commands the paced matrix case allows.
const ANSWER_WINDOW: usize = 100;

/// Unacknowledged publishes of the client of case 4.
const CLIENT_WINDOW: u16 = 100;

/// How long without progress before a case is given up.
const STALL: Duration = Duration::from_secs(3);

const DEVICE: &str = "flood";
const REPLY_TOPIC: &str = "bench-flood/reply";

/// Set once the bench ends an agent: its warnings from then on are not news.
static ENDING: AtomicBool = AtomicBool::new(false);

/// The pid of the agent running now, for the time limit.
static AGENT: AtomicU32 = AtomicU32::new(0);

fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// VmRSS of `pid` and of each of its descendants, in KiB, the agent
/// first (a process that has just ended counts 0).
fn tree_rss(pid: u32) -> Vec<(u32, u64)> {
    let mut out = vec![(pid, vm_rss_kib(pid).unwrap_or(0))];
    let mut i = 0;
    while i < out.len() {
        for c in children(out[i].0) {
            out.push((c, vm_rss_kib(c).unwrap_or(0)));
        }
        i += 1;
    }
    out
}

fn total(tree: &[(u32, u64)]) -> u64 {
    tree.iter().map(|(_, r)| r).sum()
}

/// "9.1 (1.9) + 2.0 (1.5) + 6.0 (2.0) MiB": each process of the tree, its
/// anonymous memory in parentheses (the rest is the binary's and the
/// libraries' pages).
fn breakdown(tree: &[(u32, u64)]) -> String {
    let parts: Vec<String> = tree
        .iter()
        .map(|(pid, r)| {
            let anon = status_kib(*pid, "RssAnon:").unwrap_or(0);
            format!("{:.1} ({:.1})", *r as f64 / 1024.0, anon as f64 / 1024.0)
        })
        .collect();
    format!("{} MiB", parts.join(" + "))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// What the watcher saw.
#[derive(Default)]
struct Seen {
    /// The case whose answers are counted; others are ignored.
    case: AtomicUsize,
    /// Matrix commands of the case answered, by number.
    answered: Mutex<Vec<bool>>,
    answers: AtomicUsize,
    /// The case's last tilt answered.
    tilt_answered: AtomicBool,
    /// The frame of the newest retained matrix state.
    last_frame: Mutex<Option<String>>,
    /// Messages received in all.
    messages: AtomicU64,
}

impl Seen {
    fn take(&self, topic: &[u8], payload: &Bytes, props: Option<&PublishProperties>) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        if topic == REPLY_TOPIC.as_bytes() {
            // Correlation data: `<case>:t` for a tilt, `<case>:<i>` for command i.
            let corr = props
                .and_then(|p| p.correlation_data.as_deref())
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.split_once(':'));
            let Some((case, what)) = corr else { return };
            if case.parse() != Ok(self.case.load(Ordering::Relaxed)) {
                return;
            }
            if what == "t" {
                self.tilt_answered.store(true, Ordering::Relaxed);
            } else if let Ok(i) = what.parse::<usize>() {
                let mut a = self.answered.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(slot) = a.get_mut(i) {
                    if !*slot {
                        *slot = true;
                        self.answers.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        } else if topic == format!("edge/{DEVICE}/matrix").as_bytes() {
            let frame = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["frame"].as_str().map(str::to_string));
            if frame.is_some() {
                *self.last_frame.lock().unwrap_or_else(|e| e.into_inner()) = frame;
            }
        }
    }

    /// Starts counting the answers of `case`, which sends `n` commands.
    fn start_case(&self, case: usize, n: usize) {
        *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = vec![false; n + 1];
        self.answers.store(0, Ordering::Relaxed);
        self.tilt_answered.store(false, Ordering::Relaxed);
        self.case.store(case, Ordering::Relaxed);
    }

    fn answers(&self) -> usize {
        self.answers.load(Ordering::Relaxed)
    }

    fn frame_is(&self, frame: &str) -> bool {
        self.last_frame
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            == Some(frame)
    }
}

/// What rumqttd's cursor jumps skipped, per topic filter: (jumps, messages).
type Skips = BTreeMap<String, (u64, u64)>;

/// A warning of rumqttd's router: `... error="Read cursor start jumped from
/// (0, 4888) to (1, 26887) on edge/flood/+/set"`; the filter and how many
/// messages the jump skipped (the second numbers are absolute offsets).
fn parse_jump(line: &str) -> Option<(String, u64)> {
    let rest = line.split_once("Read cursor start jumped from (")?.1;
    let (from, rest) = rest.split_once(") to (")?;
    let (to, rest) = rest.split_once(") on ")?;
    let offset = |c: &str| c.split_once(", ")?.1.trim().parse::<u64>().ok();
    let filter = rest.trim_end_matches('"').trim().to_string();
    Some((filter, offset(to)?.saturating_sub(offset(from)?)))
}

/// What was skipped between two snapshots, as text, and how many QoS 1
/// messages: those of the agent's command filters (`.../set`) and of the
/// answers. (The agent's state is retained QoS 0: a subscriber that misses
/// one has the next.)
fn skipped_since(before: &Skips, now: &Skips) -> (String, u64) {
    let mut parts = Vec::new();
    let mut qos1 = 0;
    for (filter, (jumps, skipped)) in now {
        let (j0, s0) = before.get(filter).copied().unwrap_or_default();
        if *jumps > j0 {
            parts.push(format!(
                "{}: {} skipped in {} jumps",
                filter,
                skipped - s0,
                jumps - j0
            ));
            if filter.ends_with("/set") || filter == REPLY_TOPIC {
                qos1 += skipped - s0;
            }
        }
    }
    if parts.is_empty() {
        parts.push("none".into());
    }
    (parts.join("; "), qos1)
}

/// A runtime on a thread of its own for a client: publisher and watcher do
/// not take turns, as they would not as separate devices.
fn own_thread(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("client runtime")
}

/// A connected MQTT 5 client whose network task runs on `rt`; what it
/// receives goes to `seen`. `window`: most unacknowledged publishes (rumqttd
/// sends no Receive Maximum, so rumqttc's own 65,535 unless given).
async fn client(
    port: u16,
    id: &str,
    seen: Option<Arc<Seen>>,
    window: Option<u16>,
    rt: &tokio::runtime::Handle,
) -> AsyncClient {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some(w) = window {
        o.set_outgoing_inflight_upper_limit(w);
    }
    let (c, mut el) = AsyncClient::new(o, 10_000);
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let mut tx = Some(tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(t) = tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(s) = &seen {
                        s.take(&p.topic, &p.payload, p.properties.as_ref());
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    if tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .is_err()
    {
        eprintln!("client {id}: no CONNACK from 127.0.0.1:{port} within 5 s");
    }
    c
}

fn request(corr: String) -> PublishProperties {
    PublishProperties {
        response_topic: Some(REPLY_TOPIC.into()),
        correlation_data: Some(Bytes::from(corr)),
        ..Default::default()
    }
}

/// The RSS sampler: the peak since the last `take_peak`.
struct Sampler {
    peak: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    peak.fetch_max(total(&tree_rss(pid)), Ordering::Relaxed);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        Sampler {
            peak,
            running,
            thread: Some(thread),
        }
    }

    fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }

    fn stop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Until `done` holds, or `progress` has not moved for [`STALL`]; whether
/// it held.
async fn until_done(done: impl Fn() -> bool, progress: impl Fn() -> usize) -> bool {
    let (mut last, mut since) = (progress(), Instant::now());
    while !done() {
        if since.elapsed() > STALL {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    true
}

/// One row of the table.
struct Row {
    case: String,
    took: Duration,
    peak: u64,
    after: u64,
    idle: u64,
    /// QoS 1 messages lost, in words; `None`: none.
    lost: Option<String>,
    /// Whether a loss fails the goal: not where the sender outruns the
    /// agent for longer than any log can hold (360,000 tilts unpaced: the
    /// agent skips tilts, the newest wins).
    loss_fails: bool,
}

/// What a case's end measured.
struct Ended {
    took: Duration,
    peak: u64,
    /// RSS by process after the pause.
    after: Vec<(u32, u64)>,
    /// What the broker skipped, in words.
    skipped: String,
    /// QoS 1 messages lost, in words, one entry per kind.
    lost: Vec<String>,
    idle: u64,
}

impl Ended {
    /// The table's row for `case`; `loss_fails` as [`Row::loss_fails`].
    fn row(self, case: String, loss_fails: bool) -> Row {
        Row {
            case,
            took: self.took,
            peak: self.peak,
            after: total(&self.after),
            idle: self.idle,
            lost: (!self.lost.is_empty()).then(|| self.lost.join(", ")),
            loss_fails,
        }
    }
}

impl Row {
    fn goals(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        if self.peak >= PEAK_LIMIT_KIB {
            failed.push("peak");
        }
        if self.after > self.idle + AFTER_OVER_IDLE_KIB {
            failed.push("after");
        }
        if self.lost.is_some() && self.loss_fails {
            failed.push("QoS 1 lost");
        }
        failed
    }

    fn print(&self) {
        let failed = self.goals();
        println!(
            "| {} | {:.1} s | {} | {} | {} | {} | {} |",
            self.case,
            self.took.as_secs_f64(),
            mib(self.peak),
            mib(self.after),
            mib(self.idle),
            match (&self.lost, self.loss_fails) {
                (None, _) => "none".to_string(),
                (Some(l), true) => l.clone(),
                (Some(l), false) => format!("{l} (the agent behind: no goal)"),
            },
            if failed.is_empty() {
                "pass".to_string()
            } else {
                format!("FAIL ({})", failed.join(", "))
            }
        );
    }
}

/// How the matrix commands of a case are sent.
#[derive(Clone, Copy)]
enum Sending {
    /// Each once at most [`ANSWER_WINDOW`] are unanswered.
    AsAnswered,
    /// As fast as the client takes them.
    Unpaced,
}

/// A fresh agent and the bench's clients, for one case.
struct Bench {
    child: Child,
    pid: u32,
    v5: u16,
    watcher: AsyncClient,
    seen: Arc<Seen>,
    sampler: Sampler,
    skips: Arc<Mutex<Skips>>,
    idle: u64,
    settle: Duration,
    cases: usize,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Bench {
    /// Starts the agent, the watcher, runs the warm-up and reads idle.
    async fn start(settle: Duration) -> Option<Bench> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut child, v5, online, skips) = start_agent(dir.path());
        let pid = child.id();
        let t0 = Instant::now();
        while !online.load(Ordering::Relaxed) {
            if t0.elapsed() > Duration::from_secs(10) {
                eprintln!("the agent did not come online within 10 s");
                stop_agent(&mut child).await;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rt = own_thread("flood-clients");
        let seen = Arc::new(Seen::default());
        let id = "flood-watch";
        let watcher = client(v5, id, Some(Arc::clone(&seen)), None, rt.handle()).await;
        watcher
            .subscribe_many([
                Filter::new(format!("edge/{DEVICE}/+"), QoS::AtLeastOnce),
                Filter::new(format!("edge/{DEVICE}/led/+"), QoS::AtLeastOnce),
                Filter::new(REPLY_TOPIC, QoS::AtLeastOnce),
            ])
            .await
            .expect("subscribe");
        let mut bench = Bench {
            child,
            pid,
            v5,
            watcher,
            seen,
            sampler: Sampler::start(pid),
            skips,
            idle: 0,
            settle: Duration::from_secs(1),
            cases: 0,
            rt,
            _dir: dir,
        };
        // Warm-up: the paths of the cases run once, so that the code they
        // run is in memory before idle is read (its pages count in RSS).
        print!("  warm-up:");
        bench.tilts(1000, 1000).await;
        print!("  warm-up:");
        bench.matrix(1000, Sending::AsAnswered, None).await;
        bench.settle = settle;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = tree_rss(pid);
        bench.idle = total(&idle);
        println!(
            "  idle: {} ({}: agent, broker supervisor, broker; anonymous memory in parentheses)",
            mib(bench.idle),
            breakdown(&idle)
        );
        Some(bench)
    }

    async fn stop(mut self) {
        self.sampler.stop();
        let _ = self.watcher.disconnect().await;
        stop_agent(&mut self.child).await;
        self.rt.shutdown_background();
    }

    fn skips(&self) -> Skips {
        self.skips.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The peak since the last call (until now, and through the settling
    /// time), then RSS after the settling time.
    async fn peak_and_after(&self) -> (u64, Vec<(u32, u64)>) {
        let peak = self.sampler.take_peak();
        tokio::time::sleep(self.settle).await;
        let after = tree_rss(self.pid);
        (peak.max(total(&after)), after)
    }

    /// Ends a case begun at `t0`: its client leaves (rumqttd frees that
    /// connection's buffers), then RSS at its peak and after the pause,
    /// and what the broker skipped since `skips_before`.
    async fn end_case(&self, publisher: AsyncClient, t0: Instant, skips_before: &Skips) -> Ended {
        let took = t0.elapsed();
        let _ = publisher.disconnect().await;
        let (peak, after) = self.peak_and_after().await;
        let (skipped, count) = skipped_since(skips_before, &self.skips());
        let lost = if count > 0 {
            vec![format!("{count} skipped by the broker")]
        } else {
            Vec::new()
        };
        Ended {
            took,
            peak,
            after,
            skipped,
            lost,
            idle: self.idle,
        }
    }

    async fn publisher(&mut self, window: Option<u16>) -> AsyncClient {
        self.cases += 1;
        let id = format!("flood-pub-{}", self.cases);
        let c = client(self.v5, &id, None, window, self.rt.handle()).await;
        // Its connection's own memory is part of idle, not of the case.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.sampler.take_peak();
        c
    }

    /// `n` tilts at `rate` a second (0: unpaced), the last one a request.
    async fn tilts(&mut self, n: u64, rate: u64) -> Row {
        let publisher = self.publisher(None).await;
        let topic = format!("edge/{DEVICE}/tilt/set");
        let paced = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
        self.seen.start_case(self.cases, 0);
        let skips_before = self.skips();
        let t0 = Instant::now();
        for i in 0..n {
            // Paced in steps of tokio's timer (1 ms): whatever is due by
            // then goes out together.
            if let Some(period) = paced {
                let ahead =
                    (t0 + period.mul_f64(i as f64)).saturating_duration_since(Instant::now());
                if ahead >= Duration::from_millis(1) {
                    tokio::time::sleep(ahead).await;
                }
            }
            // A distinct tilt each time: x and y sweep, z is gravity.
            let payload = format!(
                "{:.3} {:.3} 9.81",
                (i % 2000) as f64 * 0.001,
                (i % 1000) as f64 * 0.01
            );
            let sent = if i + 1 == n {
                let props = request(format!("{}:t", self.cases));
                publisher
                    .publish_with_properties(topic.clone(), QoS::AtLeastOnce, false, payload, props)
                    .await
            } else {
                publisher
                    .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                    .await
            };
            sent.expect("publish a tilt");
        }
        let sent_in = t0.elapsed();
        let seen = Arc::clone(&self.seen);
        let answered = until_done(|| seen.tilt_answered.load(Ordering::Relaxed), || 0).await;
        let mut ended = self.end_case(publisher, t0, &skips_before).await;
        let pace = match rate {
            0 => "unpaced".to_string(),
            r => format!("{r}/s"),
        };
        println!(
            "  {n} tilts ({pace}): sent in {:.1} s; the last one answered: {}; skipped by the broker: {}; after {} s: {}",
            sent_in.as_secs_f64(),
            if answered { "yes" } else { "NO" },
            ended.skipped,
            self.settle.as_secs(),
            breakdown(&ended.after)
        );
        if !answered {
            ended.lost.push("the last unanswered".into());
        }
        ended.row(
            format!("{n} tilts, QoS 1, {pace}"),
            paced.is_some() || !answered,
        )
    }

    /// `n` QoS 1 matrix commands, each a request: all answered, the last
    /// frame applied.
    async fn matrix(&mut self, n: usize, sending: Sending, window: Option<u16>) -> Row {
        let publisher = self.publisher(window).await;
        let topic = format!("edge/{DEVICE}/matrix/set");
        let base = 1u32 << 20;
        let last_frame = Frame::from_bits(base + n as u32).to_text();
        let case = self.cases;
        self.seen.start_case(case, n);
        let skips_before = self.skips();
        let seen = Arc::clone(&self.seen);
        let t0 = Instant::now();
        let mut sent = 0;
        for i in 1..=n {
            if let Sending::AsAnswered = sending {
                let room = || seen.answers() + ANSWER_WINDOW >= i;
                if !until_done(room, || seen.answers()).await {
                    break;
                }
            }
            let frame = Frame::from_bits(base + i as u32).to_text();
            let props = request(format!("{case}:{i}"));
            publisher
                .publish_with_properties(topic.clone(), QoS::AtLeastOnce, false, frame, props)
                .await
                .expect("publish a command");
            sent = i;
        }
        let sent_in = t0.elapsed();
        until_done(
            || seen.answers() >= n && seen.frame_is(&last_frame),
            || seen.answers(),
        )
        .await;
        let mut ended = self.end_case(publisher, t0, &skips_before).await;
        let (answered, applied) = (seen.answers(), seen.frame_is(&last_frame));
        let how = match (sending, window) {
            (Sending::AsAnswered, _) => format!("as answered (≤ {ANSWER_WINDOW} unanswered)"),
            (Sending::Unpaced, Some(w)) => format!("unpaced, client window {w}"),
            (Sending::Unpaced, None) => "unpaced, client window 65,535".to_string(),
        };
        println!(
            "  {n} matrix commands ({how}): {sent} sent in {:.2} s; answered {answered}; the last frame applied: {}; skipped by the broker: {}; after {} s: {}",
            sent_in.as_secs_f64(),
            if applied { "yes" } else { "NO" },
            ended.skipped,
            self.settle.as_secs(),
            breakdown(&ended.after)
        );
        if answered < n {
            ended
                .lost
                .push(format!("{} of {n} unanswered", n - answered));
        }
        if !applied {
            ended.lost.push("the last frame not applied".into());
        }
        ended.row(format!("{n} matrix commands, QoS 1, {how}"), true)
    }
}

/// The agent binary, started with the embedded broker on free ports; its
/// MQTT 5 port, whether it is online, and what rumqttd's cursor jumps
/// skipped.
fn start_agent(dir: &std::path::Path) -> (Child, u16, Arc<AtomicBool>, Arc<Mutex<Skips>>) {
    // Another build of the agent (the static musl one, say) to compare.
    let bin = std::env::var("FLOOD_AGENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-agent").to_string());
    let (v4, v5) = (free_port(), free_port());
    let config_file = match std::env::var("FLOOD_RUMQTTD_TOML") {
        Ok(p) => {
            let p = std::fs::canonicalize(&p).expect("FLOOD_RUMQTTD_TOML: a readable file");
            format!("config_file = {:?}\n", p.display().to_string())
        }
        Err(_) => String::new(),
    };
    let cfg = dir.join("flood.toml");
    std::fs::write(
        &cfg,
        format!(
            "[device]\nid = \"{DEVICE}\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n{config_file}[display]\nenabled = false\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        // rumqttd's warnings: a read cursor that jumps over lost messages.
        .env("RUST_LOG", "info,rumqttd=warn,rumqttc=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    AGENT.store(child.id(), Ordering::Relaxed);
    ENDING.store(false, Ordering::Relaxed);
    let stderr = child.stderr.take().expect("stderr");
    let online = Arc::new(AtomicBool::new(false));
    let skips = Arc::new(Mutex::new(Skips::new()));
    {
        let (online, skips) = (Arc::clone(&online), Arc::clone(&skips));
        std::thread::spawn(move || {
            let mut shown = 0;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" online") {
                    online.store(true, Ordering::Relaxed);
                }
                if let Some((filter, skipped)) = parse_jump(&line) {
                    let mut s = skips.lock().unwrap_or_else(|e| e.into_inner());
                    let e = s.entry(filter).or_default();
                    e.0 += 1;
                    e.1 += skipped;
                    continue;
                }
                // The agent's other warnings, the first few: not those of
                // the jumps ("jumping to head"), nor rumqttd's about the
                // port probes before it was up and the bench's clients
                // leaving, nor those of the end.
                let probe = [
                    "MQTT connect packet",
                    "router-drop",
                    "already gone",
                    "Connection reset",
                ]
                .iter()
                .any(|n| line.contains(n));
                let jump = line.contains("jumping to head");
                let warning = line.contains("WARN") || line.contains("ERROR");
                if warning && !probe && !jump && shown < 10 && !ENDING.load(Ordering::Relaxed) {
                    shown += 1;
                    println!("agent: {line}");
                }
            }
        });
    }
    (child, v5, online, skips)
}

/// Ends the agent: SIGTERM, then after 10 s SIGKILL.
async fn stop_agent(child: &mut Child) {
    ENDING.store(true, Ordering::Relaxed);
    // SAFETY: kill(2) on the agent this bench started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// The cases, in the order of the table (see the top of this file).
#[derive(Clone, Copy)]
enum Case {
    TiltsPaced,
    TiltsUnpaced,
    MatrixAsAnswered,
    MatrixWindow,
    MatrixFullWindow,
}

async fn run() -> bool {
    let tilts = env_or("FLOOD_TILTS", 360_000);
    let rate = env_or("FLOOD_TILT_RATE", 10_000);
    let commands = env_or("FLOOD_COMMANDS", 20_000) as usize;
    let settle = Duration::from_secs(env_or("FLOOD_SETTLE_S", 5));
    let chosen = std::env::var("FLOOD_CASES").unwrap_or_else(|_| "1,2,3,4,5".into());
    let cases = [
        Case::TiltsPaced,
        Case::TiltsUnpaced,
        Case::MatrixAsAnswered,
        Case::MatrixWindow,
        Case::MatrixFullWindow,
    ];
    println!(
        "agent: {}",
        std::env::var("FLOOD_AGENT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-agent").into())
    );
    println!(
        "rumqttd settings: {}",
        std::env::var("FLOOD_RUMQTTD_TOML")
            .unwrap_or_else(|_| "built in (broker/rumqttd.toml)".into())
    );
    let mut rows = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        if !chosen.split(',').any(|c| c.trim() == (i + 1).to_string()) {
            continue;
        }
        println!("case {}, a fresh agent:", i + 1);
        let Some(mut bench) = Bench::start(settle).await else {
            return false;
        };
        let row = match case {
            Case::TiltsPaced => bench.tilts(tilts, rate.max(1)).await,
            Case::TiltsUnpaced => bench.tilts(tilts, 0).await,
            Case::MatrixAsAnswered => bench.matrix(commands, Sending::AsAnswered, None).await,
            Case::MatrixWindow => {
                let window = Some(CLIENT_WINDOW);
                bench.matrix(commands, Sending::Unpaced, window).await
            }
            Case::MatrixFullWindow => bench.matrix(commands, Sending::Unpaced, None).await,
        };
        println!(
            "  the watcher received {} messages",
            bench.seen.messages.load(Ordering::Relaxed)
        );
        bench.stop().await;
        rows.push(row);
    }

    println!();
    println!(
        "| case | took | peak RSS | RSS after {} s | idle | QoS 1 lost | goals |",
        settle.as_secs()
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        r.print();
    }
    rows.iter().all(|r| r.goals().is_empty())
}

fn main() {
    // The whole run is bounded: past it, the agent of the moment and this
    // bench end (the broker's processes end with the agent).
    let timeout = Duration::from_secs(env_or("FLOOD_TIMEOUT_S", 600));
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("flood bench: not done within {timeout:?}; ending the agent and the bench");
        let pid = AGENT.load(Ordering::Relaxed);
        if pid != 0 {
            // SAFETY: kill(2) on the agent this bench started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        std::process::exit(2);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let passed = rt.block_on(run());
    println!(
        "\ngoals (peak < 32 MiB, after ≤ idle + 2 MiB, no QoS 1 message lost): {}",
        if passed { "all met" } else { "NOT all met" }
    );
}
