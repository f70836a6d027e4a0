//! Links (contract §6) against both brokers: a message runs its command
//! once however many of the agent's filters match it, the loop check and the
//! runtime agree, a retained message fires no link again, and a dropped
//! trigger is reported for the topic it came on.

use std::time::Duration;

use crate::common::*;
use crate::scenarios::*;

/// Every message within `within`, as (topic, payload) pairs.
async fn seen(c: &mut Client, within: Duration) -> Vec<(String, String)> {
    c.drain(within)
        .await
        .into_iter()
        .map(|m| (m.topic.clone(), m.text()))
        .collect()
}

fn count(seen: &[(String, String)], topic: &str) -> usize {
    seen.iter().filter(|(t, _)| t == topic).count()
}

async fn online(broker: &Broker, device: &str, config: &str) -> (Agent, Client) {
    let agent = Agent::start(config);
    let mut w = Client::connect(broker.port(), &format!("{device}-w")).await;
    w.subscribe(&format!("edge/{device}/status")).await;
    w.expect(Duration::from_secs(10), |m| m.text() == "online")
        .await
        .expect("agent online");
    (agent, w)
}

/// Two links whose filters overlap the agent's own command filters (one
/// covered by them, one only partly): a command on a topic all of them match
/// is answered once, publishes its state once, and fires each link once.
async fn one_message_runs_once(broker: &Broker, device: &str) {
    let links = format!(
        "[[link]]\non = \"edge/{device}/led/+/set\"\ndo = \"matrix/set\"\npayload = \"smiley\"\n\
         [[link]]\non = \"edge/+/led/left/set\"\ndo = \"display/message/set\"\npayload = \"left\"\n"
    );
    let config = format!("{}{links}", device_config(device, broker));
    let (_agent, mut w) = online(broker, device, &config).await;
    let base = format!("edge/{device}");
    for t in ["led/left", "matrix", "display", "error"] {
        w.subscribe(&format!("{base}/{t}")).await;
    }
    let reply = format!("reply/{device}");
    w.subscribe(&reply).await;
    w.drain(Duration::from_millis(500)).await;
    w.request(
        &format!("{base}/led/left/set"),
        r#"{"state":"ON","brightness":77}"#,
        &reply,
        b"1",
    )
    .await;
    let got = seen(&mut w, Duration::from_millis(1500)).await;
    assert_eq!(count(&got, &reply), 1, "answers: {got:?}");
    assert_eq!(count(&got, &format!("{base}/led/left")), 1, "{got:?}");
    assert_eq!(count(&got, &format!("{base}/matrix")), 1, "{got:?}");
    assert_eq!(count(&got, &format!("{base}/display")), 1, "{got:?}");
    assert_eq!(count(&got, &format!("{base}/error")), 0, "{got:?}");
}

/// A link that mirrors the right LED onto the left one runs once per change:
/// a command to one LED publishes that LED's state alone.
async fn a_mirror_link_does_not_loop(broker: &Broker, device: &str) {
    let link = format!("[[link]]\non = \"edge/{device}/led/right\"\ndo = \"led/left/set\"\n");
    let config = format!("{}{link}", device_config(device, broker));
    let (_agent, mut w) = online(broker, device, &config).await;
    let base = format!("edge/{device}");
    w.subscribe(&format!("{base}/led/+")).await;
    w.subscribe(&format!("{base}/error")).await;
    w.drain(Duration::from_millis(500)).await;
    w.publish(
        &format!("{base}/led/right/set"),
        r#"{"state":"ON","brightness":40}"#,
    )
    .await;
    let got = seen(&mut w, Duration::from_millis(1500)).await;
    assert_eq!(count(&got, &format!("{base}/led/right")), 1, "{got:?}");
    assert_eq!(count(&got, &format!("{base}/led/left")), 1, "{got:?}");
    assert_eq!(count(&got, &format!("{base}/error")), 0, "{got:?}");
    let left = got
        .iter()
        .find(|(t, _)| *t == format!("{base}/led/left"))
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    assert!(left.contains("\"brightness\":40"), "{left}");
}

