//! The agent in-process, commanded over real MQTT, with assertions on what
//! the simulated hardware saw and when.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_hardware_and_shutdown_turns_everything_off() {
    let (v4, v5) = (free_port(), free_port());
    let cfg = format!(
        "{}[buzzer]\nenabled = true\npin = 13\ntone_hz = 2000\n[matrix]\nchip = \"/dev/gpiochip1\"\n",
        embedded_config("inproc", v4, v5)
    );
    let agent = InProcess::start(&cfg);
    let sim = agent.sim.clone();

    let base = "edge/inproc";
    let mut c = Client::connect(v5, "inproc-c").await;
    c.subscribe(&format!("{base}/#")).await;
    c.expect(Duration::from_secs(5), |m| m.text() == "online")
        .await
        .expect("online");
    let reply = "test/inproc/reply";
    c.subscribe(reply).await;
    let send = |topic: &'static str, payload: &'static str| {
        let c = &c;
        async move {
            c.request(&format!("{base}/{topic}"), payload, reply, topic.as_bytes())
                .await;
        }
    };
    send("led/left/set", r#"{"state":"ON","brightness":51}"#).await;
    send("led/right/set", "100").await;
    send("led/left/set", "OFF").await;
    send("matrix/set", "10001/01010/00100/01010/10001").await;
    send("led/left/set", "bogus").await; // rejected: no write
    send("buzzer/set", "ON").await;
    for _ in 0..6 {
        c.expect(Duration::from_secs(3), |m| m.topic == reply)
            .await
            .expect("a reply");
    }

    // PWM writes follow the acknowledgement within the write interval (10 ms);
    // values replaced within it are never written (the newest wins).
    let (left_rec, right_rec) = (
        sim.pwm("led/left").expect("left"),
        sim.pwm("led/right").expect("right"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while (left_rec.last(), right_rec.last()) != (Some(0.0), Some(1.0)) {
        assert!(
            std::time::Instant::now() < deadline,
            "final duties not written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left = left_rec.values();
    assert!(
        left.iter().all(|d| [0.0, 0.2].contains(d)),
        "left LED duty writes {left:?}"
    );
    assert_eq!(right_rec.values(), vec![0.0, 1.0], "right LED duty writes");
    let frames = sim.outputs("matrix").expect("matrix").values();
    assert_eq!(
        frames.len(),
        2,
        "one write at start, one per frame: {frames:?}"
    );
    let x: Vec<bool> = "1000101010001000101010001"
        .chars()
        .map(|ch| ch == '1')
        .collect();
    assert_eq!(frames[1], x);
    // Writes carry increasing timestamps.
    let times: Vec<_> = sim
        .pwm("led/left")
        .unwrap()
        .entries()
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));

    let writes_before = sim.pwm("led/right").unwrap().total();
    agent.stop().await;
    assert_eq!(
        sim.pwm("led/right").unwrap().last(),
        Some(0.0),
        "right LED off at shutdown"
    );
    assert_eq!(sim.pwm("led/right").unwrap().total(), writes_before + 1);
    assert_eq!(
        sim.outputs("matrix").unwrap().last(),
        Some(vec![false; 25]),
        "matrix off"
    );
    let buzzer = sim.pwm("buzzer").expect("buzzer").values();
    assert_eq!(
        buzzer,
        vec![0.0, 0.5, 0.0],
        "a 50 % tone while on, silent at shutdown"
    );
    assert_eq!(
        sim.pitches("buzzer")
            .expect("a tone buzzer's pitches")
            .values(),
        vec![2000.0],
        "at buzzer.tone_hz"
    );
    c.expect(Duration::from_secs(2), |m| {
        m.topic == format!("{base}/status") && m.text() == "offline"
    })
    .await
    .expect("offline");
}
