//! Pattern engine timing on real time: 25 independent blinkers at 10 ms for
//! 60 s (`MATRIX_BENCH_SECONDS` to change), on a 2-worker tokio runtime
//! (the engine alone; the binary's one-thread runtime is measured end to
//! end in benches/e2e.rs).
//! Reports each wake-up's lateness against its deadline (median, p99, max)
//! and the phase drift accumulated by the end.
//! Run with `cargo bench --bench matrix`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_agent::hardware::{DigitalOutputs, HardwareError};
use edge_agent::parts::matrix::engine::{spawn, MatrixCommand, MatrixState};
use edge_agent::parts::matrix::pattern::{parse, Limits, NoNames};
use edge_agent::parts::matrix::Frame;

/// Records the real time of every write.
struct Timed(Arc<Mutex<Vec<Instant>>>);

impl DigitalOutputs for Timed {
    fn len(&self) -> usize {
        25
    }
    fn write(&mut self, _: &[bool]) -> Result<(), HardwareError> {
        self.0
            .lock()
            .map_err(|_| HardwareError::Invalid("poisoned".into()))?
            .push(Instant::now());
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let seconds: u64 = std::env::var("MATRIX_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let blinkers: Vec<serde_json::Value> = (0..25)
            .map(|i| serde_json::json!({"blink": {"leds": [[i / 5, i % 5]], "interval_ms": 10}}))
            .collect();
        let program = parse(&serde_json::json!({"all": blinkers}), Limits::default(), &NoNames).expect("program");
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (stx, _srx) = tokio::sync::watch::channel(MatrixState { on: false, effect: None, frame: Frame::OFF });
        let (etx, _erx) = tokio::sync::mpsc::channel(4);
        let (engine, task) = spawn(Box::new(Timed(writes.clone())), stx, etx, Frame::OFF).expect("engine");
        engine.send(MatrixCommand::Run { program: Arc::new(program), effect: None }).expect("run");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        drop(engine);
        let _ = task.await;
        let w = writes.lock().expect("writes").clone();
        // w[0] is the start-up "off"; w[1] the program's first frame (its start).
        let start = w[1];
        let steps = &w[1..w.len() - 1]; // the last write is the shutdown "off"
        let mut late: Vec<Duration> = steps
            .iter()
            .enumerate()
            .map(|(k, t)| t.saturating_duration_since(start + Duration::from_millis(10 * k as u64)))
            .collect();
        let expected_steps = seconds * 100;
        let drift = *late.last().expect("steps");
        late.sort();
        println!("25 blinkers at 10 ms for {seconds} s: {} steps written (expected {expected_steps}), one write each", steps.len());
        println!("| wake-ups | median lateness | p99 | max | phase drift at the end |");
        println!("|---|---|---|---|---|");
        println!(
            "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            late.len(),
            percentile(&late, 0.5).as_secs_f64() * 1e3,
            percentile(&late, 0.99).as_secs_f64() * 1e3,
            late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            drift.as_secs_f64() * 1e3
        );
    });
}
