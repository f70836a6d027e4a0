//! The same agent against a real Mosquitto broker. Skipped (with a notice)
//! when Mosquitto is not installed, but failed when `CI` is set.

use crate::common;
use crate::scenarios;

use std::time::Duration;

use common::*;
use scenarios::Broker;

fn mosquitto() -> Option<Broker> {
    Mosquitto::start().map(Broker::Mosquitto)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_then_offline_through_mosquitto() {
    let Some(broker) = mosquitto() else { return };
    scenarios::online_then_offline(&broker, "mq-life").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_through_mosquitto() {
    let Some(broker) = mosquitto() else { return };
    scenarios::last_will(&broker, "mq-will").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_online_after_mosquitto_restarts() {
    let Some(mut broker) = mosquitto() else {
        return;
    };
    scenarios::survives_broker_restart(&mut broker, "mq-restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_error_replies_through_mosquitto() {
    let Some(broker) = mosquitto() else { return };
    scenarios::rejects_bad_commands(&broker, "mq-bad").await;
}

/// `mqtts://` with a CA file: the agent goes online over TLS; with the wrong
/// CA it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(dir.path());
    let Some(m) = Mosquitto::start_tls(&pki) else {
        return;
    };
    let tls_port = m.tls_port.expect("tls port");
    let other = tempfile::tempdir().expect("temp dir");
    let wrong = TestPki::generate(other.path());
    let config = |device: &str, ca: &std::path::Path| {
        format!(
            "[device]\nid = \"{device}\"\n[broker]\nenabled = false\n[mqtt]\nurl = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{}\"\n",
            ca.display()
        )
    };
    let mut watcher = Client::connect(m.port, "tls-watch").await;
    watcher.subscribe("edge/+/status").await;
    let _good = Agent::start(&config("tls-good", &pki.ca_pem));
    let _bad = Agent::start(&config("tls-bad", &wrong.ca_pem));
    watcher
        .expect(Duration::from_secs(5), |m| {
            is(m, "edge/tls-good/status", "online")
        })
        .await
        .expect("online over TLS with the right CA");
    let seen = watcher.drain(Duration::from_secs(1)).await;
    assert!(
        !seen.iter().any(|m| m.topic == "edge/tls-bad/status"),
        "an agent with the wrong CA must not connect: {seen:?}"
    );
}

/// Events and replies expire (MQTT 5 message expiry): a press or an answer
/// is not handed to a subscriber that comes back an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_replies_carry_a_message_expiry() {
    let Some(m) = Mosquitto::start() else { return };
    let device = "mq-expiry";
    let _agent = Agent::start(&external_config(device, m.port));
    let mut c = Client::connect(m.port, "mq-expiry-c").await;
    c.subscribe(&format!("edge/{device}/status")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.subscribe(&format!("edge/{device}/button/event")).await;
    c.subscribe("reply/mq-expiry").await;
    c.publish(&format!("edge/{device}/sim/button/press"), "")
        .await;
    let press = c
        .expect(Duration::from_secs(5), |m| {
            m.topic.ends_with("/button/event")
        })
        .await
        .expect("a press");
    assert!(
        matches!(press.expiry, Some(s) if (50..=60).contains(&s)),
        "{:?}",
        press.expiry
    );
    c.request(
        &format!("edge/{device}/led/left/set"),
        "ON",
        "reply/mq-expiry",
        b"1",
    )
    .await;
    let reply = c
        .expect(Duration::from_secs(5), |m| m.topic == "reply/mq-expiry")
        .await
        .expect("a reply");
    assert!(
        matches!(reply.expiry, Some(s) if (50..=60).contains(&s)),
        "{:?}",
        reply.expiry
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_topics_through_mosquitto() {
    let Some(broker) = mosquitto() else { return };
    scenarios::group_topics(&broker, "mq-grp").await;
}
