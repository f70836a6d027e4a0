//! Nothing lost: a QoS 1 command is acknowledged to the broker only once the
//! agent has applied (or rejected) it, and every command with a response
//! topic is answered, however far the agent's outgoing side is behind.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// The command number an answer carries as its correlation data; only the
/// first answer of each (the board answers a second time when its panel
/// has shown the message, or a newer one superseded it).
fn answered(m: &Msg, reply: &str) -> Option<u32> {
    (m.topic == reply && m.payload.as_ref() == br#"{"ok":true}"#)
        .then(|| {
            std::str::from_utf8(m.correlation.as_ref()?)
                .ok()?
                .parse()
                .ok()
        })
        .flatten()
}

/// SIGKILLs the agent 20 times in the middle of a paced stream of distinct
/// QoS 1 requests through Mosquitto (persistent session), and counts their
/// answers: none missing, order kept, a duplicate only after a kill. Answers
/// are the proof of application: the board's retained state is a last
/// value, which a busy agent rightly publishes once for many commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_qos1_command() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let device = "alo-kill";
    let config = format!(
        "{}[display]\nbackend = \"sim\"\nrefresh_ms = 0\n[tilt]\nenabled = false\n",
        external_config(device, broker.port)
    );
    let mut watch = Client::connect(broker.port, "alo-kill-w").await;
    let reply = format!("reply/{device}");
    watch.subscribe(&reply).await;
    watch.subscribe(&format!("edge/{device}/status")).await;
    let sender = Client::connect(broker.port, "alo-kill-s").await;
    let topic = format!("edge/{device}/display/message/set");
    // What the watcher saw: each command answered, with the number of the
    // agent run that answered it. A run ends with the `offline` of its last
    // will, which the broker publishes after everything the killed agent
    // sent; the next run starts only then, so that none of its answers can
    // come before that boundary. A run may answer before its `online` (it
    // takes commands as soon as it is connected), so `online` is none.
    let mut seen: Vec<(usize, u32)> = Vec::new();
    let mut runs = Runs::default();
    #[derive(Default)]
    struct Runs {
        /// Wills seen: the number of the run now answering.
        generation: usize,
        /// `online`s seen.
        online: usize,
    }
    /// What the watcher reads until.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Until {
        Online,
        Offline,
        Answered(u32),
    }
    // Reads the watcher until `until`, within 30 s.
    async fn watch_until(
        watch: &mut Client,
        reply: &str,
        seen: &mut Vec<(usize, u32)>,
        runs: &mut Runs,
        until: Until,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m =
                tokio::time::timeout_at(deadline, watch.expect(Duration::from_secs(30), |_| true))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| {
                        panic!(
                            "nothing for 30 s, waiting for {until:?}; last seen: {:?}",
                            &seen[seen.len().saturating_sub(5)..]
                        )
                    });
            if m.text() == "offline" {
                runs.generation += 1;
                if until == Until::Offline {
                    return;
                }
            } else if m.text() == "online" {
                runs.online += 1;
                if until == Until::Online {
                    return;
                }
            } else if let Some(n) = answered(&m, reply) {
                seen.push((runs.generation, n));
                if until == Until::Answered(n) {
                    return;
                }
            }
        }
    }
    // The first agent makes the persistent session, then the stream starts
    // and runs until the last kill.
    let mut agent = Agent::start(&config);
    watch_until(&mut watch, &reply, &mut seen, &mut runs, Until::Online).await;
    let killing = Arc::new(AtomicBool::new(true));
    let stream = {
        let killing = Arc::clone(&killing);
        let reply = reply.clone();
        tokio::spawn(async move {
            // Bursts of 40 every 25 ms: a kill often finds commands the
            // agent has received and not yet applied.
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut n = 0;
            while killing.load(Ordering::Relaxed) || n < 200 {
                tick.tick().await;
                for _ in 0..40 {
                    n += 1;
                    let corr = n.to_string();
                    sender
                        .request(&topic, format!("m-{n}"), &reply, corr.as_bytes())
                        .await;
                }
            }
            // Kept: dropping the client would stop it before its last send.
            (n, sender)
        })
    };
    const KILLS: usize = 20;
    for k in 0..KILLS {
        // Somewhere in the middle of what it is doing: 150–390 ms after it
        // came online.
        tokio::time::sleep(Duration::from_millis(150 + (k as u64 * 37) % 240)).await;
        agent.kill();
        watch_until(&mut watch, &reply, &mut seen, &mut runs, Until::Offline).await;
        agent = Agent::start(&config);
        watch_until(&mut watch, &reply, &mut seen, &mut runs, Until::Online).await;
    }
    killing.store(false, Ordering::Relaxed);
    let (commands, _sender) = stream.await.expect("stream");
    // The last agent takes what is left.
    watch_until(
        &mut watch,
        &reply,
        &mut seen,
        &mut runs,
        Until::Answered(commands),
    )
    .await;
    let board = retained(broker.port, "alo-kill-r", &format!("edge/{device}/display")).await;
    assert_eq!(
        board.json()["text"],
        format!("m-{commands}"),
        "the board shows the last command"
    );
    drop(agent);
    let got: HashSet<u32> = seen.iter().map(|(_, n)| *n).collect();
    let lost: Vec<u32> = (1..=commands).filter(|n| !got.contains(n)).collect();
    let mut first: HashMap<u32, usize> = HashMap::new();
    let mut duplicates = 0;
    let mut order = Vec::new();
    for (g, n) in &seen {
        match first.get(n) {
            None => {
                first.insert(*n, *g);
                order.push(*n);
            }
            Some(g0) => {
                duplicates += 1;
                assert!(g > g0, "m-{n} answered twice by one agent (generation {g})");
            }
        }
    }
    println!(
        "{KILLS} kills, {commands} commands: {} unanswered, {duplicates} answered twice (applied, killed before the acknowledgement)",
        lost.len()
    );
    assert!(lost.is_empty(), "unanswered: {lost:?}");
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}"
    );
    assert_eq!(
        (runs.online, runs.generation),
        (KILLS + 1, KILLS),
        "agents that came online, and last wills"
    );
}

