//! Scenarios run against any broker: the embedded one (in its own agent
//! process, so it can be killed and restarted) and a real Mosquitto.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::common::*;

/// A broker the agent under test connects to.
pub enum Broker {
    /// Another edge-agent process whose embedded broker serves the test.
    Embedded {
        hub: Option<Agent>,
        v4: u16,
        v5: u16,
    },
    /// A Mosquitto process.
    Mosquitto(Mosquitto),
}

impl Broker {
    pub fn embedded() -> Broker {
        let (v4, v5) = (free_port(), free_port());
        let mut b = Broker::Embedded { hub: None, v4, v5 };
        b.start();
        b
    }

    fn hub_config(v4: u16, v5: u16) -> String {
        format!(
            "{}[tilt]\nenabled = false\n[matrix]\nenabled = false\n[button]\nenabled = false\n",
            embedded_config("hub", v4, v5)
        )
    }

    fn start(&mut self) {
        if let Broker::Embedded { hub, v4, v5 } = self {
            let agent = Agent::start(&Self::hub_config(*v4, *v5));
            assert!(
                wait_port(*v5, Duration::from_secs(5)),
                "hub broker did not listen"
            );
            *hub = Some(agent);
        }
    }

    /// Port that speaks MQTT 5 (the agent and the test client use it).
    pub fn port(&self) -> u16 {
        match self {
            Broker::Embedded { v5, .. } => *v5,
            Broker::Mosquitto(m) => m.port,
        }
    }

    pub fn kill(&mut self) {
        match self {
            Broker::Embedded { hub, v4, v5 } => {
                if let Some(mut h) = hub.take() {
                    h.kill();
                    // The broker runs in the hub's child processes, which end
                    // with it a moment later: only then are its ports free
                    // for the next hub (which would find them busy, and the
                    // test would reach the dying broker).
                    assert!(
                        wait_port_free(*v4, Duration::from_secs(5))
                            && wait_port_free(*v5, Duration::from_secs(5)),
                        "the killed hub's broker still listens"
                    );
                }
            }
            Broker::Mosquitto(m) => m.kill(),
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        match self {
            Broker::Embedded { .. } => self.start(),
            Broker::Mosquitto(m) => m.restart(),
        }
    }
}

/// Agent config for a device on this broker, with the simulated parts.
pub fn device_config(device: &str, broker: &Broker) -> String {
    external_config(device, broker.port())
}

/// `online` retained while it runs; `offline` retained after SIGTERM, exit 0 within 1 s.
pub async fn online_then_offline(broker: &Broker, device: &str) {
    let base = format!("edge/{device}");
    let status = format!("{base}/status");
    let mut agent = Agent::start(&device_config(device, broker));
    let mut watcher = Client::connect(broker.port(), &format!("{device}-watch")).await;
    watcher.subscribe(&status).await;
    watcher
        .expect(Duration::from_secs(5), |m| is(m, &status, "online"))
        .await
        .expect("agent goes online");
    // A fresh subscriber gets it as a retained message.
    let m = retained(broker.port(), &format!("{device}-late"), &status).await;
    assert_eq!((m.text().as_str(), m.retain), ("online", true));

    let (took, exit) = agent.terminate();
    assert!(
        exit.success(),
        "exit status {exit:?}; stderr:\n{}",
        agent.stderr_text()
    );
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM to exit took {took:?}"
    );
    watcher
        .expect(Duration::from_secs(3), |m| is(m, &status, "offline"))
        .await
        .expect("offline after SIGTERM");
    let mut after = Client::connect(broker.port(), &format!("{device}-after")).await;
    after.subscribe(&status).await;
    let m = after
        .expect(Duration::from_secs(3), |m| m.topic == status)
        .await
        .expect("retained");
    assert_eq!((m.text().as_str(), m.retain), ("offline", true));
}

