//! The same agent against a real Mosquitto broker. Skipped (with a notice)
//! when Mosquitto is not installed, but failed when `CI` is set.

mod common;
mod scenarios;

use common::Mosquitto;
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
