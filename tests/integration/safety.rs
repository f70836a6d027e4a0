//! Safe state: after the broker has been away longer than
//! `safety.offline_timeout_ms`, on SIGTERM, and on a panic in any task, the
//! outputs go to their configured safe values (`[safety]`).

use crate::common;
use crate::scenarios;

use std::time::{Duration, Instant};

use common::*;
use edge_agent::config::Config;
use edge_agent::hardware::Hardware;

/// The safe frame of these tests: the centre LED only.
const SAFE_FRAME: &str = "00000/00000/00100/00000/00000";

fn safe_frame() -> Vec<bool> {
    (0..25).map(|i| i == 12).collect()
}

fn safety(timeout_ms: u64) -> String {
    format!(
        "[display]\nenabled = false\n[safety]\noffline_timeout_ms = {timeout_ms}\nled_percent = 10\nmatrix = \"{SAFE_FRAME}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_go_safe_when_the_broker_is_away_too_long_and_at_shutdown() {
    let mut broker = scenarios::Broker::embedded();
    let device = "safe-off";
    let cfg = format!("{}{}", external_config(device, broker.port()), safety(600));
    let agent = InProcess::from_settings(Config::from_toml(&cfg).expect("config"));
    let c = Client::connect(broker.port(), "safe-off-c").await;
    let mut w = Client::connect(broker.port(), "safe-off-w").await;
    w.subscribe(&format!("edge/{device}/status")).await;
    w.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.publish(&format!("edge/{device}/led/left/set"), "ON")
        .await;
    c.publish(
        &format!("edge/{device}/matrix/set"),
        "11111/11111/11111/11111/11111",
    )
    .await;
    let sim = agent.sim.clone();
    let matrix = sim.outputs("matrix").cloned().expect("matrix");
    assert!(agent.wait_duties(1.0, 0.0, Duration::from_secs(2)).await);
    assert!(
        eventually(Duration::from_secs(2), || matrix.last()
            == Some(vec![true; 25]))
        .await
    );

    let lost = Instant::now();
    broker.kill();
    // Not before the timeout: a short outage changes nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim.pwm("led/left").and_then(|r| r.last()),
        Some(1.0),
        "too early"
    );
    assert_eq!(matrix.last(), Some(vec![true; 25]), "too early");
    // Then the safe values.
    assert!(
        agent.wait_duties(0.1, 0.1, Duration::from_secs(2)).await,
        "LEDs at the safe 10 %"
    );
    assert!(
        eventually(Duration::from_secs(1), || matrix.last()
            == Some(safe_frame()))
        .await,
        "the safe frame: {:?}",
        matrix.last()
    );
    let safe_after = lost.elapsed();
    assert!(
        safe_after >= Duration::from_millis(600) && safe_after < Duration::from_millis(1500),
        "safe {safe_after:?} after the broker went"
    );

    // Back online, its retained state shows the safe values. (It also says
    // why on `<base>/error`, but that event is not retained, and whether a
    // client here subscribes before the agent is back is a race.)
    broker.restart();
    let mut e = Client::connect(broker.port(), "safe-off-e").await;
    e.subscribe(&format!("edge/{device}/led/left")).await;
    let led = e
        .expect(Duration::from_secs(5), |m| m.topic.ends_with("/led/left"))
        .await
        .expect("LED state");
    assert_eq!(led.json()["brightness"], 26, "{}", led.text());

    // Shutdown leaves the safe values too (the first client went with the broker).
    e.publish(
        &format!("edge/{device}/led/right/set"),
        r#"{"state": "ON", "brightness": 255}"#,
    )
    .await;
    assert!(agent.wait_duties(0.1, 1.0, Duration::from_secs(2)).await);
    agent.stop().await;
    assert_eq!(sim.pwm("led/left").and_then(|r| r.last()), Some(0.1));
    assert_eq!(sim.pwm("led/right").and_then(|r| r.last()), Some(0.1));
    assert_eq!(matrix.last(), Some(safe_frame()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_changes_nothing_and_zero_means_never() {
    let mut broker = scenarios::Broker::embedded();
    let device = "safe-never";
    let cfg = format!("{}{}", external_config(device, broker.port()), safety(0));
    let agent = InProcess::from_settings(Config::from_toml(&cfg).expect("config"));
    let c = Client::connect(broker.port(), "safe-never-c").await;
    let mut w = Client::connect(broker.port(), "safe-never-w").await;
    w.subscribe(&format!("edge/{device}/status")).await;
    w.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.publish(&format!("edge/{device}/led/left/set"), "ON")
        .await;
    assert!(agent.wait_duties(1.0, 0.0, Duration::from_secs(2)).await);
    let writes = agent.sim.pwm("led/left").map(|r| r.total()).unwrap_or(0);
    broker.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        agent.sim.pwm("led/left").map(|r| r.total()).unwrap_or(0),
        writes,
        "no write while the broker is away"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_task_makes_the_outputs_safe_and_stops_the_agent() {
    // In-process, to see the simulated outputs: stopped by the next panic.
    let broker = scenarios::Broker::embedded();
    let device = "safe-panic";
    let cfg = format!(
        "{}{}",
        external_config(device, broker.port()),
        safety(30_000)
    );
    let settings = Config::from_toml(&cfg).expect("config");
    let hardware = Hardware::from_settings(&settings).expect("hardware");
    let sim = hardware.sim.clone().expect("sim");
    let panicked = edge_agent::service::next_panic();
    // On its own thread and the binary's runtime, as `edge-agent run`.
    let run = std::thread::spawn(move || {
        edge_agent::cli::runtime()
            .expect("runtime")
            .block_on(edge_agent::agent::run(settings, hardware, async move {
                let _ = panicked.await;
            }))
    });
    let c = Client::connect(broker.port(), "safe-panic-c").await;
    let mut w = Client::connect(broker.port(), "safe-panic-w").await;
    w.subscribe(&format!("edge/{device}/status")).await;
    w.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.publish(&format!("edge/{device}/led/left/set"), "ON")
        .await;
    let left = sim.pwm("led/left").expect("left").clone();
    assert!(eventually(Duration::from_secs(2), || left.last() == Some(1.0)).await);
    c.publish(&format!("edge/{device}/sim/panic"), "").await;
    let stopped = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || run.join()),
    )
    .await
    .expect("the agent stops after the panic")
    .expect("join")
    .expect("the agent loop itself did not panic");
    assert!(stopped.is_ok(), "{stopped:?}");
    assert_eq!(left.last(), Some(0.1));
    assert_eq!(
        sim.outputs("matrix").and_then(|m| m.last()),
        Some(safe_frame())
    );
    w.expect(Duration::from_secs(2), |m| m.text() == "offline")
        .await
        .expect("offline");

    // As a process: one line on stderr and a non-zero exit (systemd restarts it).
    let v4 = free_port();
    let v5 = free_port();
    let mut agent = Agent::start(&format!(
        "{}[display]\nenabled = false\n",
        embedded_config("safe-proc", v4, v5)
    ));
    let mut p = Client::connect(v5, "safe-proc-w").await;
    p.subscribe("edge/safe-proc/status").await;
    p.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    p.publish("edge/safe-proc/sim/panic", "").await;
    let status = agent
        .wait_exit(Duration::from_secs(3))
        .expect("the agent exits after a panic");
    assert_eq!(status.code(), Some(70), "{}", agent.stderr_text());
    let stderr = agent.stderr_text();
    assert!(
        stderr.contains("stopped after a panic") && stderr.contains("sim/panic"),
        "{stderr}"
    );
}

/// A board whose broker is down at boot: ready for systemd once its parts
/// run, online as soon as the broker appears, and its button reported then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_agent_is_ready_and_connects_when_it_comes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = free_port();
    let device = "safe-noboot";
    let mut agent = Agent::start_with_env(
        &format!(
            "{}reconnect_min_ms = 100\nreconnect_max_ms = 300\n[display]\nbackend = \"sim\"\n",
            external_config(device, port)
        ),
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("path"))],
    );
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification within 5 s");
    let said = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(said.contains("READY=1"), "{said}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        agent.child.try_wait().expect("try_wait").is_none(),
        "{}",
        agent.stderr_text()
    );
    let Some(_broker) = Mosquitto::start_on(port) else {
        return;
    };
    let mut c = Client::connect(port, "safe-noboot-c").await;
    c.subscribe(&format!("edge/{device}/status")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online once the broker is there");
    c.subscribe(&format!("edge/{device}/button/event")).await;
    c.publish(&format!("edge/{device}/sim/button/press"), "")
        .await;
    let ev = c
        .expect(Duration::from_secs(3), |m| {
            m.topic.ends_with("/button/event")
        })
        .await
        .expect("the press is reported");
    assert_eq!(ev.json()["event_type"], "press", "{}", ev.text());
    let n = notify.recv(&mut buf).unwrap_or(0);
    let status = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(status.contains("STATUS=online"), "{status}");
}

