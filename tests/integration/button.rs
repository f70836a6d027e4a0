//! The button's events over MQTT, made with the simulated button: presses
//! in a row, a long press with its holds and its release.

use crate::common;

use std::time::Duration;

use common::*;

/// The event types published on `<base>/button/event` within `within`.
async fn events(c: &mut Client, base: &str, within: Duration) -> Vec<String> {
    let topic = format!("{base}/button/event");
    c.drain(within)
        .await
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| {
            m.json()["event_type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_from_the_simulated_button() {
    let (v4, v5) = (free_port(), free_port());
    let _agent = Agent::start(&embedded_config("btn", v4, v5));
    let base = "edge/btn";
    let mut c = Client::connect(v5, "btn-c").await;
    c.subscribe(&format!("{base}/#")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    let press = format!("{base}/sim/button/press");

    // Three clicks, queued: one triple press when the window closes.
    for _ in 0..3 {
        c.publish(&press, "").await;
    }
    assert_eq!(
        events(&mut c, base, Duration::from_millis(1500)).await,
        ["triple_press"]
    );

    // Held 1.9 s: a long press at 0.8 s, holds at 1.3 and 1.8 s, the release.
    c.publish(&press, "1900").await;
    assert_eq!(
        events(&mut c, base, Duration::from_millis(2600)).await,
        ["long_press", "hold", "hold", "release"]
    );

    // How long is a number of milliseconds; anything else is refused.
    c.subscribe("reply/btn").await;
    c.request(&press, "a while", "reply/btn", b"p").await;
    let reply = c
        .expect(Duration::from_secs(3), |m| m.topic == "reply/btn")
        .await
        .expect("a reply");
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("1 to 60000 ms")),
        "{}",
        reply.text()
    );
}
