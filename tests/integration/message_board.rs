//! The e-paper message board over real MQTT: messages, the clock, the button,
//! the PNG and EPD-driver backends, slow refreshes, `edge-agent send`.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;
use common::*;
use edge_agent::hardware::BitFrame;
use edge_agent::parts::message_board::render::{render, Screen};

/// An agent with the embedded broker, the board on `backend` and UTC time.
fn board_config(device: &str, v4: u16, v5: u16, display: &str) -> String {
    format!(
        "{}[display]\ntime_zone = \"UTC\"\n{display}\n",
        embedded_config(device, v4, v5)
    )
}

fn decode_png(path: &Path) -> Option<BitFrame> {
    let file = std::fs::File::open(path).ok()?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let mut pixels = Vec::with_capacity((info.width * info.height) as usize);
    for y in 0..info.height as usize {
        for x in 0..info.width as usize {
            pixels.push(buf[y * info.line_size + x / 8] & (0x80 >> (x % 8)) == 0);
        }
    }
    Some(BitFrame {
        width: info.width,
        height: info.height,
        pixels,
    })
}

/// Polls until `f` returns Some, for at most `within`.
fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ink(f: &BitFrame, y0: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (0..f.width).map(move |x| (x, y)))
        .filter(|(x, y)| f.pixels[(y * f.width + x) as usize])
        .count()
}

