//! Tilt stream benchmark: publish → PWM write delay and CPU per 1,000
//! messages, through the embedded broker. Run with `cargo bench --bench tilt`.
//!
//! Latency: broker and agent in this process (simulated PWM records the time
//! of every write); each message carries a distinct y, so every write is
//! matched to the message that asked for it. Values replaced within the
//! write interval are never written (latest wins) and have no delay to report.
//!
//! CPU: the agent (with its embedded broker) as its own process, its user +
//! system time read from /proc before and after the stream.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::time::Instant;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn client(port: u16, id: &str) -> AsyncClient {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut el) = AsyncClient::new(o, 10_000);
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_))) => {
                    if let Some(t) = tx.take() {
                        let _ = t.send(());
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

/// The y of message i: distinct for every i in a run, within (0, 100].
fn y_of(i: u32) -> f64 {
    f64::from(i + 1) * 0.001
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn latency(rate: u32, n: u32) {
    use edge_agent::config::Config;
    use edge_agent::hardware::Hardware;
    let (v4, v5) = (free_port(), free_port());
    let cfg = format!(
        "[device]\nid = \"bench\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n[display]\nenabled = false\n"
    );
    let settings = Config::from_toml(&cfg).expect("config");
    edge_agent::mqtt::broker::start(settings.broker.as_ref().expect("broker")).expect("broker");
    let hardware = Hardware::from_settings(&settings).expect("hw");
    let right = hardware
        .sim
        .as_ref()
        .and_then(|s| s.pwm("led/right").cloned())
        .expect("right LED");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The agent on its own thread and the binary's runtime, as `edge-agent run`.
    let agent = std::thread::spawn(move || {
        let rt = edge_agent::cli::runtime().expect("runtime");
        let _ = rt.block_on(edge_agent::agent::run(settings, hardware, async move {
            let _ = stopped.await;
        }));
    });
    let c = client(v5, "bench-pub").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + period * i).await;
        let y = y_of(i);
        sent.insert((y * 1000.0).round() as u64, Instant::now());
        c.publish(
            "edge/bench/tilt/set",
            QoS::AtLeastOnce,
            false,
            format!("0 {y:.3} 9.81"),
        )
        .await
        .expect("publish");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delays: Vec<Duration> = right
        .entries()
        .iter()
        .filter_map(|(at, duty)| {
            let key = (duty * 100.0 * 1000.0).round() as u64;
            sent.get(&key).map(|t| at.saturating_duration_since(*t))
        })
        .collect();
    delays.sort();
    println!(
        "| {rate}/s | {n} | {} ({:.1} %) | {:.3} ms | {:.3} ms | {:.3} ms |",
        delays.len(),
        delays.len() as f64 * 100.0 / f64::from(n),
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let _ = stop.send(());
    let _ = tokio::task::spawn_blocking(move || agent.join()).await;
}

/// CPU ticks of each thread of `pid`, by thread name.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let name = stat
                .split_once('(')
                .and_then(|(_, r)| r.rsplit_once(')'))
                .map(|(n, _)| n.to_string());
            let ticks = stat.rsplit_once(')').and_then(|(_, rest)| {
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            });
            if let (Some(n), Some(t)) = (name, ticks) {
                out.push((n, t));
            }
        }
    }
    out
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

async fn cpu(rate: u32, n: u32) {
    let (v4, v5) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("edge-agent-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let cfg = dir.join("bench.toml");
    std::fs::write(
        &cfg,
        format!("[device]\nid = \"cpu\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n[display]\nenabled = false\n"),
    )
    .expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn,rumqttd=off")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent");
    let pid = child.id();
    let c = client(v5, "cpu-pub").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hz = 100.0; // USER_HZ on Linux
    let before = cpu_ticks(pid).unwrap_or(0);
    let broker_threads = ["rumqttd", "router-0", "v4-1", "v5-1"];
    let agent_ticks = |pid| {
        thread_ticks(pid)
            .into_iter()
            .filter(|(n, _)| !broker_threads.contains(&n.as_str()))
            .map(|(_, t)| t)
            .sum::<u64>()
    };
    let agent_before = agent_ticks(pid);
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + period * i).await;
        let y = f64::from(i % 199) - 99.0;
        let _ = c
            .publish(
                "edge/cpu/tilt/set",
                QoS::AtLeastOnce,
                false,
                format!("0 {y} 9.81"),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = cpu_ticks(pid).unwrap_or(0);
    if std::env::var_os("BENCH_THREADS").is_some() {
        eprintln!("threads: {:?}", thread_ticks(pid));
    }
    let ms = (after.saturating_sub(before)) as f64 * 1000.0 / hz;
    let agent_ms = agent_ticks(pid).saturating_sub(agent_before) as f64 * 1000.0 / hz;
    println!(
        "| {rate}/s | {n} | {ms:.0} ms | {:.1} ms | {:.1} ms |",
        ms * 1000.0 / f64::from(n),
        agent_ms * 1000.0 / f64::from(n)
    );
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("Publish → PWM write, through the embedded broker (in-process):\n");
        println!("| rate | messages | written (share) | median | p99 | max |");
        println!("|---|---|---|---|---|---|");
        latency(100, 3_000).await;
        latency(1_000, 10_000).await;
        latency(10_000, 50_000).await;
        println!("\nCPU of the agent process (agent + embedded broker), per 1,000 messages:\n");
        println!("| rate | messages | CPU time (process) | per 1,000 (process) | per 1,000 (agent threads, without the broker's) |");
        println!("|---|---|---|---|---|");
        cpu(1_000, 20_000).await;
        cpu(10_000, 100_000).await;
    });
}
