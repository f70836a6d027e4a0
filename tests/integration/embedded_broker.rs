//! The agent with its embedded broker, over real MQTT on 127.0.0.1.

use crate::common;
use crate::scenarios;

use std::time::{Duration, Instant};

use common::*;
use scenarios::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_online_retained_then_offline_on_sigterm() {
    let (v4, v5) = (free_port(), free_port());
    let mut agent = Agent::start(&embedded_config("solo", v4, v5));
    assert!(
        wait_port(v5, Duration::from_secs(5)),
        "embedded broker listens"
    );
    let status = "edge/solo/status";
    let mut c = Client::connect(v5, "solo-watch").await;
    c.subscribe(status).await;
    let m = c
        .expect(Duration::from_secs(5), |m| {
            m.topic == status && m.text() == "online"
        })
        .await
        .expect("online");
    // Subscribed after the agent came up: a retained message. (Or live, if
    // we were faster; a second subscriber settles it.)
    let r = retained(v5, "solo-late", status).await;
    assert!(r.retain && r.text() == "online", "{r:?} (first was {m:?})");

    let (took, exit) = agent.terminate();
    assert!(exit.success(), "exit {exit:?}: {}", agent.stderr_text());
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM to exit took {took:?}"
    );
    c.expect(Duration::from_secs(2), |m| {
        m.topic == status && m.text() == "offline"
    })
    .await
    .expect("offline reached the subscriber before the broker went away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_then_offline_through_an_embedded_broker() {
    let broker = Broker::embedded();
    scenarios::online_then_offline(&broker, "emb-life").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_through_an_embedded_broker() {
    let broker = Broker::embedded();
    scenarios::last_will(&broker, "emb-will").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_online_after_the_embedded_broker_restarts() {
    let mut broker = Broker::embedded();
    scenarios::survives_broker_restart(&mut broker, "emb-restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_error_replies_from_an_embedded_broker_agent() {
    let (v4, v5) = (free_port(), free_port());
    let _agent = Agent::start(&embedded_config("emb-bad", v4, v5));
    assert!(wait_port(v5, Duration::from_secs(5)));
    let mut c = Client::connect(v5, "emb-bad-c").await;
    c.subscribe("edge/emb-bad/status").await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    check_rejections(&mut c, "edge/emb-bad").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_retained_and_the_sim_button_publishes_events() {
    let (v4, v5) = (free_port(), free_port());
    let _agent = Agent::start(&embedded_config("emb-state", v4, v5));
    assert!(wait_port(v5, Duration::from_secs(5)));
    let base = "edge/emb-state";
    let mut c = Client::connect(v5, "emb-state-c").await;
    c.subscribe(&format!("{base}/#")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    c.publish(
        &format!("{base}/led/left/set"),
        r#"{"state":"ON","brightness":128}"#,
    )
    .await;
    let m = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/led/left") && m.json()["state"] == "ON"
        })
        .await
        .expect("led state");
    assert_eq!(
        m.json(),
        serde_json::json!({"state": "ON", "brightness": 128})
    );
    c.publish(
        &format!("{base}/matrix/set"),
        "01010/01010/00000/10001/01110",
    )
    .await;
    let m = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/matrix") && m.json()["state"] == "ON"
        })
        .await
        .expect("matrix state");
    assert_eq!(m.json()["frame"], "01010/01010/00000/10001/01110");
    c.publish(&format!("{base}/sim/button/press"), "").await;
    let m = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/button/event")
        })
        .await
        .expect("button event");
    assert_eq!(m.json()["event_type"], "press");
    assert!(!m.retain, "events are not retained");
    assert!(chrono::DateTime::parse_from_rfc3339(m.json()["at"].as_str().unwrap_or("")).is_ok());

    // A new subscriber sees the retained state.
    let m = retained(v5, "emb-state-late", &format!("{base}/led/left")).await;
    assert!(m.retain);
    assert_eq!(m.json()["brightness"], 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_credentials_are_required_and_used_by_the_agent() {
    let (v4, v5) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pa55word\n").expect("write password file");
    let cfg = format!(
        "{}username = \"edge\"\npassword_file = \"{}\"\n",
        embedded_config("emb-auth", v4, v5),
        pw.display()
    );
    let _agent = Agent::start(&cfg);
    assert!(wait_port(v5, Duration::from_secs(5)));
    let anon = Client::try_connect(v5, "anon", None, Duration::from_millis(800)).await;
    assert!(anon.is_none(), "an anonymous client was let in");
    let wrong = Client::try_connect(
        v5,
        "wrong",
        Some(("edge", "nope")),
        Duration::from_millis(800),
    )
    .await;
    assert!(wrong.is_none(), "a wrong password was let in");
    let mut c = Client::try_connect(
        v5,
        "right",
        Some(("edge", "pa55word")),
        Duration::from_secs(5),
    )
    .await
    .expect("the right password is let in");
    c.subscribe("edge/emb-auth/status").await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("the agent used the broker's credentials to connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_systemd_it_is_ready_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (v4, v5) = (free_port(), free_port());
    let socket = sock_path.display().to_string();
    let mut agent = Agent::start_with_env(
        &embedded_config("sd", v4, v5),
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut buf = [0u8; 256];
    let mut seen = Vec::new();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(5)
        && seen
            .iter()
            .filter(|s: &&String| s.contains("WATCHDOG=1"))
            .count()
            < 3
    {
        let n = sock.recv(&mut buf).expect("a notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen.iter().any(|s| s.contains("READY=1")), "{seen:?}");
    assert!(
        seen.iter().filter(|s| s.contains("WATCHDOG=1")).count() >= 3,
        "{seen:?}"
    );
    agent.terminate();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping, "STOPPING=1 at shutdown");
}

/// Off a terminal the log carries no colour codes and each line starts with
/// its time; when stderr is the journal's stream (`JOURNAL_STREAM` names its
/// device and inode, as systemd sets it) each line starts with the journal's
/// priority instead (`<6>` info, `<4>` warning), which the journal reads as
/// the line's level, and carries no time (the journal adds it). A
/// `JOURNAL_STREAM` that names another file (inherited) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_off_a_terminal_and_carry_levels_for_the_journal() {
    use std::os::unix::fs::MetadataExt;
    for case in ["piped", "journal", "inherited"] {
        let (v4, v5) = (free_port(), free_port());
        let logs = tempfile::tempdir().expect("temp dir");
        let path = logs.path().join("stderr");
        let file = std::fs::File::create(&path).expect("log file");
        let meta = file.metadata().expect("stat");
        let stream = match case {
            "journal" => Some(format!("{}:{}", meta.dev(), meta.ino())),
            "inherited" => Some(format!("{}:{}", meta.dev(), meta.ino() + 1)),
            _ => None,
        };
        let env: Vec<(&str, &str)> = stream
            .iter()
            .map(|s| ("JOURNAL_STREAM", s.as_str()))
            .collect();
        let (mut cmd, _dir) = command(&embedded_config("logs", v4, v5), &["run"], &env);
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(file))
            .spawn()
            .expect("spawn edge-agent");
        let log = || std::fs::read_to_string(&path).unwrap_or_default();
        let logged = |needle: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !log().contains(needle) {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        assert!(wait_port(v5, Duration::from_secs(10)));
        let c = Client::connect(v5, "logs-c").await;
        logged("online");
        c.publish("edge/logs/toaster/set", "ON").await;
        logged("command rejected");
        drop(c);
        signal(child.id(), "TERM");
        let _ = child.wait();
        let log = log();
        assert!(
            !log.contains('\x1b'),
            "{case}: colour codes off a terminal:\n{log}"
        );
        let line = |needle: &str| {
            log.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{case}: no {needle:?} in\n{log}"))
                .to_string()
        };
        let (online, rejected) = (line("online"), line("command rejected"));
        // The time a line was logged at (not the year read here, which a
        // new year's midnight would make another).
        let now = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| {
                (chrono::Utc::now() - t.to_utc()).abs() < chrono::TimeDelta::minutes(1)
            })
        };
        if case == "journal" {
            assert!(
                online.starts_with("<6>") && !online.split_whitespace().any(now),
                "{online}"
            );
            assert!(rejected.starts_with("<4>"), "{rejected}");
        } else {
            assert!(
                online.split_whitespace().next().is_some_and(now),
                "{case}: {online}"
            );
            assert!(rejected.contains("WARN"), "{case}: {rejected}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_topics_through_an_embedded_broker() {
    scenarios::group_topics(&Broker::embedded(), "eb-grp").await;
}
