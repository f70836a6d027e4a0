//! End-to-end commands, side by side in one run (`cargo bench --bench e2e`):
//!
//! 1. Latency: 10,000 paced `matrix/set` commands, each a distinct frame,
//!    from publish on a client until the simulated matrix records the write
//!    (agent in this process, on the binary's runtime), through the
//!    embedded broker and through Mosquitto; next to it the floor, the bare
//!    transport: the same payloads from the same publisher, each half a
//!    period after its command, on a topic only a plain subscriber takes.
//! 2. Cost, of the agent binary with its embedded broker as its own process:
//!    start-up time (exec until it logs `online`), RSS idle and at the peak
//!    of a flood, CPU time per 1,000 commands, the stripped binary's size.
//! 3. Throughput: 20,000 QoS 1 commands as fast as the client sends them,
//!    time until the last is applied, and whether what was applied is in
//!    order (the matrix is latest-wins: skipped frames are fine, going back
//!    is not).
//!
//! Environment: `E2E_COMMANDS` (10000), `E2E_RATE` per second (1000),
//! `E2E_FLOOD` (20000), `E2E_ROUNDS` (5: the latency commands are sent in
//! that many rounds per broker, each with a fresh agent).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{cpu_ticks, env_or, free_port, USER_HZ};
use edge_agent::parts::matrix::Frame;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::time::Instant;

/// The mask of a frame given as text (`01110/10001/...`).
fn mask_of_text(text: &str) -> Option<u32> {
    Frame::parse(text).ok().map(Frame::bits)
}

/// What a client received: arrival time, payload (each client subscribes
/// to one topic).
type Seen = Arc<Mutex<Vec<(Instant, bytes::Bytes)>>>;

/// A runtime on a thread of its own, for test clients: the publisher and
/// the agent do not take turns on one thread, as they would not as
/// separate processes.
fn own_thread(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("client runtime")
}

/// The publisher's runtime.
fn publisher_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| own_thread("bench-publisher"))
}

/// The runtime of the subscribers that watch the agent binary.
fn watcher_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| own_thread("bench-watcher"))
}

/// A connected MQTT 5 client; what it receives goes to `seen` with the time.
/// Its network task runs on `rt` until aborted through the handle returned.
async fn client(
    port: u16,
    id: &str,
    seen: Option<Seen>,
    rt: &tokio::runtime::Handle,
) -> (AsyncClient, tokio::task::AbortHandle) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let (c, mut el) = AsyncClient::new(o, 50_000);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = rt.spawn(async move {
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
                        let at = Instant::now();
                        s.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((at, p.payload));
                    }
                }
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
    (c, task.abort_handle())
}

