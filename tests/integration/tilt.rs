//! Tilt over real MQTT: the payload forms, the sign rule, rejections, and a
//! flood of 100,000 messages that must not queue up.

use crate::common;
use crate::scenarios;

use std::time::{Duration, Instant};

use common::*;
use edge_agent::config::Config;

/// The agent in-process with the embedded broker and simulated hardware.
fn start(device: &str, extra: &str) -> InProcess {
    let (v4, v5) = (free_port(), free_port());
    InProcess::start(&format!(
        "{}[display]\nenabled = false\n{extra}",
        embedded_config(device, v4, v5)
    ))
}

fn le(x: f32, y: f32, z: f32) -> Vec<u8> {
    [x, y, z].iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_form_and_the_sign_rule() {
    let agent = start("tilt-forms", "");
    let base = "edge/tilt-forms";
    let mut c = Client::connect(agent.port, "tilt-forms-c").await;
    c.subscribe(&format!("{base}/led/+")).await;
    c.subscribe("test/tilt/reply").await;
    let cases: Vec<(Vec<u8>, f64, f64)> = vec![
        (b"3.5 40 -80".to_vec(), 0.0, 0.4), // y > 0: right at y %
        (br#"{"x": 0, "y": -75, "z": 9.8}"#.to_vec(), 0.75, 0.0), // y < 0: left at -y %
        (le(1.0, 25.0, 2.0), 0.0, 0.25),    // 12 bytes of f32
        (b"0 250 0".to_vec(), 0.0, 1.0),    // clamped to 100
        (le(0.0, -1.0e6, 0.0), 1.0, 0.0),   // clamped to -100
        (b"0 0 0".to_vec(), 0.0, 0.0),      // level: both off
    ];
    for (i, (payload, left, right)) in cases.into_iter().enumerate() {
        c.request(
            &format!("{base}/tilt/set"),
            payload,
            "test/tilt/reply",
            &[i as u8],
        )
        .await;
        let r = c
            .expect(Duration::from_secs(3), |m| m.topic == "test/tilt/reply")
            .await
            .expect("reply");
        assert_eq!(r.json()["ok"], true, "case {i}");
        assert!(
            agent.wait_duties(left, right, Duration::from_secs(2)).await,
            "case {i}: duties {left}/{right}"
        );
    }
    // The state topics end with the final value: both off.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let m = retained(agent.port, "tilt-forms-late", &format!("{base}/led/right")).await;
    assert_eq!(m.json()["state"], "OFF");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_tilts_get_error_replies_and_change_nothing() {
    let agent = start("tilt-bad", "");
    let base = "edge/tilt-bad";
    let mut c = Client::connect(agent.port, "tilt-bad-c").await;
    c.subscribe("test/tiltbad/reply").await;
    c.subscribe(&format!("{base}/error")).await;
    c.request(
        &format!("{base}/tilt/set"),
        "0 -50 0",
        "test/tiltbad/reply",
        b"good",
    )
    .await;
    c.expect(Duration::from_secs(3), |m| {
        m.correlation.as_deref() == Some(&b"good"[..])
    })
    .await
    .expect("ok");
    assert!(agent.wait_duties(0.5, 0.0, Duration::from_secs(2)).await);
    let writes = agent.sim.pwm("led/left").map(|r| r.total()).unwrap_or(0);
    let bad: Vec<Vec<u8>> = vec![
        b"1 NaN 3".to_vec(),
        b"1 inf 3".to_vec(),
        b"1 2".to_vec(),
        b"1 2 3 4".to_vec(),
        b"up down left".to_vec(),
        br#"{"x": 1, "y": "a", "z": 3}"#.to_vec(),
        br#"{"x": 1, "y": 2}"#.to_vec(),
        le(0.0, f32::NAN, 0.0),
        le(f32::INFINITY, 0.0, 0.0),
        vec![0xff; 11],
        Vec::new(),
    ];
    let n = bad.len();
    let mut errors = 0;
    for (i, payload) in bad.into_iter().enumerate() {
        let corr = [b'b', i as u8];
        c.request(
            &format!("{base}/tilt/set"),
            payload,
            "test/tiltbad/reply",
            &corr,
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let reply = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = c
                .expect(left, |_| true)
                .await
                .unwrap_or_else(|| panic!("no reply to bad tilt {i}"));
            if m.topic == format!("{base}/error") {
                errors += 1;
            } else if m.correlation.as_deref() == Some(&corr[..]) {
                break m;
            }
        };
        assert_eq!(reply.json()["ok"], false, "bad tilt {i}");
    }
    errors += c
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .filter(|m| m.topic == format!("{base}/error"))
        .count();
    assert_eq!(errors, n, "each rejected tilt also went to {base}/error");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        agent.sim.pwm("led/left").map(|r| r.total()).unwrap_or(0),
        writes,
        "no PWM write"
    );
    assert!(
        agent.wait_duties(0.5, 0.0, Duration::from_millis(10)).await,
        "LEDs as before"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_100_000_tilts_ends_at_the_last_value_without_queueing() {
    const N: u32 = 100_000;
    let agent = start("tilt-flood", "");
    let base = "edge/tilt-flood";
    let topic = format!("{base}/tilt/set");
    let mut watcher = Client::connect(agent.port, "tilt-flood-w").await;
    watcher.subscribe(&format!("{base}/led/right")).await;
    watcher.subscribe("test/flood/reply").await;
    let publisher = Client::connect(agent.port, "tilt-flood-p").await;
    let t0 = Instant::now();
    for i in 0..N - 1 {
        // Values sweep -99..99, so almost every message changes a duty.
        let y = f64::from(i % 199) - 99.0;
        publisher.publish(&topic, format!("0 {y} 9.81")).await;
    }
    // The last one asks for an answer: it comes once the agent got through all of them.
    publisher
        .request(&topic, "0 37.5 9.81", "test/flood/reply", b"last")
        .await;
    let sent = t0.elapsed();
    let reply = watcher
        .expect(Duration::from_secs(60), |m| m.topic == "test/flood/reply")
        .await
        .expect("the last tilt was answered");
    assert_eq!(reply.json()["ok"], true);
    let drained = t0.elapsed();
    // Within one write interval of the answer, the PWM shows the last value.
    assert!(
        agent
            .wait_duties(0.0, 0.375, Duration::from_millis(100))
            .await,
        "ends at the last value"
    );
    let writes = agent.sim.pwm("led/right").map(|r| r.total()).unwrap_or(0)
        + agent.sim.pwm("led/left").map(|r| r.total()).unwrap_or(0);
    eprintln!(
        "{N} tilts: sent in {sent:?}, all handled after {drained:?}; {writes} PWM writes ({:.2} % of messages)",
        f64::from(writes as u32) * 100.0 / f64::from(N)
    );
    assert!(
        u64::from(N) / writes.max(1) >= 20,
        "PWM writes ({writes}) far below the messages ({N})"
    );
    // State reports: rate-limited, ending with the final value.
    let states = watcher.drain(Duration::from_millis(600)).await;
    let reports: Vec<_> = states
        .iter()
        .filter(|m| m.topic == format!("{base}/led/right"))
        .collect();
    let last = reports.last().expect("a final state report");
    assert_eq!(
        last.json(),
        serde_json::json!({"state": "ON", "brightness": 96})
    );
    let allowed = 3 + (drained.as_millis() / 250) as usize;
    assert!(
        reports.len() <= allowed,
        "{} state reports in {drained:?}",
        reports.len()
    );
    let sim = agent.sim.clone();
    agent.stop().await;
    // Shutdown turns both off.
    assert_eq!(sim.pwm("led/right").and_then(|r| r.last()), Some(0.0));
    assert_eq!(sim.pwm("led/left").and_then(|r| r.last()), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_broker_while_tilting_turns_the_leds_off() {
    let mut broker = scenarios::Broker::embedded();
    let cfg = format!(
        "{}[display]\nenabled = false\n",
        external_config("tilt-loss", broker.port())
    );
    let agent = InProcess::from_settings(Config::from_toml(&cfg).expect("config"));
    let c = Client::connect(broker.port(), "tilt-loss-c").await;
    let mut w = Client::connect(broker.port(), "tilt-loss-w").await;
    w.subscribe("edge/tilt-loss/status").await;
    w.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.publish("edge/tilt-loss/tilt/set", "0 80 0").await;
    assert!(
        agent.wait_duties(0.0, 0.8, Duration::from_secs(2)).await,
        "tilting"
    );
    broker.kill();
    // Well before the 2 s tilt timeout.
    assert!(
        agent
            .wait_duties(0.0, 0.0, Duration::from_millis(500))
            .await,
        "off on broker loss"
    );
    agent.stop().await;
}

/// Home Assistant's `transition`: the LED fades on 20 ms steps to its new
/// brightness, over MQTT, through the agent's timers and the PWM writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_fades_the_led_in_steps() {
    let agent = start("fade", "");
    let base = "edge/fade";
    let mut c = Client::connect(agent.port, "fade-c").await;
    c.subscribe(&format!("{base}/status")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    let left = agent.sim.pwm("led/left").expect("left LED").clone();
    let before = left.entries().len();
    c.publish(
        &format!("{base}/led/left/set"),
        r#"{"state": "ON", "brightness": 255, "transition": 1}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let duties: Vec<f64> = left.values().into_iter().skip(before).collect();
    assert!(duties.len() >= 20, "steps written: {duties:?}");
    assert!(duties.windows(2).all(|w| w[0] < w[1]), "rising: {duties:?}");
    assert_eq!(duties.last().copied(), Some(1.0), "{duties:?}");
}