/// Takes the agent's MQTT session over with a bare MQTT 5 CONNECT for its
/// client id, then hangs up: the broker drops the agent, which reconnects
/// and subscribes again.
fn kick(port: u16, client_id: &str) {
    use std::io::{Read, Write};
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(&packet).expect("CONNECT");
    let mut connack = [0; 4];
    s.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack[0], 0x20, "CONNACK");
}

/// A link on another device's retained state fires on live changes only:
/// not at start, not when the broker hands the retained message over again
/// after a reconnection.
async fn a_retained_message_fires_no_link(broker: &Broker, device: &str) {
    let other = format!("edge/{device}-other/display");
    let setter = Client::connect(broker.port(), &format!("{device}-s")).await;
    setter
        .client
        .publish(
            other.as_str(),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            true,
            "before",
        )
        .await
        .expect("publish");
    let link = format!("[[link]]\non = \"{other}\"\ndo = \"matrix/set\"\npayload = \"smiley\"\n");
    let config = format!("{}{link}", device_config(device, broker));
    let base = format!("edge/{device}");
    let matrix = format!("{base}/matrix");
    let (_agent, mut w) = online(broker, device, &config).await;
    w.subscribe(&matrix).await;
    let smiley = |got: &[(String, String)]| {
        got.iter()
            .filter(|(t, p)| *t == matrix && p.contains("\"effect\":\"smiley\""))
            .count()
    };
    let got = seen(&mut w, Duration::from_millis(800)).await;
    assert_eq!(smiley(&got), 0, "fired at start: {got:?}");
    setter.publish(&other, "live").await;
    let got = seen(&mut w, Duration::from_millis(1000)).await;
    assert_eq!(smiley(&got), 1, "a live message fires it: {got:?}");
    w.publish(&format!("{base}/matrix/set"), "OFF").await;
    w.drain(Duration::from_millis(500)).await;
    kick(broker.port(), &format!("edge-agent-{device}"));
    w.expect(Duration::from_secs(15), |m| m.text() == "online")
        .await
        .expect("agent back online");
    let got = seen(&mut w, Duration::from_millis(1500)).await;
    assert_eq!(smiley(&got), 0, "fired again after reconnecting: {got:?}");
}

/// A link over its rate: each dropped trigger is reported for the topic the
/// message came on, within the error budget.
async fn a_dropped_trigger_names_its_topic(broker: &Broker, device: &str) {
    let link = "[[link]]\non = \"edge/+/button/event\"\ndo = \"matrix/set\"\npayload = \"smiley\"\nmax_per_second = 1\n";
    let config = format!("{}{link}", device_config(device, broker));
    let (_agent, mut w) = online(broker, device, &config).await;
    let base = format!("edge/{device}");
    w.subscribe(&format!("{base}/error")).await;
    w.drain(Duration::from_millis(300)).await;
    let came_on = format!("edge/{device}-b/button/event");
    for _ in 0..4 {
        w.publish(&came_on, r#"{"event_type":"press"}"#).await;
    }
    let got = w.drain(Duration::from_millis(1000)).await;
    let errors: Vec<_> = got.iter().filter(|m| m.topic.ends_with("/error")).collect();
    // One a second fires; the rest of the four sent at once are dropped (all
    // three, unless the machine is so slow that a second passes between them).
    assert!((1..=3).contains(&errors.len()), "{got:?}");
    for e in errors {
        assert_eq!(e.json()["topic"], came_on.as_str(), "{}", e.text());
        assert!(e.text().contains("link[0]"), "{}", e.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_through_the_embedded_broker() {
    let broker = Broker::embedded();
    one_message_runs_once(&broker, "lk-e1").await;
    a_mirror_link_does_not_loop(&broker, "lk-e2").await;
    a_dropped_trigger_names_its_topic(&broker, "lk-e3").await;
    a_retained_message_fires_no_link(&broker, "lk-e4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_through_mosquitto() {
    let Some(m) = Mosquitto::start() else {
        return;
    };
    let broker = Broker::Mosquitto(m);
    one_message_runs_once(&broker, "lk-m1").await;
    a_mirror_link_does_not_loop(&broker, "lk-m2").await;
    a_dropped_trigger_names_its_topic(&broker, "lk-m3").await;
    a_retained_message_fires_no_link(&broker, "lk-m4").await;
}