/// A killed agent leaves `offline` through its last will.
pub async fn last_will(broker: &Broker, device: &str) {
    let status = format!("edge/{device}/status");
    let mut agent = Agent::start(&device_config(device, broker));
    let mut watcher = Client::connect(broker.port(), &format!("{device}-watch")).await;
    watcher.subscribe(&status).await;
    watcher
        .expect(Duration::from_secs(5), |m| is(m, &status, "online"))
        .await
        .expect("agent goes online");
    agent.kill();
    watcher
        .expect(Duration::from_secs(5), |m| is(m, &status, "offline"))
        .await
        .expect("last will after SIGKILL");
}

/// After the broker restarts, the agent is back online and answering within 2 s.
pub async fn survives_broker_restart(broker: &mut Broker, device: &str) {
    let base = format!("edge/{device}");
    let status = format!("{base}/status");
    let _agent = Agent::start(&device_config(device, broker));
    {
        let mut w = Client::connect(broker.port(), &format!("{device}-w0")).await;
        w.subscribe(&status).await;
        w.expect(Duration::from_secs(5), |m| is(m, &status, "online"))
            .await
            .expect("online");
        // State set before the restarts, to be found retained after them.
        let led = format!("{base}/led/right");
        w.subscribe(&led).await;
        w.publish(&format!("{led}/set"), "40").await;
        w.expect(Duration::from_secs(3), |m| {
            m.topic == led && m.json()["brightness"] == 102
        })
        .await
        .expect("LED state before the restart");
    }
    for round in 0..2 {
        broker.restart();
        let t0 = Instant::now();
        let mut w = Client::connect(broker.port(), &format!("{device}-w{}", round + 1)).await;
        let reply = format!("test/{device}/reply");
        w.subscribe(&status).await;
        w.subscribe(&reply).await;
        w.expect(Duration::from_secs(2), |m| is(m, &status, "online"))
            .await
            .unwrap_or_else(|| panic!("round {round}: not online again within 2 s"));
        // Answering commands: retry until the agent has resubscribed.
        let mut answered = false;
        while t0.elapsed() < Duration::from_secs(2) && !answered {
            w.request(&format!("{base}/matrix/set"), "OFF", &reply, b"r")
                .await;
            answered = w
                .expect(Duration::from_millis(200), |m| m.topic == reply)
                .await
                .is_some_and(|m| m.json()["ok"] == true);
        }
        assert!(
            answered,
            "round {round}: no answer within 2 s of the restart"
        );
        // Retained state is there again (the embedded broker forgets it on restart).
        let mut fresh = Client::connect(broker.port(), &format!("{device}-f{round}")).await;
        fresh.subscribe(&format!("{base}/led/right")).await;
        let m = fresh
            .expect(Duration::from_secs(2), |m| m.retain)
            .await
            .unwrap_or_else(|| panic!("round {round}: no retained LED state after the restart"));
        assert_eq!(m.json()["brightness"], 102, "round {round}: {m:?}");
        eprintln!(
            "round {round}: online and answering {:?} after the broker restart",
            t0.elapsed()
        );
    }
}

/// Every rejected command gets an error reply; the agent keeps running.
pub async fn rejects_bad_commands(broker: &Broker, device: &str) {
    let base = format!("edge/{device}");
    let mut agent = Agent::start(&device_config(device, broker));
    let mut c = Client::connect(broker.port(), &format!("{device}-c")).await;
    c.subscribe(&format!("{base}/status")).await;
    c.expect(Duration::from_secs(5), |m| {
        is(m, &format!("{base}/status"), "online")
    })
    .await
    .expect("online");
    check_rejections(&mut c, &base).await;
    assert!(
        agent.child.try_wait().expect("try_wait").is_none(),
        "agent still running"
    );
}

