//! Small and lean on a Pi Zero (issue 20), side by side in one run
//! (`cargo bench --bench lean`), of the release binary as users run it:
//!
//! 1. Size: the stripped binary, and the static ones in `dist/` when
//!    `scripts/cross.sh` has built them. Goal: each ≤ 5 MB.
//! 2. Memory at rest: VmRSS, anonymous and file-backed, and the
//!    proportional share (Pss, which counts pages the broker process shares
//!    with the agent once), per process, 3 s after `online`, display on:
//!    with the broker off (on Mosquitto) and with the embedded broker.
//!    Goals: ≤ 5 MB broker off, ≤ 10 MB with the embedded broker.
//! 3. The embedded broker's path: a command → state echo, one at a time
//!    from a client on its own thread (publish `matrix/set`, wait for the
//!    retained `matrix` state that shows its frame), and the same from the
//!    floor, a minimal C client (`benches/echo.c`, libmosquitto) that
//!    republishes each command on its state topic; rounds of each in turn
//!    on the embedded broker and on Mosquitto (`set_tcp_nodelay true`, as
//!    the embedded broker has it now). CPU time of the agent's
//!    processes and of the broker per 1,000 commands. Goals, on the
//!    embedded broker: overhead within 30 µs of the echo's at the median,
//!    no round trip over 5 ms, CPU within 1.5× of the Mosquitto case.
//!
//! Environment: `LEAN_BIN`, the agent binary to measure (default: the one
//! cargo built for the bench; the shipped one is the static
//! `dist/edge-agent-x86_64-unknown-linux-musl` of `scripts/cross.sh`),
//! `LEAN_COMMANDS` (10000 per path and broker), `LEAN_ROUNDS` (5). Needs
//! Mosquitto and libmosquitto-dev; 127.0.0.1 only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{cpu_ticks, env_or, family, free_port, kib_field, online_after, USER_HZ};
use edge_agent::parts::matrix::Frame;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The agent binary under measurement.
fn agent_bin() -> PathBuf {
    // Absolute: the agent runs in a folder of its own.
    std::env::var_os("LEAN_BIN")
        .map(|p| std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p)))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_edge-agent")))
}

/// Goal of each binary's size, in bytes.
const SIZE_GOAL: u64 = 5_000_000;

fn sizes() {
    println!("## Size\n");
    println!("| binary | bytes | ≤ 5 MB |");
    println!("|---|---:|---|");
    let mut bins = vec![PathBuf::from(env!("CARGO_BIN_EXE_edge-agent"))];
    if agent_bin() != bins[0] {
        bins.push(agent_bin());
    }
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    if let Ok(entries) = std::fs::read_dir(&dist) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("edge-agent-") && !n.contains('.'))
            })
            .collect();
        found.sort();
        bins.extend(found);
    }
    for bin in bins {
        let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
        println!(
            "| {} | {size} | {} |",
            bin.display(),
            if size <= SIZE_GOAL { "yes" } else { "NO" }
        );
    }
    println!();
}

/// One process's memory, in kB.
#[derive(Default, Clone, Copy)]
struct Mem {
    rss: u64,
    anon: u64,
    file: u64,
    pss: u64,
}

fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Mem {
        rss: kib_field(&status, "VmRSS:").unwrap_or(0),
        anon: kib_field(&status, "RssAnon:").unwrap_or(0),
        file: kib_field(&status, "RssFile:").unwrap_or(0),
        pss: kib_field(&rollup, "Pss:").unwrap_or(0),
    }
}

/// A process this bench started; ended (SIGTERM, then waited for) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// The agent binary with `config`, in `dir`, once it has logged `online`.
fn agent(dir: &Path, config: &str) -> Proc {
    let cfg = dir.join("lean.toml");
    std::fs::write(&cfg, config).expect("config");
    let mut child = Command::new(agent_bin())
        .arg("--config")
        .arg(&cfg)
        .current_dir(dir)
        .env("RUST_LOG", "info,rumqttd=off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    let stderr = child.stderr.take().expect("stderr");
    let rx = online_after(stderr, std::time::Instant::now());
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the agent comes online within 10 s");
    Proc(child)
}

/// A Mosquitto on a free port, as installed plus `extra` settings.
fn mosquitto(dir: &Path, extra: &str) -> (Proc, u16) {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Mosquitto installed");
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"),
    )
    .expect("mosquitto.conf");
    let child = Proc(
        Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Mosquitto"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("Mosquitto did not listen on {port}");
}

/// The C echo client, built once into `dir`.
fn build_echo(dir: &Path) -> PathBuf {
    let out = dir.join("echo");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/echo.c");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lmosquitto")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cannot build benches/echo.c: it needs cc and libmosquitto-dev"
    );
    out
}

/// The echo client on `port`, once subscribed.
fn echo(bin: &Path, port: u16, command: &str, state: &str) -> Proc {
    let mut child = Command::new(bin)
        .args(["127.0.0.1", &port.to_string(), command, state])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the echo client");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "the echo client did not subscribe");
    Proc(child)
}