/// Sends `count` requests to the left LED as fast as the client takes them
/// and collects the answers; returns how many distinct answers came.
async fn flood_requests(port: u16, device: &str, count: u32, tag: &str) -> usize {
    let mut c = Client::connect(port, &format!("{device}-{tag}")).await;
    let reply = format!("reply/{device}/{tag}");
    c.subscribe(&reply).await;
    let topic = format!("edge/{device}/led/left/set");
    let sending = {
        let client = c.client.clone();
        let reply = reply.clone();
        tokio::spawn(async move {
            for n in 0..count {
                let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    response_topic: Some(reply.clone()),
                    correlation_data: Some(n.to_string().into()),
                    ..Default::default()
                };
                let payload = format!(r#"{{"state":"ON","brightness":{}}}"#, 1 + n % 255);
                client
                    .publish_with_properties(
                        topic.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        payload,
                        props,
                    )
                    .await
                    .expect("publish");
            }
        })
    };
    let mut answered = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while answered.len() < count as usize {
        match tokio::time::timeout_at(
            deadline,
            c.expect(Duration::from_secs(120), |m| m.topic == reply),
        )
        .await
        {
            Ok(Some(m)) => {
                assert_eq!(m.text(), r#"{"ok":true}"#);
                answered.insert(m.correlation.unwrap_or_default());
            }
            _ => break,
        }
    }
    sending.await.expect("sender");
    answered.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_requests_get_twenty_thousand_answers() {
    let v4 = free_port();
    let v5 = free_port();
    let device = "alo-flood";
    let agent = Agent::start(&format!(
        "{}[display]\nenabled = false\n",
        embedded_config(device, v4, v5)
    ));
    let answered = flood_requests(v5, device, 20_000, "a").await;
    println!("20000 requests through the embedded broker: {answered} answers");
    assert_eq!(answered, 20_000);
    let led = retained(v5, "alo-flood-r", &format!("edge/{device}/led/left")).await;
    assert_eq!(led.json()["brightness"], 1 + 19_999 % 255, "{}", led.text());
    let stderr = agent.stderr_text();
    assert!(
        stderr.lines().count() < 50 && !stderr.contains("dropped"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_1500_after_a_reconnection_is_all_answered() {
    let Some(broker) = Mosquitto::start_with("max_queued_messages 5000\n") else {
        return;
    };
    let device = "alo-backlog";
    let mut agent = Agent::start(&format!(
        "{}keep_alive_s = 5\n[display]\nenabled = false\n",
        external_config(device, broker.port)
    ));
    let mut watch = Client::connect(broker.port, "alo-backlog-w").await;
    watch.subscribe(&format!("edge/{device}/status")).await;
    watch
        .expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    // Frozen past its keep-alive, the agent is dropped by the broker, which
    // queues what comes meanwhile; thawed, the agent reconnects.
    signal(agent.pid(), "STOP");
    let requests = tokio::spawn(flood_requests(broker.port, device, 1500, "b"));
    // Mosquitto drops a client 1.5 keep-alives after its last packet.
    tokio::time::sleep(Duration::from_secs(12)).await;
    signal(agent.pid(), "CONT");
    let answered = requests.await.expect("requests");
    println!("1500 requests queued while the agent was away: {answered} answers");
    assert_eq!(answered, 1500, "{}", agent.stderr_text());
    let led = retained(
        broker.port,
        "alo-backlog-r",
        &format!("edge/{device}/led/left"),
    )
    .await;
    assert_eq!(led.json()["brightness"], 1 + 1499 % 255, "{}", led.text());
    assert!(agent.child.try_wait().expect("try_wait").is_none());
    assert!(
        agent.stderr_text().contains("connection lost"),
        "no reconnection: {}",
        agent.stderr_text()
    );
}
