//! End-to-end commands, side by side in one run (`cargo bench --bench e2e`):
//!
//! 1. Latency: 10,000 paced `matrix/set` commands, each a distinct frame,
//!    from publish on a client until the simulated matrix records the write
//!    (agent in this process), through the embedded broker and through
//!    Mosquitto; next to it the floor, the same messages from the same
//!    publisher to a plain subscriber on the same broker.
//! 2. Cost, of the agent binary with its embedded broker as its own process:
//!    start-up time (exec until it logs `online`), RSS idle and at the peak
//!    of a flood, CPU time per 1,000 commands, the stripped binary's size.
//! 3. Throughput: 20,000 QoS 1 commands as fast as the client sends them,
//!    time until the last is applied, and whether what was applied is in
//!    order (the matrix is latest-wins: skipped frames are fine, going back
//!    is not).
//!
//! Environment: `E2E_COMMANDS` (10000), `E2E_RATE` per second (1000),
//! `E2E_FLOOD` (20000).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_agent::command::Frame;
use edge_agent::pattern::{frame_of, mask_of};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::time::Instant;

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The mask of a frame given as text (`01110/10001/...`).
fn mask_of_text(text: &str) -> Option<u32> {
    Frame::parse(text).ok().map(|f| mask_of(&f.0))
}

/// What a client received: arrival time, topic, payload.
type Seen = Arc<Mutex<Vec<(Instant, String, Vec<u8>)>>>;

/// The runtime the test clients' network I/O runs on: its own thread, so
/// that the clients (the floor among them) and the agent do not take turns
/// on the same workers, as they would not as separate processes.
fn clients_runtime() -> &'static tokio::runtime::Runtime {
    static CLIENTS: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    CLIENTS.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-clients")
            .enable_all()
            .build()
            .expect("clients runtime")
    })
}

