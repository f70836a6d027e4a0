//! Home Assistant discovery and links over real MQTT: every config collected
//! from the broker, the re-announce on `homeassistant/status`, removal of a
//! disabled part, and a button on one agent driving another through links.

use crate::common;
use crate::scenarios;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::*;
use scenarios::Broker;

/// All parts on, the buzzer on a line of its own (the matrix on another chip).
fn all_parts(device: &str, port: u16, extra: &str) -> String {
    format!(
        "{}[display]\ntime_zone = \"UTC\"\n[buzzer]\nenabled = true\npin = 13\n[matrix]\nchip = \"/dev/gpiochip1\"\n{extra}",
        external_config(device, port)
    )
}

/// Collects `homeassistant/+/<device>/+/config` messages for `within`.
async fn configs(
    c: &mut Client,
    device: &str,
    within: Duration,
) -> BTreeMap<String, (bool, String)> {
    let mut out = BTreeMap::new();
    for m in c.drain(within).await {
        let parts: Vec<&str> = m.topic.split('/').collect();
        if parts.len() == 5
            && parts[0] == "homeassistant"
            && parts[2] == device
            && parts[4] == "config"
        {
            out.insert(m.topic.clone(), (m.retain, m.text()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_configs_are_retained_unique_and_announced_again() {
    let broker = Broker::embedded();
    let device = "ha-dev";
    let base = format!("edge/{device}");
    let _agent = Agent::start(&all_parts(device, broker.port(), ""));
    let mut w = Client::connect(broker.port(), "ha-w").await;
    w.subscribe(&format!("{base}/status")).await;
    w.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");

    // A subscriber that comes later gets every config, retained.
    let mut ha = Client::connect(broker.port(), "ha-sub").await;
    ha.subscribe("homeassistant/#").await;
    let got = configs(&mut ha, device, Duration::from_millis(800)).await;
    let expected = [
        "homeassistant/light/ha-dev/led_left/config",
        "homeassistant/light/ha-dev/led_right/config",
        "homeassistant/light/ha-dev/matrix/config",
        "homeassistant/event/ha-dev/button/config",
        "homeassistant/text/ha-dev/message/config",
        "homeassistant/sensor/ha-dev/clock/config",
        "homeassistant/sensor/ha-dev/uptime/config",
        "homeassistant/siren/ha-dev/buzzer/config",
        "homeassistant/notify/ha-dev/board/config",
        "homeassistant/image/ha-dev/board_image/config",
        "homeassistant/button/ha-dev/identify/config",
        "homeassistant/sensor/ha-dev/temperature/config",
        "homeassistant/sensor/ha-dev/load/config",
        "homeassistant/sensor/ha-dev/memory_available/config",
        "homeassistant/sensor/ha-dev/disk_free/config",
        "homeassistant/sensor/ha-dev/wifi_signal/config",
        "homeassistant/sensor/ha-dev/wifi_ssid/config",
        "homeassistant/sensor/ha-dev/ip/config",
        "homeassistant/binary_sensor/ha-dev/under_voltage/config",
        "homeassistant/switch/ha-dev/clock_running/config",
        "homeassistant/device_automation/ha-dev/button_press/config",
        "homeassistant/device_automation/ha-dev/button_double_press/config",
        "homeassistant/device_automation/ha-dev/button_long_press/config",
        "homeassistant/device_automation/ha-dev/button_triple_press/config",
        "homeassistant/device_automation/ha-dev/button_quadruple_press/config",
        "homeassistant/device_automation/ha-dev/button_quintuple_press/config",
        "homeassistant/device_automation/ha-dev/button_hold/config",
        "homeassistant/device_automation/ha-dev/button_release/config",
    ];
    let topics: HashSet<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(topics, expected.iter().copied().collect(), "{got:#?}");
    let mut ids = HashSet::new();
    for (topic, (retained, payload)) in &got {
        assert!(retained, "{topic} is retained");
        let v: serde_json::Value = serde_json::from_str(payload).expect("JSON config");
        assert_eq!(
            v["device"]["identifiers"][0],
            format!("edge_agent_{device}"),
            "{topic}"
        );
        if topic.contains("/device_automation/") {
            // A device trigger fires on the button's events; it is no entity.
            assert_eq!(v["topic"], format!("{base}/button/event"), "{topic}");
            continue;
        }
        assert_eq!(v["availability_topic"], format!("{base}/status"), "{topic}");
        assert!(
            ids.insert(v["unique_id"].as_str().expect("unique_id").to_string()),
            "{topic}: unique"
        );
        if let Some(cmd) = v["command_topic"].as_str() {
            assert!(
                cmd.starts_with(&base) && cmd.ends_with("/set"),
                "{topic}: {cmd}"
            );
        }
    }
    let matrix: serde_json::Value =
        serde_json::from_str(&got[expected[2]].1).expect("matrix config");
    let effects: Vec<&str> = matrix["effect_list"]
        .as_array()
        .expect("effects")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        effects.contains(&"smiley") && effects.contains(&"spiral"),
        "{effects:?}"
    );
    let button: serde_json::Value =
        serde_json::from_str(&got[expected[3]].1).expect("button config");
    assert_eq!(
        button["event_types"],
        serde_json::json!([
            "press",
            "double_press",
            "triple_press",
            "quadruple_press",
            "quintuple_press",
            "long_press",
            "hold",
            "release"
        ])
    );
    // The siren offers the shipped tunes as its tones.
    let siren: serde_json::Value = serde_json::from_str(&got[expected[7]].1).expect("siren config");
    let tones = siren["available_tones"].as_array().expect("tones");
    for tune in ["beep", "chime", "doorbell", "alarm", "scale"] {
        assert!(
            tones.contains(&serde_json::json!(tune)),
            "{tune} in {tones:?}"
        );
    }
    assert_eq!(siren["support_duration"], true);

    // Home Assistant restarts: configs and states come again.
    ha.subscribe(&format!("{base}/led/left")).await;
    ha.drain(Duration::from_millis(200)).await;
    ha.publish("homeassistant/status", "online").await;
    // After homeassistant.announce_delay_ms (1 s by default).
    let again = ha.drain(Duration::from_millis(2500)).await;
    let config_again = again
        .iter()
        .filter(|m| m.topic.ends_with("/config") && m.topic.contains(device))
        // The removal of the buzzer's old switch comes again too.
        .filter(|m| !m.payload.is_empty())
        .count();
    assert_eq!(config_again, expected.len(), "every config again");
    assert!(
        again.iter().any(|m| m.topic == format!("{base}/led/left")),
        "states again"
    );
    // Something else on homeassistant/status is not a reason to announce.
    ha.publish("homeassistant/status", "offline").await;
    let quiet = ha.drain(Duration::from_millis(500)).await;
    assert!(
        !quiet.iter().any(|m| m.topic.ends_with("/config")),
        "{quiet:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_disabled_later_has_its_config_removed() {
    let broker = Broker::embedded();
    let device = "ha-rm";
    let status = format!("edge/{device}/status");
    let matrix_topic = format!("homeassistant/light/{device}/matrix/config");
    let mut w = Client::connect(broker.port(), "ha-rm-w").await;
    w.subscribe(&status).await;
    {
        let mut a = Agent::start(&all_parts(device, broker.port(), ""));
        w.expect(Duration::from_secs(5), |m| m.text() == "online")
            .await
            .expect("online");
        a.terminate();
    }
    let mut check = Client::connect(broker.port(), "ha-rm-c1").await;
    check.subscribe(&matrix_topic).await;
    let m = check
        .expect(Duration::from_secs(2), |_| true)
        .await
        .expect("matrix config retained");
    assert!(!m.payload.is_empty());
    // Again, with the matrix off: its config is removed (empty retained payload).
    let cfg =
        all_parts(device, broker.port(), "").replace("[matrix]\n", "[matrix]\nenabled = false\n");
    let _b = Agent::start(&cfg);
    let removal = check
        .expect(Duration::from_secs(5), |m| m.topic == matrix_topic)
        .await
        .expect("removal");
    assert!(
        removal.payload.is_empty(),
        "empty payload removes the entity"
    );
    let mut late = Client::connect(broker.port(), "ha-rm-c2").await;
    late.subscribe(&matrix_topic).await;
    assert!(
        late.expect(Duration::from_millis(800), |_| true)
            .await
            .is_none(),
        "nothing retained any more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_button_on_one_agent_plays_a_pattern_and_beeps_on_another() {
    let broker = Broker::embedded();
    let _a = Agent::start(&all_parts("agent-a", broker.port(), ""));
    let links = "[[link]]\non = \"edge/agent-a/button/event\"\ndo = \"matrix/set\"\npayload = \"smiley\"\n\
                 [[link]]\non = \"edge/agent-a/button/event\"\ndo = \"buzzer/set\"\npayload = '{\"beep_ms\": 300}'\n";
    let _b = Agent::start(&all_parts("agent-b", broker.port(), links));
    let mut w = Client::connect(broker.port(), "link-w").await;
    w.subscribe("edge/+/status").await;
    // By name: the broker's own agent is online on edge/+/status too.
    let mut online = std::collections::BTreeSet::new();
    while online.len() < 2 {
        let m = w
            .expect(Duration::from_secs(5), |m| {
                m.text() == "online"
                    && ["edge/agent-a/status", "edge/agent-b/status"].contains(&m.topic.as_str())
            })
            .await
            .expect("both online");
        online.insert(m.topic);
    }
    w.subscribe("edge/agent-b/matrix").await;
    w.subscribe("edge/agent-b/buzzer").await;
    w.drain(Duration::from_millis(300)).await;

    w.publish("edge/agent-a/sim/button/press", "").await;
    let mut effect = None;
    let mut buzzer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline && (effect.is_none() || buzzer.len() < 2) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = w.expect(left, |_| true).await else {
            break;
        };
        if m.topic == "edge/agent-b/matrix" && m.json()["state"] == "ON" {
            effect = m.json()["effect"].as_str().map(String::from);
        }
        if m.topic == "edge/agent-b/buzzer" {
            let state = m.json()["state"].as_str().unwrap_or_default().to_string();
            buzzer.push((tokio::time::Instant::now(), state));
        }
    }
    assert_eq!(
        effect.as_deref(),
        Some("smiley"),
        "B's matrix shows the smiley"
    );
    let states: Vec<&str> = buzzer.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(states, vec!["ON", "OFF"], "B beeped");
    let beep = buzzer[1].0 - buzzer[0].0;
    assert!(
        beep >= Duration::from_millis(250) && beep < Duration::from_millis(600),
        "beep of {beep:?}"
    );
}
