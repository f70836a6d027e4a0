//! An LED's fade (`transition`) on real time, end to end: the command over
//! the embedded broker, the agent's timers, the PWM writer, the simulated
//! PWM recording each write. The fade starts when the command is published
//! (its delivery counts as lateness). A step computes its duty from the
//! time it runs, so the duty written tells when that was; the step due
//! then is the last whole 20 ms before it. Reports each write's lateness
//! against that step's deadline (start + k × 20 ms), median, p99 and max,
//! and the lateness of the end (the last write, due at start + the
//! transition). 60 s by default (`FADE_BENCH_SECONDS` to change).
//! Run with `cargo bench --bench fade`.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use tokio::time::Instant;

/// The fade's step (the LEDs' FADE_STEP).
const STEP: Duration = Duration::from_millis(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn main() {
    use edge_agent::config::Config;
    use edge_agent::hardware::Hardware;
    let seconds: u64 = std::env::var("FADE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (v4, v5) = (free_port(), free_port());
    let cfg = format!(
        "[device]\nid = \"fade\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n[display]\nenabled = false\n[diag]\nenabled = false\n"
    );
    let settings = Config::from_toml(&cfg).expect("config");
    edge_agent::mqtt::broker::start(settings.broker.as_ref().expect("broker")).expect("broker");
    let hardware = Hardware::from_settings(&settings).expect("hw");
    let left = hardware
        .sim
        .as_ref()
        .and_then(|s| s.pwm("led/left").cloned())
        .expect("left LED");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The agent on its own thread and the binary's runtime, as `edge-agent run`.
    let agent = std::thread::spawn(move || {
        let rt = edge_agent::cli::runtime().expect("runtime");
        let _ = rt.block_on(edge_agent::agent::run(settings, hardware, async move {
            let _ = stopped.await;
        }));
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut o = MqttOptions::new("fade-pub", "127.0.0.1", v5);
        o.set_keep_alive(Duration::from_secs(30));
        let (c, mut el) = AsyncClient::new(o, 10);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = left.entries().len();
        let start = Instant::now();
        let payload = format!(r#"{{"state": "ON", "brightness": 255, "transition": {seconds}}}"#);
        c.publish("edge/fade/led/left/set", QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(500)).await;
        let writes: Vec<(Instant, f64)> = left.entries().into_iter().skip(before).collect();
        assert!(!writes.is_empty(), "no PWM write");
        let total = Duration::from_secs(seconds);
        let steps = total.as_nanos() / STEP.as_nanos();
        // The step due when each write's duty was computed.
        let late: Vec<Duration> = writes
            .iter()
            .map(|(at, duty)| {
                let ran = total.mul_f64(*duty);
                let k = u32::try_from(ran.as_nanos() / STEP.as_nanos()).unwrap_or(u32::MAX);
                at.saturating_duration_since(start + STEP * k)
            })
            .collect();
        let mut sorted = late.clone();
        sorted.sort();
        let (end_at, end_duty) = *writes.last().expect("a last write");
        println!(
            "fade of {seconds} s: {} writes (steps due: {}), lateness median {:.3} ms, p99 {:.3} ms, max {:.3} ms; the end (duty {end_duty:.3}) {:.3} ms after start + {seconds} s",
            writes.len(),
            steps + 1,
            percentile(&sorted, 0.5).as_secs_f64() * 1e3,
            percentile(&sorted, 0.99).as_secs_f64() * 1e3,
            sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            end_at.saturating_duration_since(start + total).as_secs_f64() * 1e3,
        );
    });
    let _ = stop.send(());
    let _ = agent.join();
}