/// SIGTERM, SIGHUP and SIGQUIT are the same safe stop, and after it every
/// retained state says what the outputs show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stop_signal_leaves_retained_states_true() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    for sig in ["TERM", "HUP", "QUIT"] {
        let device = format!("safe-sig-{}", sig.to_lowercase());
        let mut agent = Agent::start(&format!(
            "{}[display]\nenabled = false\n",
            external_config(&device, broker.port)
        ));
        let base = format!("edge/{device}");
        let mut c = Client::connect(broker.port, &format!("{device}-c")).await;
        c.subscribe(&format!("{base}/matrix")).await;
        c.subscribe(&format!("{base}/led/left")).await;
        c.publish(
            &format!("{base}/matrix/set"),
            "11111/00000/11111/00000/11111",
        )
        .await;
        c.publish(&format!("{base}/led/left/set"), "ON").await;
        c.expect(Duration::from_secs(5), |m| {
            m.json()["state"] == "ON" && m.topic.ends_with("/matrix")
        })
        .await
        .expect("matrix ON");
        signal(agent.pid(), sig);
        let status = agent
            .wait_exit(Duration::from_secs(3))
            .expect("the agent stops");
        assert_eq!(status.code(), Some(0), "SIG{sig}: {}", agent.stderr_text());
        for (topic, want) in [("matrix", "OFF"), ("led/left", "OFF")] {
            let m = retained(
                broker.port,
                &format!("{device}-r"),
                &format!("{base}/{topic}"),
            )
            .await;
            assert_eq!(
                m.json()["state"],
                want,
                "SIG{sig}: {base}/{topic} = {}",
                m.text()
            );
        }
        let s = retained(
            broker.port,
            &format!("{device}-s"),
            &format!("{base}/status"),
        )
        .await;
        assert_eq!(s.text(), "offline", "SIG{sig}");
    }
}