fn stats(mut d: Vec<Duration>) -> (usize, f64, f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let at = |p: f64| {
        d.get(((d.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    (
        d.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(d.last().copied().unwrap_or_default()),
    )
}

/// A Mosquitto on a free port with `extra` settings, if Mosquitto is installed.
fn mosquitto(extra: &str) -> Option<(Child, u16, tempfile::TempDir)> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = free_port();
    let dir = tempfile::tempdir().ok()?;
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"),
    )
    .ok()?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port, dir));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The median of `d` in ms, as in the table (`stats`).
fn median_ms(d: &[Duration]) -> f64 {
    stats(d.to_vec()).1
}

/// What one round of the latency part measured.
struct Round {
    /// Publish → plain subscriber's receipt, per floor message received.
    floor: Vec<Duration>,
    /// Publish → simulated matrix write, per command written.
    agent: Vec<Duration>,
}

/// One latency round through the broker on `port`, with a fresh agent and
/// fresh clients. The agent runs as in the binary: on its own thread, on the
/// runtime `edge-agent run` uses. Command `i` goes to the agent at slot `i`,
/// and the same payload to a floor topic that only the plain subscriber
/// takes, half a period later: each path has one subscriber, and whatever
/// slows the machine meanwhile slows both. The floor's subscriber runs on
/// the agent's thread, so both are scheduled alike.
async fn latency_round(device: &str, port: u16, n: u32, rate: u32) -> Round {
    use edge_agent::config::Config;
    use edge_agent::hardware::Hardware;
    let cfg = format!(
        "[device]\nid = \"{device}\"\n[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n[display]\nenabled = false\n[tilt]\nenabled = false\n[button]\nenabled = false\n"
    );
    let settings = Config::from_toml(&cfg).expect("config");
    let hardware = Hardware::from_settings(&settings).expect("hardware");
    let matrix = hardware
        .sim
        .as_ref()
        .and_then(|s| s.outputs("matrix").cloned())
        .expect("sim matrix");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let agent = std::thread::spawn(move || {
        let rt = edge_agent::cli::runtime().expect("runtime");
        let _ = handle_tx.send(rt.handle().clone());
        if let Err(e) = rt.block_on(edge_agent::agent::run(settings, hardware, async move {
            let _ = stopped.await;
        })) {
            eprintln!("the agent stopped: {e}");
        }
    });
    // The floor's subscriber runs on the agent's thread: both paths are
    // scheduled alike, and differ by what the agent does with a message.
    let agent_rt = handle_rx.recv().expect("the agent's runtime");
    let topic = format!("edge/{device}/matrix/set");
    let floor_topic = format!("e2e-floor/{device}");
    let floor_seen = Arc::new(Mutex::new(Vec::new()));
    let (floor, floor_task) = client(
        port,
        &format!("{device}-floor"),
        Some(Arc::clone(&floor_seen)),
        &agent_rt,
    )
    .await;
    floor
        .subscribe_many([Filter::new(floor_topic.clone(), QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    let (publisher, publisher_task) = client(
        port,
        &format!("{device}-pub"),
        None,
        publisher_runtime().handle(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Paced by a thread of its own with the OS's fine-grained sleep: tokio's
    // timer works in whole milliseconds, which would release a command and
    // the floor message half a period later together.
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let (to_agent, to_floor, by) = (topic.clone(), floor_topic.clone(), publisher.clone());
    let pacer = std::thread::spawn(move || {
        let mut sent: HashMap<u32, Instant> = HashMap::with_capacity(n as usize);
        let mut floor_sent: HashMap<u32, Instant> = HashMap::with_capacity(n as usize);
        let start = Instant::now() + Duration::from_millis(10);
        for i in 1..=n {
            for (to, times, half) in [(&to_agent, &mut sent, 0), (&to_floor, &mut floor_sent, 1)] {
                let due = start + period * (i - 1) + period / 2 * half;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                times.insert(i, Instant::now());
                by.try_publish(
                    to.clone(),
                    QoS::AtLeastOnce,
                    false,
                    Frame::from_bits(i).to_text(),
                )
                .expect("publish");
            }
        }
        (sent, floor_sent)
    });
    let (sent, floor_sent) = tokio::task::spawn_blocking(move || pacer.join().expect("pacer"))
        .await
        .expect("pacer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent_delays = matrix
        .entries()
        .iter()
        .filter_map(|(at, frame)| {
            sent.get(&Frame::from_leds(frame).bits())
                .map(|t| at.saturating_duration_since(*t))
        })
        .collect();
    let floor_delays = floor_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(at, payload)| {
            let i = mask_of_text(std::str::from_utf8(payload).ok()?)?;
            floor_sent.get(&i).map(|t| at.saturating_duration_since(*t))
        })
        .collect();
    let _ = publisher.disconnect().await;
    let _ = floor.disconnect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    publisher_task.abort();
    floor_task.abort();
    let _ = stop.send(());
    let _ = tokio::task::spawn_blocking(move || agent.join()).await;
    Round {
        floor: floor_delays,
        agent: agent_delays,
    }
}

/// The latency table: every broker, `rounds` rounds each (taken in turn,
/// so that a slow spell of the machine is spread over all of them), `n`
/// commands in all per broker.
async fn latency(brokers: &[(&str, u16)], n: u32, rate: u32, rounds: u32) {
    let rounds = rounds.max(1);
    let per_round = n.div_ceil(rounds);
    let mut results: Vec<Vec<Round>> = brokers.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for ((name, port), done) in brokers.iter().zip(results.iter_mut()) {
            let device: String = format!("e2e-{name}-{round}")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            done.push(latency_round(&device, *port, per_round, rate).await);
        }
    }
    let sent = per_round * rounds;
    for ((name, _), done) in brokers.iter().zip(&results) {
        let pooled = |f: fn(&Round) -> &Vec<Duration>| -> Vec<Duration> {
            done.iter().flat_map(|r| f(r).iter().copied()).collect()
        };
        let (floor, agent) = (pooled(|r| &r.floor), pooled(|r| &r.agent));
        // In percent of the floor; none when nothing reached the floor.
        let over = |floor: &[Duration], agent: &[Duration]| {
            let f = median_ms(floor);
            (f > 0.0 && !agent.is_empty()).then(|| (median_ms(agent) / f - 1.0) * 100.0)
        };
        let percent = |p: Option<f64>| p.map_or("n/a".into(), |p| format!("{p:+.0} %"));
        let overall = percent(over(&floor, &agent));
        let by_round: Vec<String> = done
            .iter()
            .map(|r| percent(over(&r.floor, &r.agent)))
            .collect();
        let diff = median_ms(&agent) - median_ms(&floor);
        for (what, d) in [
            ("floor (plain subscriber)", floor),
            ("agent (write recorded)", agent),
        ] {
            let (count, median, p99, max) = stats(d);
            println!(
                "| {name} | {what} | {count}/{sent} | {median:.3} ms | {p99:.3} ms | {max:.3} ms |"
            );
        }
        println!(
            "| {name} | agent over floor, medians | {diff:+.3} ms | {overall} | rounds in order: {} | |",
            by_round.join(", "),
        );
    }
}

/// The agent binary with its embedded broker: start-up, RSS, CPU, throughput.
async fn cost_and_throughput(n: u32, rate: u32, flood: u32) {
    let bin = env!("CARGO_BIN_EXE_edge-agent");
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let (v4, v5) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("e2e.toml");
    std::fs::write(
        &cfg,
        format!("[device]\nid = \"cost\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n[display]\nenabled = false\n"),
    )
    .expect("config");
    let exec = std::time::Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info,rumqttd=off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let rx = common::online_after(stderr, exec);
    let startup = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = common::status_kib(pid, "VmRSS:").unwrap_or(0);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (watcher, _watcher_task) = client(
        v5,
        "cost-watch",
        Some(Arc::clone(&seen)),
        watcher_runtime().handle(),
    )
    .await;
    watcher
        .subscribe_many([Filter::new("edge/cost/matrix", QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    let (publisher, _publisher_task) =
        client(v5, "cost-pub", None, publisher_runtime().handle()).await;
    let command = |i: u32| {
        publisher.publish(
            "edge/cost/matrix/set",
            QoS::AtLeastOnce,
            false,
            Frame::from_bits(i).to_text(),
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // CPU per 1,000 paced commands.
    let before = cpu_ticks(pid).unwrap_or(0);
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    for i in 1..=n {
        tokio::time::sleep_until(start + period * (i - 1)).await;
        let _ = command(i).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_ms = cpu_ticks(pid).unwrap_or(0).saturating_sub(before) as f64 * 1000.0 / USER_HZ;

    // Throughput: a flood of QoS 1 commands; RSS sampled meanwhile.
    seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let peak = Arc::new(Mutex::new(0u64));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = common::status_kib(pid, "VmRSS:").unwrap_or(0);
                let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                *p = (*p).max(rss);
                drop(p);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let base = 1 << 20; // distinct from the paced frames above
    let last = base + flood;
    let t0 = Instant::now();
    for i in base + 1..=last {
        let _ = command(i).await;
    }
    let sent_in = t0.elapsed();
    let last_frame = Frame::from_bits(last).to_text();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut applied_in = None;
    while Instant::now() < deadline {
        // States arrive in order: the newest is the one to look at.
        let done = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .is_some_and(|(_, p)| String::from_utf8_lossy(p).contains(&last_frame));
        if done {
            applied_in = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let states: Vec<u32> = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(_, p)| {
            let v: serde_json::Value = serde_json::from_slice(p).ok()?;
            mask_of_text(v["frame"].as_str()?)
        })
        .filter(|m| *m > base)
        .collect();
    let in_order = states.windows(2).all(|w| w[0] < w[1]);
    let rss_peak = *peak.lock().unwrap_or_else(|e| e.into_inner());

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| start-up, exec → `online` | {:.0} ms |",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "| RSS idle (agent + embedded broker) | {:.1} MiB |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| RSS peak during the {flood}-command flood | {:.1} MiB |",
        rss_peak as f64 / 1024.0
    );
    println!(
        "| CPU per 1,000 commands ({n} at {rate}/s, agent + broker) | {:.0} ms |",
        cpu_ms * 1000.0 / f64::from(n)
    );
    println!("| stripped binary ({bin}) | {size} bytes |");
    println!(
        "| {flood} QoS 1 commands: sent in | {:.0} ms |",
        sent_in.as_secs_f64() * 1e3
    );
    match applied_in {
        Some(t) => println!(
            "| … last one applied after | {:.0} ms ({:.0} commands/s) |",
            t.as_secs_f64() * 1e3,
            f64::from(flood) / t.as_secs_f64()
        ),
        None => println!("| … last one applied after | not within 60 s |"),
    }
    println!(
        "| … matrix states seen, in order | {} states, {} |",
        states.len(),
        if in_order { "in order" } else { "OUT OF ORDER" }
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
}

fn main() {
    let n = env_or("E2E_COMMANDS", 10_000);
    let rate = env_or("E2E_RATE", 1000);
    let flood = env_or("E2E_FLOOD", 20_000);
    let rounds = env_or("E2E_ROUNDS", 5);
    // The bench's own runtime: it sets things up and waits. The agent runs
    // on the binary's runtime (`edge_agent::cli::runtime`), on a thread of
    // its own, or as the binary itself.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "{n} commands per broker at {rate}/s in {rounds} rounds; publish → write (agent) and publish → receive (floor)\n"
        );
        println!("| broker | path | measured | median | p99 | max |");
        println!("|---|---|---|---|---|---|");
        let (v4, v5) = (free_port(), free_port());
        let embedded = edge_agent::config::Config::from_toml(&format!(
            "[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n"
        ))
        .expect("broker config");
        if let Some(b) = embedded.broker.as_ref() {
            edge_agent::mqtt::broker::start(b).expect("broker");
        }
        let mut brokers = vec![("embedded", v5)];
        // Mosquitto as installed, and with Nagle's algorithm off on its
        // sockets (`set_tcp_nodelay true`, off by default).
        let mut children = Vec::new();
        for (name, extra) in [
            ("mosquitto", ""),
            ("mosquitto, set_tcp_nodelay", "set_tcp_nodelay true\n"),
        ] {
            match mosquitto(extra) {
                Some((child, port, dir)) => {
                    brokers.push((name, port));
                    children.push((child, dir));
                }
                None => println!("| {name} | not installed: skipped | | | | |"),
            }
        }
        latency(&brokers, n, rate, rounds).await;
        for (mut child, _dir) in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        cost_and_throughput(n, rate, flood).await;
    });
}
