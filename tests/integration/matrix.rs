//! The matrix over real MQTT: named patterns, the Home Assistant light form,
//! programs, and bad programs that leave the running pattern alone.

use crate::common;

use std::time::Duration;

use common::*;
use edge_agent::parts::matrix::Frame;

/// The agent in-process with its embedded broker.
fn start(device: &str) -> InProcess {
    let (v4, v5) = (free_port(), free_port());
    let cfg = format!(
        "{}[display]\nenabled = false\n",
        embedded_config(device, v4, v5)
    );
    InProcess::start(&cfg)
}

/// The next `<base>/matrix` state.
async fn state(c: &mut Client, base: &str) -> serde_json::Value {
    let topic = format!("{base}/matrix");
    c.expect(Duration::from_secs(3), |m| m.topic == topic)
        .await
        .expect("matrix state")
        .json()
}

/// A recorded frame as `01110/10001/...`.
fn text(frame: &[bool]) -> String {
    Frame::from_leds(frame).to_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_patterns_the_light_form_and_programs() {
    let agent = start("mx");
    let base = "edge/mx";
    let mut c = Client::connect(agent.port, "mx-c").await;
    c.subscribe(&format!("{base}/matrix")).await;
    assert_eq!(state(&mut c, base).await["state"], "OFF");

    // A named frame, by name and through Home Assistant's light form.
    c.publish(&format!("{base}/matrix/set"), "smiley").await;
    let s = state(&mut c, base).await;
    assert_eq!(
        (s["state"].as_str(), s["effect"].as_str()),
        (Some("ON"), Some("smiley"))
    );
    assert_eq!(s["frame"], "01010/01010/00000/10001/01110");
    c.publish(&format!("{base}/matrix/set"), r#"{"state": "OFF"}"#)
        .await;
    let s = state(&mut c, base).await;
    assert_eq!(
        (s["state"].as_str(), s["frame"].as_str()),
        (Some("OFF"), Some("00000/00000/00000/00000/00000"))
    );
    assert_eq!(
        agent.matrix().last().map(|f| text(&f)).as_deref(),
        Some("00000/00000/00000/00000/00000")
    );
    c.publish(&format!("{base}/matrix/set"), r#"{"state": "ON"}"#)
        .await;
    let s = state(&mut c, base).await;
    assert_eq!(s["effect"], "smiley", "ON brings back the last pattern");
    c.publish(
        &format!("{base}/matrix/set"),
        r#"{"state": "ON", "effect": "heart"}"#,
    )
    .await;
    assert_eq!(state(&mut c, base).await["effect"], "heart");

    // A running pattern: state once at the start, not per step.
    c.publish(&format!("{base}/matrix/set"), "rows").await;
    let s = state(&mut c, base).await;
    assert_eq!(
        (s["state"].as_str(), s["effect"].as_str()),
        (Some("ON"), Some("rows"))
    );
    assert_eq!(s["frame"], "11111/00000/00000/00000/00000");
    let more = c.drain(Duration::from_millis(1000)).await;
    assert!(more.is_empty(), "no state per blink: {more:?}");
    let rows: Vec<String> = agent
        .matrix()
        .values()
        .iter()
        .rev()
        .take(6)
        .map(|f| text(f))
        .collect();
    assert!(
        rows.iter().any(|r| r == "00000/11111/00000/00000/00000"),
        "rows move: {rows:?}"
    );

    // A finite program: state at the start and at the end.
    let program = r#"{"blink": {"leds": [[2, 2]], "interval_ms": 50, "times": 2}}"#;
    c.publish(&format!("{base}/matrix/set"), program).await;
    let start = state(&mut c, base).await;
    assert_eq!(
        (start["state"].as_str(), start["effect"].as_str()),
        (Some("ON"), None)
    );
    let end = state(&mut c, base).await;
    assert_eq!(
        (end["state"].as_str(), end["frame"].as_str()),
        (Some("OFF"), Some("00000/00000/00000/00000/00000"))
    );

    let frames = agent.matrix();
    agent.stop().await;
    assert_eq!(frames.last(), Some(vec![false; 25]), "off at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_programs_are_refused_and_the_running_pattern_goes_on() {
    let agent = start("mxbad");
    let base = "edge/mxbad";
    let reply = "test/mxbad/reply";
    let mut c = Client::connect(agent.port, "mxbad-c").await;
    c.subscribe(reply).await;
    c.subscribe(&format!("{base}/matrix")).await;
    c.request(
        &format!("{base}/matrix/set"),
        r#"{"blink": {"leds": "all", "interval_ms": 100}}"#,
        reply,
        b"run",
    )
    .await;
    c.expect(Duration::from_secs(3), |m| m.topic == reply)
        .await
        .expect("ok");
    c.drain(Duration::from_millis(300)).await;
    let mut deep = String::from(r#"{"on": {"leds": "all", "ms": 10}}"#);
    for _ in 0..20 {
        deep = format!(r#"{{"sequence": [{deep}]}}"#);
    }
    let many = format!(
        r#"{{"sequence": [{}]}}"#,
        vec![r#"{"frame": "00000/00000/00000/00000/00000"}"#; 300].join(",")
    );
    let bad: Vec<(&str, String)> = vec![
        ("unknown node", r#"{"wiggle": {"leds": "all"}}"#.into()),
        (
            "wrong type",
            r#"{"blink": {"leds": "all", "interval_ms": "fast"}}"#.into(),
        ),
        ("empty list", r#"{"all": []}"#.into()),
        ("too deep", deep),
        ("too many nodes", many),
        (
            "interval",
            r#"{"blink": {"leds": "all", "interval_ms": 1}}"#.into(),
        ),
        (
            "repeat",
            r#"{"repeat": {"times": 1000000, "pattern": {"on": {"leds": "all", "ms": 10}}}}"#
                .into(),
        ),
        ("unknown pattern", "disco".into()),
        (
            "unknown effect",
            r#"{"state": "ON", "effect": "disco"}"#.into(),
        ),
        ("bad frame", "11111/00000".into()),
        ("not JSON", r#"{"blink": "#.into()),
    ];
    let before = agent.matrix().total();
    let mut states = 0;
    for (what, payload) in &bad {
        c.request(
            &format!("{base}/matrix/set"),
            payload.clone(),
            reply,
            what.as_bytes(),
        )
        .await;
        let r = loop {
            let m = c
                .expect(Duration::from_secs(3), |_| true)
                .await
                .unwrap_or_else(|| panic!("{what}: no reply"));
            if m.topic == format!("{base}/matrix") {
                states += 1;
            } else if m.correlation.as_deref() == Some(what.as_bytes()) {
                break m;
            }
        };
        assert_eq!(r.json()["ok"], false, "{what}");
        eprintln!("{what}: {}", r.json()["error"]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The blink went on: frames still alternate all on / all off, ~100 ms apart.
    let recent: Vec<(tokio::time::Instant, Vec<bool>)> =
        agent.matrix().entries().into_iter().rev().take(8).collect();
    assert!(agent.matrix().total() > before + 3, "still blinking");
    for pair in recent.windows(2) {
        let (later, earlier) = (&pair[0], &pair[1]);
        assert_ne!(later.1, earlier.1, "alternates");
        assert!(
            later.1.iter().all(|&b| b) || later.1.iter().all(|&b| !b),
            "whole frame on or off"
        );
        let gap = later.0 - earlier.0;
        assert!(
            gap >= Duration::from_millis(50) && gap <= Duration::from_millis(150),
            "gap {gap:?}"
        );
    }
    // And no state was published for the refused commands.
    states += c
        .drain(Duration::from_millis(100))
        .await
        .iter()
        .filter(|m| m.topic == format!("{base}/matrix"))
        .count();
    assert_eq!(states, 0, "the refused commands changed the state");
    agent.stop().await;
}

/// A pattern saved over MQTT runs by name, joins Home Assistant's effect
/// list, is still there after a restart, and an empty payload deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_patterns_outlive_a_restart_and_join_the_effects() {
    let state_dir = tempfile::tempdir().expect("state dir");
    let (v4, v5) = (free_port(), free_port());
    let cfg = format!(
        "{}[display]\nenabled = false\n",
        embedded_config("mx-save", v4, v5).replacen(
            "[device]\n",
            &format!("[device]\nstate_dir = {:?}\n", state_dir.path()),
            1
        )
    );
    let base = "edge/mx-save";
    let effects = |m: &Msg| -> Vec<String> {
        serde_json::from_value(m.json()["effect_list"].clone()).expect("effect_list")
    };
    let config_topic = "homeassistant/light/mx-save/matrix/config";
    let mut agent = Agent::start(&cfg);
    let mut c = Client::connect(v5, "mx-save-c").await;
    c.subscribe(config_topic).await;
    c.subscribe(&format!("{base}/matrix")).await;
    c.subscribe("reply/mx-save").await;
    let first = c
        .expect(Duration::from_secs(5), |m| m.topic == config_topic)
        .await
        .expect("discovery");
    assert!(!effects(&first).contains(&"wave".to_string()));
    let program = r#"{"forever": {"sequence": [{"on": {"leds": "row:0", "ms": 100}}, {"on": {"leds": "col:0", "ms": 100}}]}}"#;
    c.request(
        &format!("{base}/matrix/pattern/wave/set"),
        program,
        "reply/mx-save",
        b"s1",
    )
    .await;
    // The matrix's config comes again (before the reply), now with it.
    let seen = c.drain(Duration::from_secs(2)).await;
    let reply = seen
        .iter()
        .find(|m| m.topic == "reply/mx-save")
        .expect("a reply");
    assert_eq!(reply.json()["ok"], true, "{}", reply.text());
    let again = seen
        .iter()
        .find(|m| m.topic == config_topic)
        .expect("announced again");
    assert!(effects(again).contains(&"wave".to_string()));
    c.publish(
        &format!("{base}/matrix/set"),
        r#"{"state": "ON", "effect": "wave"}"#,
    )
    .await;
    let s = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/matrix") && m.json()["effect"] == "wave"
        })
        .await
        .expect("runs by name");
    assert_eq!(s.json()["state"], "ON");
    // A shipped name is refused, and says why.
    c.request(
        &format!("{base}/matrix/pattern/smiley/set"),
        "11111/11111/11111/11111/11111",
        "reply/mx-save",
        b"s2",
    )
    .await;
    let reply = c
        .expect(Duration::from_secs(3), |m| m.topic == "reply/mx-save")
        .await
        .expect("a reply");
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("shipped")),
        "{}",
        reply.text()
    );

    // After a restart: still there.
    agent.terminate();
    let mut agent = Agent::start(&cfg);
    let kept = retained(v5, "mx-save-r", config_topic).await;
    assert!(
        effects(&kept).contains(&"wave".to_string()),
        "{}",
        kept.text()
    );
    let mut c = Client::connect(v5, "mx-save-c2").await;
    c.subscribe(config_topic).await;
    c.drain(Duration::from_millis(300)).await;
    c.publish(&format!("{base}/matrix/pattern/wave/set"), "")
        .await;
    let gone = c
        .expect(Duration::from_secs(3), |m| m.topic == config_topic)
        .await
        .expect("announced without it");
    assert!(!effects(&gone).contains(&"wave".to_string()));
    assert!(!state_dir.path().join("patterns/wave.json").exists());
    agent.terminate();
}