/// A connected MQTT 5 client; what it receives goes to `seen` with the time.
async fn client(port: u16, id: &str, seen: Option<Seen>) -> AsyncClient {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let (c, mut el) = AsyncClient::new(o, 50_000);
    let (tx, rx) = tokio::sync::oneshot::channel();
    clients_runtime().spawn(async move {
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
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        s.lock().unwrap_or_else(|e| e.into_inner()).push((
                            Instant::now(),
                            topic,
                            p.payload.to_vec(),
                        ));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
    c
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

/// Latency through the broker on `port`: the agent in-process, `extra` config.
async fn latency(name: &str, port: u16, broker_cfg: &str, n: u32, rate: u32) {
    use edge_agent::config::Config;
    use edge_agent::hardware::Hardware;
    let device: String = format!("e2e-{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cfg = format!(
        "[device]\nid = \"{device}\"\n{broker_cfg}[display]\nenabled = false\n[tilt]\nenabled = false\n[button]\nenabled = false\n"
    );
    let settings = Config::from_toml(&cfg).expect("config");
    if let Some(b) = settings.broker.as_ref() {
        edge_agent::broker::start(b).expect("broker");
    }
    let hardware = Hardware::from_settings(&settings).expect("hardware");
    let matrix = hardware
        .sim
        .as_ref()
        .and_then(|s| s.matrix.clone())
        .expect("sim matrix");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(edge_agent::agent::run(settings, hardware, async move {
        let _ = stopped.await;
    }));
    let topic = format!("edge/{device}/matrix/set");
    let floor_seen = Arc::new(Mutex::new(Vec::new()));
    let floor = client(
        port,
        &format!("{device}-floor"),
        Some(Arc::clone(&floor_seen)),
    )
    .await;
    floor
        .subscribe_many([Filter::new(topic.clone(), QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    let publisher = client(port, &format!("{device}-pub"), None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut sent: HashMap<u32, Instant> = HashMap::with_capacity(n as usize);
    let start = Instant::now();
    for i in 1..=n {
        tokio::time::sleep_until(start + period * (i - 1)).await;
        sent.insert(i, Instant::now());
        publisher
            .publish(
                topic.clone(),
                QoS::AtLeastOnce,
                false,
                frame_of(i).to_text(),
            )
            .await
            .expect("publish");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent_at: HashMap<u32, Instant> = matrix
        .entries()
        .iter()
        .map(|(at, frame)| (mask_of(frame), *at))
        .collect();
    let agent_delays: Vec<Duration> = agent_at
        .iter()
        .filter_map(|(mask, at)| sent.get(mask).map(|t| at.saturating_duration_since(*t)))
        .collect();
    let mut floor_at: HashMap<u32, Instant> = HashMap::new();
    let floor_delays: Vec<Duration> = floor_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(at, _, payload)| {
            let mask = mask_of_text(std::str::from_utf8(payload).ok()?)?;
            floor_at.insert(mask, *at);
            sent.get(&mask).map(|t| at.saturating_duration_since(*t))
        })
        .collect();
    // The agent's own share, command by command: its write minus the
    // floor's receipt of the same message (common delays cancel out).
    let mut extra: Vec<f64> = agent_at
        .iter()
        .filter(|(mask, _)| sent.contains_key(mask))
        .filter_map(|(mask, at)| {
            let f = floor_at.get(mask)?;
            Some(if at >= f {
                at.duration_since(*f).as_secs_f64() * 1e3
            } else {
                -(f.duration_since(*at).as_secs_f64() * 1e3)
            })
        })
        .collect();
    extra.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        extra
            .get(((extra.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let extra_row = format!(
        "| {name} | agent − floor, same command | {}/{n} | {:.3} ms | {:.3} ms | {:.3} ms |",
        extra.len(),
        pick(0.5),
        pick(0.99),
        extra.last().copied().unwrap_or_default()
    );
    for (what, d) in [
        ("floor (plain subscriber)", floor_delays),
        ("agent (write recorded)", agent_delays),
    ] {
        let (count, median, p99, max) = stats(d);
        println!("| {name} | {what} | {count}/{n} | {median:.3} ms | {p99:.3} ms | {max:.3} ms |");
    }
    println!("{extra_row}");
    let _ = stop.send(());
    let _ = agent.await;
}

fn proc_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
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
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" online") {
                if let Some(t) = tx.take() {
                    let _ = t.send(exec.elapsed());
                }
            }
        }
    });
    let startup = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = proc_field(pid, "VmRSS:").unwrap_or(0);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = client(v5, "cost-watch", Some(Arc::clone(&seen))).await;
    watcher
        .subscribe_many([Filter::new("edge/cost/matrix", QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    let publisher = client(v5, "cost-pub", None).await;
    let command = |i: u32| {
        publisher.publish(
            "edge/cost/matrix/set",
            QoS::AtLeastOnce,
            false,
            frame_of(i).to_text(),
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
    let cpu_ms = cpu_ticks(pid).unwrap_or(0).saturating_sub(before) as f64 * 10.0;

    // Throughput: a flood of QoS 1 commands; RSS sampled meanwhile.
    seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let peak = Arc::new(Mutex::new(0u64));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = proc_field(pid, "VmRSS:").unwrap_or(0);
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
    let last_frame = frame_of(last).to_text();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut applied_in = None;
    while Instant::now() < deadline {
        // States arrive in order: the newest is the one to look at.
        let done = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .is_some_and(|(_, _, p)| String::from_utf8_lossy(p).contains(&last_frame));
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
        .filter_map(|(_, _, p)| {
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
    // The agent's runtime, as in the binary (src/cli.rs): one worker.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "{n} commands at {rate}/s; publish → write (agent) and publish → receive (floor)\n"
        );
        println!("| broker | path | measured | median | p99 | max |");
        println!("|---|---|---|---|---|---|");
        let (v4, v5) = (free_port(), free_port());
        latency(
            "embedded",
            v5,
            &format!("[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n"),
            n,
            rate,
        )
        .await;
        // Mosquitto as installed, and with Nagle's algorithm off on its
        // sockets (`set_tcp_nodelay true`, off by default).
        for (name, extra) in [
            ("mosquitto", ""),
            ("mosquitto, set_tcp_nodelay", "set_tcp_nodelay true\n"),
        ] {
            match mosquitto(extra) {
                Some((mut child, port, _dir)) => {
                    latency(
                        name,
                        port,
                        &format!(
                            "[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"
                        ),
                        n,
                        rate,
                    )
                    .await;
                    let _ = child.kill();
                    let _ = child.wait();
                }
                None => println!("| {name} | not installed: skipped | | | | |"),
            }
        }
        cost_and_throughput(n, rate, flood).await;
    });
}