/// Two boards in the group `edge/<prefix>-all`, one also in `<prefix>/kitchen`:
/// a command below a group runs on each of its boards once, each answers
/// (naming itself) and reports errors below its own base; `edge-agent send
/// --group` waits for both.
pub async fn group_topics(broker: &Broker, prefix: &str) {
    let all = format!("edge/{prefix}-all");
    let kitchen = format!("{prefix}/kitchen");
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let config = |device: &str, groups: &[&str]| {
        format!(
            "{}group_topics = {groups:?}\n",
            device_config(device, broker)
        )
    };
    let config_a = config(&a, &[&all, &kitchen]);
    let _agent_a = Agent::start(&config_a);
    let _agent_b = Agent::start(&config(&b, &[&all]));
    let mut c = Client::connect(broker.port(), &format!("{prefix}-c")).await;
    for d in [&a, &b] {
        c.subscribe(&format!("edge/{d}/#")).await;
    }
    c.subscribe(&format!("reply/{prefix}")).await;
    // Both online, in whichever order they come: `expect` drops what it is
    // not waiting for, so waiting for one board, then the other, lost the
    // second's status when it came first (two agents starting under qemu).
    let mut offline: Vec<String> = [&a, &b]
        .iter()
        .map(|d| format!("edge/{d}/status"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !offline.is_empty() {
        let within = deadline.saturating_duration_since(Instant::now());
        let m = c
            .expect(within, |m| offline.iter().any(|s| is(m, s, "online")))
            .await
            .unwrap_or_else(|| panic!("not online within 10 s: {offline:?}"));
        offline.retain(|s| *s != m.topic);
    }
    // One command to the group: each board's matrix, once each.
    c.request(
        &format!("{all}/matrix/set"),
        "smiley",
        &format!("reply/{prefix}"),
        b"g1",
    )
    .await;
    let seen = c.drain(Duration::from_secs(2)).await;
    for d in [&a, &b] {
        let matrix = format!("edge/{d}/matrix");
        // Live, not a board's retained state from before.
        let states: Vec<_> = seen
            .iter()
            .filter(|m| m.topic == matrix && !m.retain)
            .collect();
        assert_eq!(states.len(), 1, "{d}: {seen:?}");
        assert_eq!(states[0].json()["effect"], "smiley", "{d}");
    }
    let mut answered: Vec<String> = seen
        .iter()
        .filter(|m| m.topic == format!("reply/{prefix}"))
        .map(|m| {
            assert_eq!(m.json()["ok"], true, "{m:?}");
            assert_eq!(m.correlation.as_deref(), Some(&b"g1"[..]));
            m.user
                .iter()
                .find(|(k, _)| k == "base")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    answered.sort();
    assert_eq!(answered, [format!("edge/{a}"), format!("edge/{b}")]);
    // The kitchen group is only board a.
    c.publish(&format!("{kitchen}/led/left/set"), "ON").await;
    let seen = c.drain(Duration::from_secs(2)).await;
    assert!(
        seen.iter()
            .any(|m| m.topic == format!("edge/{a}/led/left") && m.json()["state"] == "ON"),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|m| m.topic.starts_with(&format!("edge/{b}/led"))),
        "{seen:?}"
    );
    // A bad command to a group: each board reports it below its own base,
    // naming the topic it came on.
    c.publish(&format!("{all}/nope/set"), "x").await;
    let seen = c.drain(Duration::from_secs(2)).await;
    for d in [&a, &b] {
        let error = format!("edge/{d}/error");
        let e = seen
            .iter()
            .find(|m| m.topic == error)
            .unwrap_or_else(|| panic!("{d} reports the error: {seen:?}"));
        assert_eq!(e.json()["topic"], format!("{all}/nope/set"), "{e:?}");
    }
    // `edge-agent send --group` by the group's last level, from board a's config.
    let (mut send, _dir) = command(
        &config_a,
        &[
            "send",
            "--group",
            &format!("{prefix}-all"),
            "--timeout",
            "5",
            "hello all",
        ],
        &[],
    );
    let out = send.output().expect("run send");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("2 of 2 boards below {all} showed it")),
        "{stdout}"
    );
    for d in [&a, &b] {
        assert!(stdout.contains(&format!("shown on edge/{d}")), "{stdout}");
        let board = retained(
            broker.port(),
            &format!("{d}-r"),
            &format!("edge/{d}/display"),
        )
        .await;
        assert_eq!(board.json()["text"], "hello all", "{d}");
    }
}