fn idle_memory(dir: &Path) {
    println!("## Memory at rest (3 s after `online`, display on)\n");
    println!("| case | process | VmRSS | anonymous | file-backed | Pss |");
    println!("|---|---|---:|---:|---:|---:|");
    let (_mosquitto, port) = mosquitto(dir, "");
    let off = format!(
        "[device]\nid = \"lean\"\nstate_dir = \"state\"\n[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"
    );
    let (v4, v5) = (free_port(), free_port());
    let on = format!(
        "[device]\nid = \"lean\"\nstate_dir = \"state\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n"
    );
    let mut verdicts = Vec::new();
    for (case, config, goal_kb) in [
        ("broker off (Mosquitto)", off, 5_000u64),
        ("embedded broker", on, 10_000),
    ] {
        let agent = agent(dir, &config);
        std::thread::sleep(Duration::from_secs(3));
        let pids = family(agent.0.id());
        let names = ["agent", "broker supervisor", "broker"];
        let mut total = Mem::default();
        for (i, pid) in pids.iter().enumerate() {
            let m = mem(*pid);
            println!(
                "| {case} | {} | {} kB | {} kB | {} kB | {} kB |",
                names.get(i).copied().unwrap_or("other"),
                m.rss,
                m.anon,
                m.file,
                m.pss
            );
            total.rss += m.rss;
            total.anon += m.anon;
            total.file += m.file;
            total.pss += m.pss;
        }
        if pids.len() > 1 {
            println!(
                "| {case} | all | {} kB | {} kB | {} kB | {} kB |",
                total.rss, total.anon, total.file, total.pss
            );
        }
        verdicts.push(format!(
            "{case}: {} kB (Pss of all its processes) {} {goal_kb} kB",
            total.pss,
            if total.pss <= goal_kb {
                "≤"
            } else {
                "> GOAL"
            }
        ));
    }
    println!();
    for v in verdicts {
        println!("- {v}");
    }
    println!();
}

/// A connected MQTT 5 client whose network task runs on a thread of its
/// own; what it receives arrives on the channel with the time it came.
fn client(
    port: u16,
    id: &str,
    rt: &tokio::runtime::Runtime,
) -> (AsyncClient, mpsc::UnboundedReceiver<(Instant, String)>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let (c, mut el) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    rt.spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&p.payload).into_owned();
                    if tx.send((at, text)).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    (c, rx)
}

/// Round trips of `n` commands, one at a time: each frame published on
/// `command`, until the state on `state` shows it (1 s at most; a lost one
/// counts as 1 s).
async fn round_trips(
    c: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<(Instant, String)>,
    command: &str,
    first: u32,
    n: u32,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n as usize);
    for i in first..first + n {
        let frame = Frame::from_bits(i).to_text();
        let sent = Instant::now();
        c.publish(command, QoS::AtLeastOnce, false, frame.clone())
            .await
            .expect("publish");
        let deadline = sent + Duration::from_secs(1);
        let took = loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((at, text))) if text.contains(&frame) => break at - sent,
                Ok(Some(_)) => continue,
                _ => break Duration::from_secs(1),
            }
        };
        out.push(took);
    }
    out
}

