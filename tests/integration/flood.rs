//! A misbehaving client of the embedded broker — oversized packets, a packet
//! header that announces 256 MB, a flood of publishes, a flood of bad
//! commands — does not starve the other clients: the agent stays online and
//! answers a well-behaved client's commands in time throughout.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// An MQTT 3.1.1 CONNECT packet for `id`.
fn connect_packet(id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

/// Whether the broker closes `stream` within `within`.
fn closed_by_broker(stream: &mut TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let deadline = Instant::now() + within;
    let mut buf = [0; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// A client that publishes `payload` on `topic` (QoS 0) as fast as the
/// broker takes it until `stop`; counts what it sent.
fn flooder(
    port: u16,
    id: &str,
    topic: String,
    payload: Bytes,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        let publisher = tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if client
                    .publish(topic.clone(), QoS::AtMostOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = client.disconnect().await;
        });
        while let Ok(e) = eventloop.poll().await {
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = e {
                break;
            }
        }
        publisher.abort();
    })
}

/// The well-behaved client's command `i`: a matrix frame, answered within
/// `within`; how long the answer took.
async fn good_command(good: &mut Client, base: &str, i: u32, within: Duration) -> Duration {
    let frame = if i % 2 == 0 {
        "10001/01010/00100/01010/10001"
    } else {
        "01110/10001/10001/10001/01110"
    };
    let reply = "test/flood/reply";
    let corr = format!("good-{i}");
    let t = Instant::now();
    good.request(&format!("{base}/matrix/set"), frame, reply, corr.as_bytes())
        .await;
    let answer = good
        .expect(within, |m| {
            m.topic == reply && m.correlation.as_deref() == Some(corr.as_bytes())
        })
        .await
        .unwrap_or_else(|| panic!("command {i} of the good client unanswered within {within:?}"));
    assert_eq!(answer.text(), r#"{"ok":true}"#);
    t.elapsed()
}

fn median_max(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    (d[d.len() / 2], d[d.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_client_does_not_starve_the_others() {
    let (v4, v5) = (free_port(), free_port());
    let device = "flooded";
    let base = format!("edge/{device}");
    let mut agent = Agent::start(&format!(
        "{}[display]\nenabled = false\n[homeassistant]\nenabled = false\n",
        embedded_config(device, v4, v5)
    ));
    assert!(wait_port(v5, Duration::from_secs(5)));
    let mut good = Client::connect(v5, "flood-good").await;
    good.subscribe(&format!("{base}/status")).await;
    good.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    good.subscribe("test/flood/reply").await;
    let mut chat = Client::connect(v5, "flood-chat").await;
    chat.subscribe("test/flood/chat").await;

    // 1. Abuse of the broker. A packet header announcing 256 MB, then
    // nothing; bytes that are no MQTT at all; a 1 MiB publish (over the
    // broker's 256 KiB limit); and a flood of 8 KiB publishes on another
    // topic. The broker hangs up on the first three; the flood goes on.
    let mut liar = TcpStream::connect(("127.0.0.1", v4)).expect("connect");
    liar.write_all(&connect_packet("flood-liar"))
        .expect("CONNECT");
    liar.write_all(&[0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1, b'x'])
        .expect("PUBLISH header");
    let mut noise = TcpStream::connect(("127.0.0.1", v5)).expect("connect");
    noise.write_all(&[0xff; 64]).expect("noise");
    let mut big_opts = MqttOptions::new("flood-big", "127.0.0.1", v5);
    big_opts.set_max_packet_size(Some(4 * 1024 * 1024));
    let (big, mut big_loop) = AsyncClient::new(big_opts, 10);
    big.publish(
        format!("{base}/display/message/set"),
        QoS::AtLeastOnce,
        false,
        vec![b'm'; 1024 * 1024],
    )
    .await
    .expect("queue the big publish");
    let big_dropped = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut connected = false;
        loop {
            match tokio::time::timeout_at(deadline, big_loop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => connected = true,
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return connected,
                Err(_) => return false,
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let junk = Arc::new(AtomicU64::new(0));
    let flood = flooder(
        v5,
        "flood-junk",
        "junk/flood".into(),
        Bytes::from(vec![b'j'; 8192]),
        Arc::clone(&stop),
        Arc::clone(&junk),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the well-behaved clients: commands to the agent, one at a
    // time, and messages between two plain clients.
    let mut took = Vec::new();
    let mut chat_took = Vec::new();
    for i in 0..30u32 {
        took.push(good_command(&mut good, &base, i, Duration::from_secs(2)).await);
        let t = Instant::now();
        good.publish("test/flood/chat", format!("hello {i}")).await;
        let text = format!("hello {i}");
        chat.expect(Duration::from_secs(2), |m| m.text() == text)
            .await
            .unwrap_or_else(|| panic!("chat message {i} not delivered within 2 s"));
        chat_took.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), flood).await;
    let junk = junk.load(Ordering::Relaxed);
    assert!(junk > 1000, "the flood ran ({junk} publishes)");
    assert!(
        big_dropped.await.expect("join"),
        "the client that sent 1 MiB is disconnected"
    );
    assert!(
        closed_by_broker(&mut liar, Duration::from_secs(5)),
        "the broker hangs up on a 256 MB packet header"
    );
    assert!(
        closed_by_broker(&mut noise, Duration::from_secs(5)),
        "the broker hangs up on bytes that are not MQTT"
    );
    let (cmd_median, cmd_max) = median_max(took);
    let (chat_median, chat_max) = median_max(chat_took);
    println!(
        "broker abuse ({junk} × 8 KiB flood, 1 MiB publish, 256 MB header, noise): \
         30 commands answered, median {cmd_median:?}, max {cmd_max:?}; \
         30 chat messages delivered, median {chat_median:?}, max {chat_max:?}"
    );

    // 2. A flood of bad commands at the agent itself. Its commands share
    // one ordered stream, so the good client's wait behind the flood; what
    // must hold: the agent stays up, its log stays quiet (rejections beyond
    // 50 a second are counted, not logged one by one), and it answers at
    // once when the flood stops.
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let log_before = agent.stderr_text().lines().count();
    let rss_before = rss_kib_tree(agent.pid());
    let flood_started = Instant::now();
    let flood = flooder(
        v5,
        "flood-bad",
        format!("{base}/matrix/set"),
        Bytes::from_static(b"{\"not\": \"a pattern\"}"),
        Arc::clone(&stop),
        Arc::clone(&bad),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), flood).await;
    let t = Instant::now();
    good_command(&mut good, &base, 100, Duration::from_secs(10)).await;
    let recovered = t.elapsed();
    let bad = bad.load(Ordering::Relaxed);
    let log_lines = agent.stderr_text().lines().count() - log_before;
    let rss_after = rss_kib_tree(agent.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB during the flood"
    );
    assert!(bad > 10_000, "the flood ran ({bad} publishes)");
    // Rejections are logged at most 50 a second, plus one line a second
    // counting the rest, for as long as the agent takes to work through the
    // flood: longer on a loaded machine, so the bound follows the time.
    let seconds = flood_started.elapsed().as_secs_f64().ceil();
    let most = 52.0 * seconds + 20.0;
    assert!(
        (log_lines as f64) <= most,
        "{log_lines} log lines for a 3 s flood of {bad} bad commands worked through in {seconds} s (at most {most})"
    );
    for i in 101..106 {
        good_command(&mut good, &base, i, Duration::from_secs(2)).await;
    }
    println!(
        "a flood of {bad} bad commands in 3 s: {log_lines} log lines; RSS (agent + broker) \
         {rss_before} KiB before, {rss_after} KiB after; first good command after it answered \
         in {recovered:?}"
    );

    // Still online, nothing went to the last will.
    let status = retained(v5, "flood-late", &format!("{base}/status")).await;
    assert_eq!(status.text(), "online");
    assert!(
        agent.wait_exit(Duration::from_millis(10)).is_none(),
        "the agent is still running"
    );
}