/// A panic in the agent loop itself (not a task of it) also ends in the
/// safe stop: `offline`, exit code 70.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_agent_loop_is_a_safe_stop() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let device = "safe-loop";
    let mut agent = Agent::start(&format!(
        "{}{}",
        external_config(device, broker.port),
        safety(30_000)
    ));
    let base = format!("edge/{device}");
    let mut c = Client::connect(broker.port, "safe-loop-c").await;
    c.subscribe(&format!("{base}/status")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.publish(&format!("{base}/led/left/set"), "ON").await;
    c.publish(&format!("{base}/sim/panic"), "loop").await;
    let status = agent
        .wait_exit(Duration::from_secs(3))
        .expect("the agent exits after a panic");
    assert_eq!(status.code(), Some(70), "{}", agent.stderr_text());
    assert!(
        agent.stderr_text().contains("agent loop"),
        "{}",
        agent.stderr_text()
    );
    c.expect(Duration::from_secs(2), |m| m.text() == "offline")
        .await
        .expect("offline");
    let led = retained(broker.port, "safe-loop-r", &format!("{base}/led/left")).await;
    assert_eq!(led.json()["brightness"], 26, "{}", led.text());
}

/// Without a broker the clock still runs: the board is drawn again at the
/// next whole minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_clock_is_drawn_on_the_minute() {
    let cfg = format!(
        "{}[display]\nbackend = \"sim\"\nrefresh_ms = 0\ntime_zone = \"UTC\"\n",
        external_config("safe-noclock", free_port())
    );
    // 0.8 s before a whole minute on the agent's wall clock.
    let (agent, _) = InProcess::start_at(&cfg, "2026-11-26T12:00:59.200Z");
    let frames = agent.sim.display.clone().expect("sim display");
    assert!(
        eventually(Duration::from_secs(5), || frames.total() >= 2).await,
        "{} frames: the clock at start and at 12:01",
        frames.total()
    );
    agent.stop().await;
}
