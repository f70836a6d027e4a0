//! The embedded broker cannot stop the agent: clients that make rumqttd 0.20
//! panic (docs/known-issues.md) cost at most a reconnection. After each
//! trigger the agent process is still running, online, its LED still as it
//! was set, and it answers the next command.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;

/// An agent with the embedded broker, its LED set ON with a request (so it
/// answers), and a client on its MQTT 5 listener.
async fn agent_with_led_on(device: &str, extra: &str) -> (Agent, Client, u16, u16) {
    let v4 = free_port();
    let v5 = free_port();
    let agent = Agent::start(&format!(
        "{}{extra}[display]\nenabled = false\n",
        embedded_config(device, v4, v5)
    ));
    let mut c = Client::connect(v5, &format!("{device}-c")).await;
    c.subscribe(&format!("reply/{device}")).await;
    answers(&mut c, device, "ON", Duration::from_secs(5)).await;
    (agent, c, v4, v5)
}

/// Sends `payload` to the left LED with a response topic until the agent
/// answers `{"ok":true}` (the client reconnects by itself if the broker
/// was restarted), or fails the test after `within`.
async fn answers(c: &mut Client, device: &str, payload: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut n = 0u32;
    while tokio::time::Instant::now() < deadline {
        n += 1;
        let corr = format!("{payload}-{n}");
        // A broker restarted since loses the subscription: make it again.
        let _ = c.client.try_subscribe(
            format!("reply/{device}"),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        );
        let _ = c.client.try_publish_with_properties(
            format!("edge/{device}/led/left/set"),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            payload.to_string(),
            rumqttc::v5::mqttbytes::v5::PublishProperties {
                response_topic: Some(format!("reply/{device}")),
                correlation_data: Some(corr.clone().into()),
                ..Default::default()
            },
        );
        let got = c
            .expect(Duration::from_millis(500), |m| {
                m.correlation.as_deref() == Some(corr.as_bytes())
            })
            .await;
        if let Some(m) = got {
            assert_eq!(m.text(), r#"{"ok":true}"#);
            return;
        }
    }
    panic!("edge/{device} did not answer {payload} within {within:?}");
}

/// Checks that the agent survived: running, online, LED still ON, answering.
async fn still_serving(agent: &mut Agent, c: &mut Client, device: &str, v5: u16) {
    answers(c, device, "ON", Duration::from_secs(10)).await;
    assert!(
        agent.child.try_wait().expect("try_wait").is_none(),
        "the agent exited: {}",
        agent.stderr_text()
    );
    let status = retained(v5, &format!("{device}-s"), &format!("edge/{device}/status")).await;
    assert_eq!(status.text(), "online");
    let led = retained(
        v5,
        &format!("{device}-l"),
        &format!("edge/{device}/led/left"),
    )
    .await;
    assert_eq!(led.json()["state"], "ON", "{}", led.text());
    assert!(
        !agent.stderr_text().contains("stopped after a panic"),
        "{}",
        agent.stderr_text()
    );
}

/// Opens a TCP connection, sends an MQTT 3.1.1 CONNECT for `client_id`,
/// and resets the connection (RST, not FIN) at once; nothing while the
/// broker is not listening (restarting).
fn connect_and_reset(port: u16, client_id: &str) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let id = client_id.as_bytes();
    let mut body = b"\x00\x04MQTT\x04\x02\x00\x3c".to_vec();
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    s.write_all(&packet).expect("send CONNECT");
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: sets SO_LINGER on a socket we own, from a struct of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(s);
}

/// Polls a 3.1.1 client until it receives a packet `want` accepts, retrying
/// after errors (a broker restarting); false if none comes within `within`.
async fn v4_until(
    events: &mut rumqttc::EventLoop,
    within: Duration,
    want: fn(&rumqttc::Packet) -> bool,
) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(p)) if want(&p) => return,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .is_ok()
}

/// An MQTT 3.1.1 client (mosquitto_sub's default) on `port`, once the broker
/// has taken it (CONNACK); `None` if it has not within `within`.
async fn v4_client(
    port: u16,
    id: &str,
    within: Duration,
) -> Option<(rumqttc::AsyncClient, rumqttc::EventLoop)> {
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 10);
    v4_until(&mut events, within, |p| {
        matches!(p, rumqttc::Packet::ConnAck(_))
    })
    .await
    .then_some((client, events))
}

