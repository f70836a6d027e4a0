//! Broker faults under a running agent, with commands flowing and every one
//! counted: while the agent is away (its persistent session keeps the QoS 1
//! commands sent meanwhile) and while the broker itself is killed and
//! restarted (the sender repeats a command until the agent's reply comes).
//! What must hold: every command applied, none lost, none applied out of
//! order, and no command's effect repeated (a repeat of an idempotent frame
//! writes nothing new).

use crate::common;
use crate::scenarios;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use edge_agent::parts::matrix::Frame;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use scenarios::Broker;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the sender's connection saw.
enum Seen {
    Connected,
    Lost,
    Status(String),
    Reply { seq: u32, ok: bool },
}

/// The sender of commands: an MQTT 5 client that follows the agent's status
/// and the replies to its requests, across its own reconnections.
struct Sender {
    client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
    base: String,
    reply: String,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sender {
    async fn connect(port: u16, device: &str) -> Sender {
        let base = format!("edge/{device}");
        let reply = format!("test/{device}/reply");
        let status = format!("{base}/status");
        let mut opts = MqttOptions::new(format!("{device}-sender"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        opts.set_network_options(net);
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        let (tx, seen) = mpsc::unbounded_channel();
        let sub = client.clone();
        let reply_topic = reply.clone();
        let task = tokio::spawn(async move {
            let mut up = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up = true;
                        let _ = sub.try_subscribe_many([
                            Filter::new(reply_topic.clone(), QoS::AtLeastOnce),
                            Filter::new(status.clone(), QoS::AtLeastOnce),
                        ]);
                        let _ = tx.send(Seen::Connected);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let seq = p
                            .properties
                            .as_ref()
                            .and_then(|pr| pr.correlation_data.as_ref())
                            .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok());
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        let _ = match seq {
                            Some(seq) if p.topic == reply_topic.as_bytes() => {
                                tx.send(Seen::Reply {
                                    seq,
                                    ok: text == r#"{"ok":true}"#,
                                })
                            }
                            _ => tx.send(Seen::Status(text)),
                        };
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if std::mem::take(&mut up) {
                            let _ = tx.send(Seen::Lost);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        let mut s = Sender {
            client,
            seen,
            task,
            base,
            reply,
        };
        // Connected and subscribed, the agent seen online.
        s.wait_online(Duration::from_secs(10))
            .await
            .expect("the sender sees the agent online");
        s
    }

    /// Waits until the agent is seen `online` (after this client's own
    /// latest connection); replies seen meanwhile are returned.
    async fn wait_online(&mut self, within: Duration) -> Option<Vec<(u32, bool)>> {
        let deadline = Instant::now() + within;
        let mut replies = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(Seen::Status(s))) if s == "online" => return Some(replies),
                Ok(Some(Seen::Reply { seq, ok })) => replies.push((seq, ok)),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// Publishes command `seq` (QoS 1, with a response topic) without waiting.
    async fn send(&self, seq: u32) {
        let props = PublishProperties {
            response_topic: Some(self.reply.clone()),
            correlation_data: Some(Bytes::from(seq.to_string())),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                format!("{}/matrix/set", self.base),
                QoS::AtLeastOnce,
                false,
                Frame::from_bits(seq).to_text(),
                props,
            )
            .await
            .expect("publish");
    }
}

/// Every reply counted by command; fails on an error reply.
fn count(replies: &mut BTreeMap<u32, u32>, seq: u32, ok: bool) {
    assert!(ok, "command {seq} got an error reply");
    *replies.entry(seq).or_default() += 1;
}

/// Checks the frames the matrix was given: each command's frame at most
/// once, in the order sent, ending at `last`; returns how many were written.
fn check_frames(frames: &[Vec<bool>], last: u32) -> usize {
    let written: Vec<u32> = frames
        .iter()
        .map(|f| Frame::from_leds(f).bits())
        .filter(|s| *s != 0)
        .collect();
    for w in written.windows(2) {
        assert!(
            w[0] < w[1],
            "frame of command {} written after that of {}: a repeated or reordered effect",
            w[1],
            w[0]
        );
    }
    assert_eq!(
        written.last(),
        Some(&last),
        "the matrix ends at the last command"
    );
    written.len()
}

/// The agent is stopped three times while 40 commands are sent to it each
/// time; the broker keeps them in the agent's session and the agent applies
/// them, in order, when it is back. Then the broker is killed and restarted
/// three times while the sender goes on, one command at a time, repeating
/// a command until its reply comes.
async fn no_command_lost(mut broker: Broker, device: &str) {
    let config = format!(
        "{}[tilt]\nenabled = false\n[button]\nenabled = false\n[homeassistant]\nenabled = false\n",
        scenarios::device_config(device, &broker)
    );
    let mut agent = InProcess::start(&config);
    let mut sender = Sender::connect(broker.port(), device).await;
    let mut replies = BTreeMap::new();
    let mut frames = Vec::new();
    let mut seq = 0;

    // 1. The agent away, the broker up.
    for _ in 0..3 {
        frames.extend(agent.matrix().values());
        agent.stop().await;
        let first = seq + 1;
        for _ in 0..40 {
            seq += 1;
            sender.send(seq).await;
        }
        agent = InProcess::start(&config);
        let deadline = Instant::now() + Duration::from_secs(15);
        while (first..=seq).any(|s| !replies.contains_key(&s)) {
            match tokio::time::timeout_at(deadline, sender.seen.recv()).await {
                Ok(Some(Seen::Reply { seq, ok })) => count(&mut replies, seq, ok),
                Ok(Some(_)) => {}
                _ => panic!(
                    "commands sent while the agent was away and not applied: {:?}",
                    (first..=seq)
                        .filter(|s| !replies.contains_key(s))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }
    let queued = seq;

    // 2. The broker killed and restarted under the running agent.
    let faults = tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(700));
            broker.kill();
            std::thread::sleep(Duration::from_millis(300));
            broker.restart();
        }
        broker
    });
    let mut repeats = 0;
    let mut outages = 0;
    let end = Instant::now() + Duration::from_secs(60);
    while !faults.is_finished() || seq < queued + 100 {
        assert!(Instant::now() < end, "the sender made no progress for 60 s");
        seq += 1;
        'this: loop {
            sender.send(seq).await;
            let wait = Instant::now() + Duration::from_millis(1500);
            loop {
                match tokio::time::timeout_at(wait, sender.seen.recv()).await {
                    Ok(Some(Seen::Reply { seq: s, ok })) => {
                        count(&mut replies, s, ok);
                        if s == seq {
                            break 'this;
                        }
                    }
                    Ok(Some(Seen::Lost)) => {
                        outages += 1;
                        // Wait for the agent to be back before repeating.
                        for (s, ok) in sender
                            .wait_online(Duration::from_secs(20))
                            .await
                            .expect("the agent is back online after the broker restart")
                        {
                            count(&mut replies, s, ok);
                        }
                        if replies.contains_key(&seq) {
                            break 'this;
                        }
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("sender stopped"),
                    Err(_) => break,
                }
            }
            repeats += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _broker = faults.await.expect("broker faults");
    assert!(
        outages >= 3,
        "the sender saw {outages} of the 3 broker outages while it sent commands"
    );
    frames.extend(agent.matrix().values());
    agent.stop().await;

    let lost: Vec<u32> = (1..=seq).filter(|s| !replies.contains_key(s)).collect();
    assert!(lost.is_empty(), "commands lost: {lost:?}");
    let written = check_frames(&frames, seq);
    let duplicates: u32 = replies.values().map(|n| n - 1).sum();
    println!(
        "{device}: {seq} commands ({queued} sent while the agent was away), all applied in order; \
         {written} frames written; {outages} broker outages seen by the sender, {repeats} repeats; \
         {duplicates} duplicate deliveries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_lost_when_the_agent_or_the_embedded_broker_goes_away() {
    no_command_lost(Broker::embedded(), "fault-emb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_lost_when_the_agent_or_mosquitto_goes_away() {
    let Some(m) = Mosquitto::start() else { return };
    no_command_lost(Broker::Mosquitto(m), "fault-mq").await;
}