fn shown_at(state: &serde_json::Value) -> DateTime<edge_agent::clock::Zone> {
    DateTime::parse_from_rfc3339(state["shown_at"].as_str().expect("shown_at"))
        .expect("RFC 3339")
        .with_timezone(&edge_agent::clock::Zone::utc())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stops_the_clock_shows_on_the_png_and_a_press_resumes_the_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let png_path = dir.path().join("board.png");
    let (v4, v5) = (free_port(), free_port());
    let cfg = board_config(
        "board",
        v4,
        v5,
        &format!("png_path = \"{}\"", png_path.display()),
    );
    let _agent = Agent::start(&cfg);
    assert!(wait_port(v5, Duration::from_secs(5)));
    let base = "edge/board";
    let mut c = Client::connect(v5, "board-c").await;
    c.subscribe(&format!("{base}/#")).await;
    let first = c
        .expect(Duration::from_secs(5), |m| {
            m.topic == format!("{base}/display")
        })
        .await
        .expect("display state");
    assert_eq!(first.json()["mode"], "clock");
    assert_eq!(first.json()["clock"], "ON");
    let clock_png =
        wait_for(Duration::from_secs(5), || decode_png(&png_path)).expect("the clock PNG");
    assert!(ink(&clock_png, 0, 110) > 2000, "big digits on the clock");

    // A message: acknowledged, clock stopped, state says message.
    c.subscribe("test/board/reply").await;
    let body = r#"{"text": "Dinner at 7", "from": "john"}"#;
    c.request(
        &format!("{base}/display/message/set"),
        body,
        "test/board/reply",
        b"m1",
    )
    .await;
    // The agent publishes the new state, then acknowledges. (A whole-minute
    // clock tick since the first state may have published one before it.)
    let state = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/display") && m.json()["mode"] != "clock"
        })
        .await
        .expect("display state")
        .json();
    let ack = c
        .expect(Duration::from_secs(3), |m| m.topic == "test/board/reply")
        .await
        .expect("ack");
    assert_eq!(ack.json()["ok"], true);
    assert_eq!(state["mode"], "message");
    assert_eq!(state["text"], "Dinner at 7");
    assert_eq!(state["from"], "john");
    assert_eq!(state["clock"], "OFF");

    // The PNG shows exactly that message, drawn with its arrival time.
    let expected = render(
        &Screen::Message {
            text: "Dinner at 7".into(),
            from: Some("john".into()),
            at: shown_at(&state),
        },
        264,
        176,
    );
    let shown = wait_for(Duration::from_secs(5), || {
        decode_png(&png_path).filter(|f| *f == expected)
    });
    assert!(
        shown.is_some(),
        "the PNG shows the message, pixel for pixel"
    );
    assert!(ink(&expected, 0, 140) > 300, "text area has the text");

    // A press restarts the clock.
    c.publish(&format!("{base}/sim/button/press"), "").await;
    let ev = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/button/event")
        })
        .await
        .expect("button event");
    assert_eq!(ev.json()["event_type"], "press");
    let state = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/display")
        })
        .await
        .expect("display state after the press")
        .json();
    assert_eq!(
        (state["mode"].as_str(), state["clock"].as_str()),
        (Some("clock"), Some("ON"))
    );
    let back = wait_for(Duration::from_secs(5), || {
        decode_png(&png_path).filter(|f| *f != expected)
    })
    .expect("the clock is drawn again");
    assert!(ink(&back, 0, 110) > 2000);

    // A press while the clock runs changes nothing.
    c.publish(&format!("{base}/sim/button/press"), "").await;
    c.expect(Duration::from_secs(3), |m| {
        m.topic == format!("{base}/button/event")
    })
    .await
    .expect("second button event");
    // (A whole-minute tick republishes the same state: not a change.)
    let later = c.drain(Duration::from_millis(500)).await;
    assert!(
        !later
            .iter()
            .any(|m| m.topic == format!("{base}/display") && m.json() != state),
        "no display change: {later:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_and_the_board_keeps_its_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let png_path = dir.path().join("board.png");
    let (v4, v5) = (free_port(), free_port());
    let cfg = board_config(
        "badmsg",
        v4,
        v5,
        &format!("png_path = \"{}\"", png_path.display()),
    );
    let _agent = Agent::start(&cfg);
    assert!(wait_port(v5, Duration::from_secs(5)));
    let base = "edge/badmsg";
    let reply = "test/badmsg/reply";
    let mut c = Client::connect(v5, "badmsg-c").await;
    c.subscribe(&format!("{base}/#")).await;
    c.subscribe(reply).await;
    // The agent is up (and subscribed) once it has shown the clock.
    c.expect(Duration::from_secs(10), |m| {
        m.topic == format!("{base}/display")
    })
    .await
    .expect("the board's first state");
    c.request(
        &format!("{base}/display/message/set"),
        "keep me",
        reply,
        b"ok",
    )
    .await;
    let state = c
        .expect(Duration::from_secs(3), |m| {
            m.topic == format!("{base}/display") && m.json()["mode"] == "message"
        })
        .await
        .expect("message shown")
        .json();
    let expected = render(
        &Screen::Message {
            text: "keep me".into(),
            from: None,
            at: shown_at(&state),
        },
        264,
        176,
    );
    wait_for(Duration::from_secs(5), || {
        decode_png(&png_path).filter(|f| *f == expected)
    })
    .expect("PNG");
    let png_before = std::fs::read(&png_path).expect("png bytes");
    c.drain(Duration::from_millis(200)).await;

    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("100 kB", vec![b'a'; 100_000]),
        ("invalid UTF-8", vec![b'h', b'i', 0xc3, 0x28]),
        ("malformed JSON", br#"{"text": "hi", "from": }"#.to_vec()),
        ("JSON without text", br#"{"from": "john"}"#.to_vec()),
        (
            "unknown field",
            br#"{"text": "hi", "font": "comic"}"#.to_vec(),
        ),
    ];
    for (what, payload) in bad {
        c.request(
            &format!("{base}/display/message/set"),
            payload,
            reply,
            what.as_bytes(),
        )
        .await;
        let mut got_reply = None;
        let mut got_error = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while got_reply.is_none() || !got_error {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(m) = c.expect(left, |_| true).await else {
                break;
            };
            assert_ne!(
                m.topic,
                format!("{base}/display"),
                "{what}: the display state changed"
            );
            if m.topic == reply && m.correlation.as_deref() == Some(what.as_bytes()) {
                got_reply = Some(m.json());
            }
            got_error |= m.topic == format!("{base}/error");
        }
        let r = got_reply.unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(r["ok"], false, "{what}: {r}");
        assert!(got_error, "{what}: nothing on {base}/error");
        eprintln!("{what}: {}", r["error"]);
    }
    c.drain(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read(&png_path).expect("png"),
        png_before,
        "the PNG is unchanged"
    );
    // The retained state is still the message.
    let m = retained(v5, "badmsg-late", &format!("{base}/display")).await;
    assert_eq!(m.json()["text"], "keep me");
    // No text (Home Assistant's text entity cleared): the clock again.
    c.publish(&format!("{base}/display/message/set"), "  \n\t ")
        .await;
    c.expect(Duration::from_secs(3), |m| {
        m.topic == format!("{base}/display") && m.json()["mode"] == "clock"
    })
    .await
    .expect("the clock after an empty message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_messages_during_one_slow_refresh_give_two_refreshes() {
    // A minute tick redraws the clock (another refresh, another state): the
    // agent's wall clock starts 5 s past a whole minute, so none falls in
    // the test.
    let (v4, v5) = (free_port(), free_port());
    let cfg = board_config("slow", v4, v5, "backend = \"sim\"\nrefresh_ms = 1500");
    let (agent, _) = InProcess::start_at(&cfg, "2026-11-26T12:00:05Z");
    let frames = agent.sim.display.clone().expect("sim display");
    let base = "edge/slow";
    let mut c = Client::connect(v5, "slow-c").await;
    c.subscribe(&format!("{base}/display")).await;
    c.expect(Duration::from_secs(5), |_| true)
        .await
        .expect("display state");
    // The first refresh (the clock) has finished.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(frames.total(), 1);
    let mut last_state = None;
    for i in 1..=10 {
        c.publish(
            &format!("{base}/display/message/set"),
            format!("message {i}"),
        )
        .await;
        let text = format!("message {i}");
        last_state = c
            .expect(Duration::from_secs(2), |m| {
                m.json()["text"] == text.as_str()
            })
            .await;
    }
    let last_state = last_state.expect("display state of the tenth").json();
    assert_eq!(last_state["text"], "message 10");
    // Long enough for three more refreshes, if there were any.
    tokio::time::sleep(Duration::from_millis(4600)).await;
    let seen = frames.values();
    assert_eq!(
        seen.len(),
        3,
        "the clock, then exactly two refreshes for ten messages"
    );
    let newest = render(
        &Screen::Message {
            text: "message 10".into(),
            from: None,
            at: shown_at(&last_state),
        },
        264,
        176,
    );
    assert_eq!(
        seen[2], newest,
        "the second refresh shows the newest message"
    );
    agent.stop().await;
}

fn epd_folder(dir: &Path, panel: &str, bytes: usize) {
    std::fs::write(dir.join("version"), "4\n").expect("version");
    std::fs::write(dir.join("panel"), format!("{panel}\n")).expect("panel");
    std::fs::write(dir.join("display"), vec![0u8; bytes]).expect("display");
    std::fs::write(dir.join("command"), b"").expect("command");
}

/// Unpacks the driver's order: LSB = leftmost pixel, 1 = black.
fn unpack_epd(bytes: &[u8], w: u32, h: u32) -> BitFrame {
    let row = (w / 8) as usize;
    let pixels = (0..h as usize)
        .flat_map(|y| (0..w as usize).map(move |x| (x, y)))
        .map(|(x, y)| bytes[y * row + x / 8] & (1 << (x % 8)) != 0)
        .collect();
    BitFrame {
        width: w,
        height: h,
        pixels,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epd_driver_files_get_the_frame_in_the_drivers_order() {
    // The message is the second update: partial, unless every one is full.
    for (panel, w, h, every, command) in [
        ("EPD 2.7 264x176 COG 2 FILM 231", 264u32, 176u32, 10, b"P"),
        ("EPD 1.44 128x96 COG 2 FILM 231", 128, 96, 1, b"U"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        epd_folder(dir.path(), panel, (w * h / 8) as usize);
        let (v4, v5) = (free_port(), free_port());
        let device = format!("epd{w}");
        let cfg = board_config(
            &device,
            v4,
            v5,
            &format!(
                "backend = \"epd\"\nepd_path = \"{}\"\nfull_refresh_every = {every}",
                dir.path().display()
            ),
        );
        let _agent = Agent::start(&cfg);
        assert!(wait_port(v5, Duration::from_secs(5)), "{panel}: agent up");
        let base = format!("edge/{device}");
        let mut c = Client::connect(v5, &format!("{device}-c")).await;
        c.subscribe(&format!("{base}/display")).await;
        c.expect(Duration::from_secs(3), |_| true)
            .await
            .expect("display state");
        c.publish(&format!("{base}/display/message/set"), "Hello, panel")
            .await;
        let state = c
            .expect(Duration::from_secs(3), |m| m.json()["mode"] == "message")
            .await
            .expect("message state")
            .json();
        let expected = render(
            &Screen::Message {
                text: "Hello, panel".into(),
                from: None,
                at: shown_at(&state),
            },
            w,
            h,
        );
        let got = wait_for(Duration::from_secs(5), || {
            let bytes = std::fs::read(dir.path().join("display")).ok()?;
            (bytes.len() == (w * h / 8) as usize && unpack_epd(&bytes, w, h) == expected)
                .then_some(bytes)
        });
        assert!(
            got.is_some(),
            "{panel}: display holds {} bytes of the message in the driver's bit order",
            w * h / 8
        );
        assert_eq!(
            std::fs::read(dir.path().join("command")).expect("command"),
            command,
            "{panel}: update command"
        );
    }
}

#[test]
fn a_missing_epd_driver_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = format!(
        "{}[display]\nbackend = \"epd\"\nepd_path = \"{}\"\n",
        embedded_config("noepd", free_port(), free_port()),
        dir.path().join("epd").display()
    );
    let (mut cmd, _d) = command(&cfg, &["run"], &[]);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("edge-agent:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("panel"), "{stderr}");
}

fn send(cfg: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    let (mut cmd, _d) = command(cfg, &all, &[]);
    let out = cmd.output().expect("run send");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_agent_send_waits_for_the_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (v4, v5) = (free_port(), free_port());
    let cfg = board_config(
        "sendto",
        v4,
        v5,
        &format!("png_path = \"{}\"", dir.path().join("b.png").display()),
    );
    let _agent = Agent::start(&cfg);
    assert!(wait_port(v5, Duration::from_secs(5)));
    let mut c = Client::connect(v5, "sendto-c").await;
    c.subscribe("edge/sendto/display").await;
    c.expect(Duration::from_secs(3), |_| true)
        .await
        .expect("online with a display");

    let (code, out, err) = send(&cfg, &["Back at 8", "--from", "ann"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "shown on edge/sendto\n");
    let m = c
        .expect(Duration::from_secs(3), |m| m.json()["mode"] == "message")
        .await
        .expect("state");
    assert_eq!(
        (m.json()["text"].as_str(), m.json()["from"].as_str()),
        (Some("Back at 8"), Some("ann"))
    );

    // The agent says no: one line, non-zero.
    let (code, out, err) = send(&cfg, &["   "]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("refused") && err.contains("empty"), "{err}");

    // Nobody listens on that device.
    let (code, _, err) = send(&cfg, &["hi", "--device", "nobody", "--timeout", "0.5"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no answer"), "{err}");
}

#[test]
fn a_timeout_out_of_range_says_what_is_accepted() {
    let cfg = external_config("nobroker", free_port());
    for t in ["0", "3601", "NaN"] {
        let (code, _, err) = send(&cfg, &["hi", "--timeout", t]);
        assert_eq!(code, Some(1), "{t}");
        assert!(
            err.contains("more than 0 and at most 3600"),
            "--timeout {t}: {err}"
        );
    }
}

#[test]
fn edge_agent_send_to_an_unreachable_broker_fails_with_one_line() {
    let port = free_port(); // nothing listens there
    let cfg = external_config("nobroker", port);
    let (code, out, err) = send(&cfg, &["hi"]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot reach the broker") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_of_the_wall_clock_corrects_started_at_and_the_next_tick() {
    // NTP at boot on a Pi without a clock chip: the agent started at a
    // wrong time, then the clock is set 1 h 37 min forward.
    let (v4, v5) = (free_port(), free_port());
    let cfg = board_config("step", v4, v5, "backend = \"sim\"\nrefresh_ms = 0");
    let (_agent, wall) = InProcess::start_at(&cfg, "2026-11-26T12:00:30Z");
    let base = "edge/step";
    let info = retained(v5, "step-i1", &format!("{base}/info")).await;
    let first = info.json()["started_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(first.starts_with("2026-11-26T12:00:3"), "{first}");
    let mut c = Client::connect(v5, "step-c").await;
    c.subscribe(&format!("{base}/info")).await;
    c.subscribe(&format!("{base}/clock/tick")).await;
    wall.step(chrono::TimeDelta::minutes(97));
    let corrected = c
        .expect(Duration::from_secs(5), |m| {
            m.topic.ends_with("/info") && !m.retain
        })
        .await
        .expect("info published again after the step");
    let started = corrected.json()["started_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(started.starts_with("2026-11-26T13:37:3"), "{started}");
    // The next tick is the new time's next whole minute (13:38), within 30 s.
    let tick = c
        .expect(Duration::from_secs(35), |m| {
            m.topic.ends_with("/clock/tick")
        })
        .await
        .expect("a tick");
    assert_eq!(
        tick.json()["time"],
        "2026-11-26T13:38:00+00:00",
        "{}",
        tick.text()
    );
}

/// `edge-agent send` gives its message an expiry equal to its timeout: a
/// board that was away does not show it minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_expires_with_the_senders_timeout() {
    let Some(m) = Mosquitto::start() else { return };
    let cfg = external_config("expiring", m.port);
    let mut watch = Client::connect(m.port, "send-expiry-w").await;
    watch.subscribe("edge/expiring/display/message/set").await;
    // No agent answers: send waits its 3 s and gives up.
    let sending = tokio::task::spawn_blocking(move || send(&cfg, &["--timeout", "3", "hello"]));
    let sent = watch
        .expect(Duration::from_secs(10), |_| true)
        .await
        .expect("the request");
    assert!(
        matches!(sent.expiry, Some(s) if (2..=3).contains(&s)),
        "{:?}",
        sent.expiry
    );
    let (code, _, _) = sending.await.expect("join");
    assert_ne!(code, Some(0), "nobody answered");
}

/// With MQTT 5 a message is answered twice: at once, and when the panel has
/// shown it, or when a newer one replaced it before it was drawn; `send
/// --wait-shown` waits for the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_answered_again_when_shown_or_superseded() {
    let (v4, v5) = (free_port(), free_port());
    // A panel whose refresh takes 1.5 s.
    let cfg = board_config("twice", v4, v5, "backend = \"sim\"\nrefresh_ms = 1500");
    let _agent = Agent::start(&cfg);
    let mut c = Client::connect(v5, "twice-c").await;
    c.subscribe("reply/twice").await;
    c.subscribe("edge/twice/status").await;
    c.subscribe("edge/twice/display").await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    // A whole minute of the wall clock would start a refresh of its own and
    // supersede 1: the clock is stopped first, so that none falls in the test.
    c.publish("edge/twice/display/clock/set", "OFF").await;
    c.expect(Duration::from_secs(5), |m| {
        m.topic == "edge/twice/display" && m.json()["clock"] == "OFF"
    })
    .await
    .expect("the clock stopped");
    // The clock's refreshes are over: the one at the start, and one on a
    // minute that came before the stop, which waits for it.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let topic = "edge/twice/display/message/set";
    for n in ["1", "2", "3"] {
        c.request(topic, format!("message {n}"), "reply/twice", n.as_bytes())
            .await;
    }
    let t0 = Instant::now();
    let mut answers: Vec<(String, serde_json::Value, Duration)> = Vec::new();
    while answers.len() < 6 {
        let Some(m) = c
            .expect(Duration::from_secs(6), |m| m.topic == "reply/twice")
            .await
        else {
            break;
        };
        let n = String::from_utf8_lossy(m.correlation.as_deref().unwrap_or_default()).into_owned();
        answers.push((n, m.json(), t0.elapsed()));
    }
    let of = |n: &str| -> Vec<&serde_json::Value> {
        answers
            .iter()
            .filter(|(k, _, _)| k == n)
            .map(|(_, v, _)| v)
            .collect()
    };
    assert_eq!(answers.len(), 6, "{answers:?}");
    for n in ["1", "2", "3"] {
        assert_eq!(
            of(n)[0],
            &serde_json::json!({"ok": true}),
            "{n} taken at once"
        );
    }
    // 1 was drawn at once, 2 never (3 replaced it while 1 was refreshing), 3 after 1.
    assert_eq!(of("1")[1]["ok"], true, "{answers:?}");
    assert!(of("1")[1]["shown_at"].is_string());
    assert_eq!(of("2")[1]["ok"], false);
    assert!(of("2")[1]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("superseded")));
    assert_eq!(of("3")[1]["ok"], true);
    let when = |n: &str, k: usize| {
        answers
            .iter()
            .filter(|(m, _, _)| m == n)
            .nth(k)
            .map(|(_, _, at)| *at)
            .unwrap_or_default()
    };
    assert!(
        when("3", 1) >= Duration::from_millis(2500),
        "after two refreshes: {answers:?}"
    );

    // The same from the command line.
    let (code, out, err) = send(&cfg, &["--wait-shown", "--timeout", "10", "Back at 8"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("shown on edge/twice at 20"), "{out}");
}

/// `ttl_s`: the message gives way to the clock when its time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_a_ttl_brings_the_clock_back() {
    let (v4, v5) = (free_port(), free_port());
    let cfg = board_config("ttl", v4, v5, "backend = \"sim\"\nrefresh_ms = 0");
    let _agent = Agent::start(&cfg);
    let mut c = Client::connect(v5, "ttl-c").await;
    c.subscribe("edge/ttl/display").await;
    c.expect(Duration::from_secs(5), |m| m.json()["mode"] == "clock")
        .await
        .expect("the clock");
    c.publish(
        "edge/ttl/display/message/set",
        r#"{"text": "Brb", "ttl_s": 1}"#,
    )
    .await;
    let m = c
        .expect(Duration::from_secs(3), |m| m.json()["mode"] == "message")
        .await
        .expect("the message")
        .json();
    let (shown, expires) = (
        DateTime::parse_from_rfc3339(m["shown_at"].as_str().unwrap_or_default()),
        DateTime::parse_from_rfc3339(m["expires_at"].as_str().unwrap_or_default()),
    );
    assert_eq!(
        expires.expect("expires_at") - shown.expect("shown_at"),
        chrono::TimeDelta::seconds(1),
        "{m}"
    );
    let back = c
        .expect(Duration::from_secs(3), |m| m.json()["mode"] == "clock")
        .await
        .expect("the clock again");
    assert!(back.json()["expires_at"].is_null());
    // Out of range: said so.
    c.subscribe("reply/ttl").await;
    c.request(
        "edge/ttl/display/message/set",
        r#"{"text": "x", "ttl_s": 0}"#,
        "reply/ttl",
        b"t",
    )
    .await;
    let r = c
        .expect(Duration::from_secs(3), |m| m.topic == "reply/ttl")
        .await
        .expect("a reply");
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("1 to 604800")),
        "{}",
        r.text()
    );
}