/// A 3.1.1 client on `port` subscribed to `filter` (the broker has acknowledged it).
async fn v4_subscriber(
    port: u16,
    id: &str,
    filter: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (sub, mut events) = v4_client(port, id, Duration::from_secs(5))
        .await
        .expect("a 3.1.1 subscriber");
    sub.subscribe(filter, rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    assert!(
        v4_until(&mut events, Duration::from_secs(5), |p| {
            matches!(p, rumqttc::Packet::SubAck(_))
        })
        .await,
        "subscribed"
    );
    (sub, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_1_1_subscriber_and_an_mqtt_5_request_do_not_stop_the_agent() {
    let device = "iso-v4sub";
    let (mut agent, mut c, v4, v5) = agent_with_led_on(device, "").await;
    // mosquitto_sub's default: MQTT 3.1.1 on the agent's topics.
    let (_sub, mut events) = v4_subscriber(v4, "iso-v4-sub", &format!("edge/{device}/#")).await;
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // The request itself carries properties, and so does the reply.
    answers(&mut c, device, "ON", Duration::from_secs(5)).await;
    still_serving(&mut agent, &mut c, device, v5).await;
    assert!(
        agent
            .stderr_text()
            .contains("dropped an MQTT 3.1.1 subscriber"),
        "the trigger did not fire: {}",
        agent.stderr_text()
    );
    poller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resets_its_connection_and_comes_back_does_not_stop_the_agent() {
    let device = "iso-reset";
    let (mut agent, mut c, v4, v5) = agent_with_led_on(device, "").await;
    for _ in 0..2 {
        connect_and_reset(v4, "iso-resetter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_serving(&mut agent, &mut c, device, v5).await;
    assert!(
        agent.stderr_text().contains("embedded broker stopped"),
        "the trigger did not fire: {}",
        agent.stderr_text()
    );
    // The 3.1.1 listener takes clients again.
    assert!(
        v4_client(v4, "iso-after", Duration::from_secs(10))
            .await
            .is_some(),
        "the 3.1.1 listener takes no clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_broker_and_a_refused_client_retrying_do_not_stop_the_agent() {
    let device = "iso-full";
    let (mut agent, mut c, v4, v5) = agent_with_led_on(device, "max_connections = 3\n").await;
    // The agent and `c` hold two of the three; a third client fills it.
    let (_fill, mut events) = v4_client(v4, "iso-fill", Duration::from_secs(5))
        .await
        .expect("the third client got in");
    let holder = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // Refused for want of room, the client tries again with its id.
    for _ in 0..3 {
        connect_and_reset(v4, "iso-refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holder.abort();
    still_serving(&mut agent, &mut c, device, v5).await;
    assert!(
        agent.stderr_text().contains("embedded broker stopped"),
        "the trigger did not fire: {}",
        agent.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_usec_0_is_no_watchdog() {
    let v4 = free_port();
    let v5 = free_port();
    let device = "iso-wd0";
    let mut agent = Agent::start_with_env(
        &format!(
            "{}[display]\nenabled = false\n",
            embedded_config(device, v4, v5)
        ),
        &[("WATCHDOG_USEC", "0")],
    );
    let mut c = Client::connect(v5, "iso-wd0-c").await;
    c.subscribe(&format!("reply/{device}")).await;
    answers(&mut c, device, "ON", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent.child.try_wait().expect("try_wait").is_none(),
        "{}",
        agent.stderr_text()
    );
}

/// Out of open files, rumqttd's accept loop would retry at once for as long
/// as it lasts: the broker process raises its limit to what
/// `broker.max_connections` needs, and is started again when it runs out
/// anyway, so no thread spins for more than about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_open_files_spins_no_thread() {
    let (v4, v5) = (free_port(), free_port());
    let device = "iso-files";
    let mut agent = Agent::start_with_open_files(
        &format!(
            "{}max_connections = 16\n[display]\nenabled = false\n",
            embedded_config(device, v4, v5)
        ),
        32,
        128,
    );
    let mut c = Client::connect(v5, "iso-files-c").await;
    c.subscribe(&format!("reply/{device}")).await;
    answers(&mut c, device, "ON", Duration::from_secs(5)).await;
    let supervisor = children(agent.pid());
    assert_eq!(supervisor.len(), 1, "one supervisor: {supervisor:?}");
    let supervisor = supervisor[0];
    let broker = children(supervisor);
    assert_eq!(broker.len(), 1, "one broker process: {broker:?}");
    // Raised from 32 to what 16 connections need (16 + 64), below the hard 128.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", broker[0])).expect("limits");
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_default()
        .to_string();
    assert_eq!(soft, "80", "{limits}");

    // Connections that never send CONNECT, more than the broker has files.
    let cpu = || {
        cpu_ticks_with_children(supervisor)
            + children(supervisor)
                .into_iter()
                .map(cpu_ticks_with_children)
                .sum::<u64>()
    };
    let before = cpu();
    let held: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", v4)).ok())
        .collect();
    assert!(held.len() > 80, "{} connections", held.len());
    tokio::time::sleep(Duration::from_secs(4)).await;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let spent = (cpu() - before) as f64 / hz as f64;
    drop(held);
    println!("4 s out of open files: the broker processes used {spent:.2} s of CPU");
    assert!(spent < 2.5, "a thread spun: {spent:.2} s of CPU in 4 s");
    assert!(
        agent.stderr_text().contains("ran out of open files"),
        "{}",
        agent.stderr_text()
    );
    still_serving(&mut agent, &mut c, device, v5).await;
}

/// Events through the embedded broker are plain publishes (no message
/// expiry): its 3.1.1 listener would drop a subscriber sent properties, so
/// Home Assistant on that listener gets every button press.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_1_1_subscriber_gets_the_button_presses() {
    let device = "iso-v4press";
    let (agent, c, v4, _) = agent_with_led_on(device, "").await;
    let filter = format!("edge/{device}/button/event");
    let (_sub, mut events) = v4_subscriber(v4, "iso-v4-press", &filter).await;
    for _ in 0..2 {
        c.publish(&format!("edge/{device}/sim/button/press"), "")
            .await;
        assert!(
            v4_until(&mut events, Duration::from_secs(5), |p| {
                matches!(p, rumqttc::Packet::Publish(m) if m.topic.ends_with("/button/event"))
            })
            .await,
            "a press reached the 3.1.1 subscriber: {}",
            agent.stderr_text()
        );
    }
    assert!(!agent
        .stderr_text()
        .contains("dropped an MQTT 3.1.1 subscriber"));
}