fn stats(mut d: Vec<Duration>) -> (usize, f64, f64, f64, usize) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let at = |p: f64| {
        d.get(((d.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let stalls = d.iter().filter(|x| **x > Duration::from_millis(5)).count();
    (
        d.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(d.last().copied().unwrap_or_default()),
        stalls,
    )
}

/// What one broker's part measured.
struct PathResult {
    agent: Vec<Duration>,
    echo: Vec<Duration>,
    /// CPU time of the agent's processes and the broker during the agent's
    /// rounds, per 1,000 commands, in ms.
    cpu_per_1000: f64,
    /// Of it, the agent process's own.
    agent_cpu_per_1000: f64,
    /// The broker's CPU time during the echo's rounds, per 1,000 commands.
    echo_broker_cpu_per_1000: f64,
}

async fn broker_path(
    embedded: bool,
    dir: &Path,
    echo_bin: &Path,
    n: u32,
    rounds: u32,
    clients: &tokio::runtime::Runtime,
) -> PathResult {
    let mut _mosquitto = None;
    let (config, port, broker_pids): (String, u16, Vec<u32>) = if embedded {
        let (v4, v5) = (free_port(), free_port());
        (
            format!("[device]\nid = \"lean\"\nstate_dir = \"state\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n[display]\nenabled = false\n"),
            v5,
            Vec::new(),
        )
    } else {
        // Nagle's algorithm off, as on the embedded broker: as installed,
        // Mosquitto holds each state behind the command's PUBACK until the
        // client's delayed ACK (40 ms), for the echo as for the agent.
        let (m, port) = mosquitto(dir, "set_tcp_nodelay true\n");
        let pid = m.0.id();
        _mosquitto = Some(m);
        (
            format!("[device]\nid = \"lean\"\nstate_dir = \"state\"\n[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n[display]\nenabled = false\n"),
            port,
            vec![pid],
        )
    };
    let agent = agent(dir, &config);
    let agent_pid = agent.0.id();
    let mut measured = family(agent_pid);
    measured.extend(broker_pids);
    let brokers: Vec<u32> = measured[1..].to_vec();
    let _echo = echo(echo_bin, port, "echo/lean/matrix/set", "echo/lean/matrix");
    let (c, mut rx) = client(port, "lean-bench", clients);
    c.subscribe_many([
        Filter::new("edge/lean/matrix", QoS::AtMostOnce),
        Filter::new("echo/lean/matrix", QoS::AtMostOnce),
    ])
    .await
    .expect("subscribe");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Warm-up, not counted.
    round_trips(&c, &mut rx, "edge/lean/matrix/set", 1 << 22, 200).await;
    round_trips(&c, &mut rx, "echo/lean/matrix/set", 1 << 22, 200).await;
    let per_round = n / rounds.max(1);
    let (mut agent_t, mut echo_t) = (Vec::new(), Vec::new());
    let (mut cpu, mut agent_cpu, mut echo_broker_cpu) = (0u64, 0u64, 0u64);
    let ticks = |pids: &[u32]| pids.iter().filter_map(|p| cpu_ticks(*p)).sum::<u64>();
    for r in 0..rounds {
        let first = 1 + r * per_round;
        let (before, agent_before) = (ticks(&measured), ticks(&[agent_pid]));
        agent_t.extend(round_trips(&c, &mut rx, "edge/lean/matrix/set", first, per_round).await);
        cpu += ticks(&measured) - before;
        agent_cpu += ticks(&[agent_pid]) - agent_before;
        let before = ticks(&brokers);
        echo_t.extend(round_trips(&c, &mut rx, "echo/lean/matrix/set", first, per_round).await);
        echo_broker_cpu += ticks(&brokers) - before;
    }
    drop(agent);
    let per_1000 = |t: u64| t as f64 * 1000.0 / USER_HZ * 1000.0 / f64::from(per_round * rounds);
    PathResult {
        cpu_per_1000: per_1000(cpu),
        agent_cpu_per_1000: per_1000(agent_cpu),
        echo_broker_cpu_per_1000: per_1000(echo_broker_cpu),
        agent: agent_t,
        echo: echo_t,
    }
}

fn main() {
    println!("The agent measured: {}\n", agent_bin().display());
    let n = env_or("LEAN_COMMANDS", 10_000);
    let rounds = env_or("LEAN_ROUNDS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    sizes();
    idle_memory(dir.path());

    let echo_bin = build_echo(dir.path());
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lean-client")
        .enable_all()
        .build()
        .expect("client runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("## The embedded broker's path: command → state, one at a time\n");
    println!("| broker | path | round trips | median | p99 | max | over 5 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for (name, embedded) in [
        ("embedded (rumqttd 0.20)", true),
        ("Mosquitto 2.0, set_tcp_nodelay", false),
    ] {
        let r = rt.block_on(broker_path(
            embedded,
            dir.path(),
            &echo_bin,
            n,
            rounds,
            &clients,
        ));
        for (path, d) in [("agent", &r.agent), ("C echo client", &r.echo)] {
            let (count, median, p99, max, stalls) = stats(d.clone());
            println!(
                "| {name} | {path} | {count} | {median:.3} ms | {p99:.3} ms | {max:.3} ms | {stalls} |"
            );
        }
        results.push((name, r));
    }
    println!();
    println!("| broker | agent − echo, medians | CPU per 1,000 commands: agent + broker | of it the agent's | the broker's for 1,000 echoes |");
    println!("|---|---:|---:|---:|---:|");
    for (name, r) in &results {
        let over = (stats(r.agent.clone()).1 - stats(r.echo.clone()).1) * 1e3;
        println!(
            "| {name} | {over:+.0} µs | {:.0} ms | {:.0} ms | {:.0} ms |",
            r.cpu_per_1000, r.agent_cpu_per_1000, r.echo_broker_cpu_per_1000
        );
    }
    if let [(_, e), (_, m)] = &results[..] {
        let over = (stats(e.agent.clone()).1 - stats(e.echo.clone()).1) * 1e3;
        let stalls = stats(e.agent.clone()).4;
        let ratio = e.cpu_per_1000 / m.cpu_per_1000.max(f64::MIN_POSITIVE);
        println!();
        println!(
            "- embedded: overhead over the echo {over:+.0} µs at the median ({}), {stalls} round trips over 5 ms ({}), CPU {ratio:.2}× the Mosquitto case ({})",
            if over <= 30.0 { "≤ 30 µs" } else { "> GOAL 30 µs" },
            if stalls == 0 { "none" } else { "GOAL: none" },
            if ratio <= 1.5 { "≤ 1.5×" } else { "> GOAL 1.5×" },
        );
    }
}
