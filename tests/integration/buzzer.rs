//! The buzzer over MQTT: beep patterns, RTTTL and the shipped tunes reach
//! the simulated hardware as duties and pitches on the tune's own clock; a
//! newer command cancels; the buzzer is silent after shutdown, after the
//! broker has been away too long and after a panic.

use crate::common;
use crate::scenarios;

use std::time::{Duration, Instant};

use common::*;

/// A passive buzzer (2 kHz tone) on pin 13, the matrix on another chip.
fn passive(device_config: String, extra: &str) -> String {
    format!(
        "{device_config}[display]\nenabled = false\n[buzzer]\nenabled = true\npin = 13\ntone_hz = 2000\n[matrix]\nchip = \"/dev/gpiochip1\"\n{extra}"
    )
}

/// The buzzer's state messages until one says OFF (or `within` is over).
async fn states_until_off(c: &mut Client, topic: &str, within: Duration) -> Vec<serde_json::Value> {
    let mut states = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Some(m) = c
        .expect(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            |m| m.topic == topic,
        )
        .await
    {
        let v = m.json();
        let off = v["state"] == "OFF";
        states.push(v);
        if off {
            break;
        }
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunes_reach_the_hardware_on_their_deadlines_and_a_newer_command_cancels() {
    let (v4, v5) = (free_port(), free_port());
    let agent = InProcess::start(&passive(embedded_config("buzz-mqtt", v4, v5), ""));
    let sim = agent.sim.clone();
    let (duty, pitches) = (
        sim.pwm("buzzer").expect("buzzer").clone(),
        sim.pitches("buzzer")
            .expect("a passive buzzer has pitches")
            .clone(),
    );
    let base = "edge/buzz-mqtt";
    let state = format!("{base}/buzzer");
    let mut c = Client::connect(v5, "buzz-mqtt-c").await;
    c.subscribe(&format!("{base}/status")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.subscribe(&state).await;
    c.expect(Duration::from_secs(2), |m| m.topic == state)
        .await
        .expect("the retained state");

    // An RTTTL: four eighth notes at 240 beats a minute, 125 ms each.
    c.publish(
        &format!("{base}/buzzer/set"),
        r#"{"rtttl": "arp:d=8,o=5,b=240:c,e,g,c6"}"#,
    )
    .await;
    let states = states_until_off(&mut c, &state, Duration::from_secs(3)).await;
    assert_eq!(
        states,
        vec![
            serde_json::json!({"state": "ON", "duration": 0.5}),
            serde_json::json!({"state": "OFF"})
        ]
    );
    let p = pitches.entries();
    assert_eq!(p.len(), 4, "{p:?}");
    let t0 = p[0].0;
    let hz: Vec<u32> = p.iter().map(|(_, hz)| hz.round() as u32).collect();
    assert_eq!(hz, vec![523, 659, 784, 1047], "C5 E5 G5 C6");
    // Each note on its own deadline from the start (tokio's timer rounds
    // up to its millisecond, and the runtime is shared with the test).
    // Measured from the first note, which may itself be late (a tick, and
    // more for a first write under emulation), a later note on time looks
    // early by as much (under qemu: 0.0x and 0.2 ms). Drift, each note
    // timed from the one before, would show as later and later.
    for (k, (t, _)) in p.iter().enumerate() {
        let late = (*t - t0).as_secs_f64() * 1e3 - 125.0 * k as f64;
        assert!((-5.0..100.0).contains(&late), "note {k} {late:.3} ms late");
    }
    // After the start-up silence: on at the tone's duty, off for the last
    // tenth of each note.
    assert_eq!(
        duty.values(),
        vec![0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0]
    );

    // A shipped tune, cancelled by OFF: silent at once, nothing more played.
    c.publish(&format!("{base}/buzzer/set"), "alarm").await;
    let on = c
        .expect(Duration::from_secs(2), |m| m.topic == state)
        .await
        .expect("alarm on");
    assert_eq!(
        on.json(),
        serde_json::json!({"state": "ON", "tone": "alarm", "duration": 1.0})
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.publish(&format!("{base}/buzzer/set"), "OFF").await;
    let off = c
        .expect(Duration::from_secs(2), |m| m.topic == state)
        .await
        .expect("off");
    assert_eq!(off.json()["state"], "OFF");
    assert!(eventually(Duration::from_secs(1), || duty.last() == Some(0.0)).await);
    let played = pitches.total();
    assert!(
        (2..8).contains(&(played - 4)),
        "part of the alarm: {played}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(pitches.total(), played, "nothing after OFF");
    assert_eq!(duty.last(), Some(0.0));

    // Home Assistant's siren with a tone, cut short by a beep pattern.
    c.publish(
        &format!("{base}/buzzer/set"),
        r#"{"state": "ON", "tone": "scale", "duration": 30}"#,
    )
    .await;
    let on = c
        .expect(Duration::from_secs(2), |m| m.topic == state)
        .await
        .expect("scale on");
    assert_eq!(
        on.json(),
        serde_json::json!({"state": "ON", "tone": "scale", "duration": 30.0})
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pitches.total();
    c.publish(
        &format!("{base}/buzzer/set"),
        // Beeps long enough that no wake-up of a loaded machine passes one
        // (a step a late wake-up has passed is left out).
        r#"{"beep_ms": 150, "count": 3, "pause_ms": 150, "tone_hz": 3000}"#,
    )
    .await;
    let states = states_until_off(&mut c, &state, Duration::from_secs(3)).await;
    assert_eq!(
        states,
        vec![
            serde_json::json!({"state": "ON", "duration": 0.75}),
            serde_json::json!({"state": "OFF"})
        ],
        "the pattern replaced the scale, and ended"
    );
    let after: Vec<u32> = pitches.values()[before as usize..]
        .iter()
        .map(|hz| hz.round() as u32)
        .collect();
    assert_eq!(after, vec![3000, 3000, 3000]);

    // A refused tune says why and changes nothing.
    let reply = "test/buzz-mqtt/reply";
    c.subscribe(reply).await;
    c.request(
        &format!("{base}/buzzer/set"),
        r#"{"rtttl": "x:b=2000:c"}"#,
        reply,
        b"1",
    )
    .await;
    let r = c
        .expect(Duration::from_secs(2), |m| m.topic == reply)
        .await
        .expect("a reply");
    assert_eq!(r.json()["ok"], false);
    let e = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("the tempo b=2000; a tempo is 25 to 900"), "{e}");

    // A long tune, then shutdown: silent, and the state says so.
    c.publish(
        &format!("{base}/buzzer/set"),
        r#"{"tone": "alarm", "duration": 60}"#,
    )
    .await;
    c.expect(Duration::from_secs(2), |m| {
        m.topic == state && m.json()["state"] == "ON"
    })
    .await
    .expect("alarm on");
    agent.stop().await;
    assert_eq!(duty.last(), Some(0.0), "silent after shutdown");
    let last = c
        .expect(Duration::from_secs(2), |m| m.topic == state)
        .await
        .expect("the state at shutdown");
    assert_eq!(last.json(), serde_json::json!({"state": "OFF"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tune_goes_silent_when_the_broker_is_away_too_long() {
    let mut broker = scenarios::Broker::embedded();
    let device = "buzz-safe";
    let cfg = passive(
        external_config(device, broker.port()),
        "[safety]\noffline_timeout_ms = 600\n",
    );
    let agent =
        InProcess::from_settings(edge_agent::config::Config::from_toml(&cfg).expect("config"));
    let duty = agent.sim.pwm("buzzer").expect("buzzer").clone();
    let pitches = agent.sim.pitches("buzzer").expect("pitches").clone();
    let mut w = Client::connect(broker.port(), "buzz-safe-w").await;
    w.subscribe(&format!("edge/{device}/status")).await;
    w.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    w.publish(
        &format!("edge/{device}/buzzer/set"),
        r#"{"tone": "alarm", "duration": 60}"#,
    )
    .await;
    assert!(eventually(Duration::from_secs(2), || pitches.total() > 0).await);
    let lost = Instant::now();
    broker.kill();
    // It plays on through a short outage...
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = pitches.total();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(pitches.total() > early, "still playing 450 ms in");
    // ...and is silenced at the timeout (600 ms), for good.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(lost.elapsed())).await;
    let silenced = pitches.total();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        pitches.total(),
        silenced,
        "nothing plays after the safe state"
    );
    assert_eq!(duty.last(), Some(0.0));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_buzzer_says_once_it_has_no_pitch_and_a_panic_silences_it() {
    // A process: its log, and its panic stays its own.
    let broker = scenarios::Broker::embedded();
    let device = "buzz-active";
    let base = format!("edge/{device}");
    let mut agent = Agent::start(&format!(
        "{}[display]\nenabled = false\n[buzzer]\nenabled = true\npin = 13\n[matrix]\nchip = \"/dev/gpiochip1\"\n",
        external_config(device, broker.port())
    ));
    let mut c = Client::connect(broker.port(), "buzz-active-c").await;
    c.subscribe(&format!("{base}/status")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.subscribe(&format!("{base}/buzzer")).await;
    for tune in ["chime", "scale"] {
        c.publish(&format!("{base}/buzzer/set"), tune).await;
        c.expect(Duration::from_secs(2), |m| m.json()["tone"] == tune)
            .await
            .expect("playing");
    }
    c.publish(
        &format!("{base}/buzzer/set"),
        r#"{"tone": "alarm", "duration": 60}"#,
    )
    .await;
    c.expect(Duration::from_secs(2), |m| m.json()["tone"] == "alarm")
        .await
        .expect("playing");
    c.publish(&format!("{base}/sim/panic"), "loop").await;
    let status = agent
        .wait_exit(Duration::from_secs(3))
        .expect("the agent exits after a panic");
    assert_eq!(status.code(), Some(70), "{}", agent.stderr_text());
    let stderr = agent.stderr_text();
    assert_eq!(
        stderr.matches("pitches are left out").count(),
        1,
        "said once: {stderr}"
    );
    // The safe stop ran: the buzzer's last state says it is off.
    let last = retained(broker.port(), "buzz-active-r", &format!("{base}/buzzer")).await;
    assert_eq!(last.json(), serde_json::json!({"state": "OFF"}));
}
