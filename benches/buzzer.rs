//! Buzzer tune timing on real time: a 3-minute RTTTL tune (eighth notes at
//! 120 beats a minute, a new pitch each; `BUZZER_BENCH_SECONDS` to change
//! the length), driven as the agent's loop drives a part's timer (sleep
//! until its next change, then advance), on the binary's one-thread runtime
//! (`edge_agent::cli::runtime`). Each note is two writes: its pitch at its
//! start, silence at nine tenths of it.
//! Reports each write's lateness against its deadline (the tune's start +
//! the step's offset; median, p99, max), and the end's lateness.
//! Run with `cargo bench --bench buzzer`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use edge_agent::hardware::{HardwareError, PwmChannel};
use edge_agent::parts::buzzer::rtttl::{parse, Limits};
use edge_agent::parts::buzzer::Buzzer;

/// Records the real time of every write.
struct Timed(Arc<Mutex<Vec<Instant>>>);

impl Timed {
    fn note(&self) -> Result<(), HardwareError> {
        self.0
            .lock()
            .map_err(|_| HardwareError::Invalid("poisoned".into()))?
            .push(Instant::now());
        Ok(())
    }
}

impl PwmChannel for Timed {
    fn set_duty(&mut self, _: f64) -> Result<(), HardwareError> {
        self.note()
    }
    fn set_frequency(&mut self, _: f64, _: f64) -> Result<(), HardwareError> {
        self.note()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let seconds: u64 = std::env::var("BUZZER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    // Four eighth notes a second at 120 beats a minute; the most a tune has
    // is 1000 notes, so a longer run repeats the tune back to back.
    let scale = ["c", "d", "e", "f", "g", "a", "b", "c6"];
    let notes: Vec<&str> = scale
        .iter()
        .cycle()
        .take((seconds * 4).min(1000) as usize)
        .copied()
        .collect();
    let text = format!("bench:d=8,o=5,b=120:{}", notes.join(","));
    let limits = Limits {
        max_tune_s: 3600,
        ..Limits::default()
    };
    let once = parse(&text, limits).expect("the bench's tune").tune();
    let tune = Arc::new(once.repeated_for(Duration::from_secs(seconds)));
    let runtime = edge_agent::cli::runtime().expect("runtime");
    runtime.block_on(async {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let mut b = Buzzer::new(Box::new(Timed(writes.clone())), 2000.0).expect("buzzer");
        let t0 = Instant::now();
        b.play(Arc::clone(&tune), None, t0).expect("play");
        let mut ended = None;
        while let Some(due) = b.next_change() {
            tokio::time::sleep_until(due).await;
            if b.advance(Instant::now()).expect("advance") {
                ended = Some(Instant::now());
            }
        }
        let w = writes.lock().expect("writes").clone();
        // w[0] is the start-up silence; w[1] the first note, at t0.
        let steps = &w[1..];
        assert_eq!(
            steps.len(),
            tune.steps().len(),
            "one write per step, none missed"
        );
        let mut late: Vec<Duration> = steps
            .iter()
            .zip(tune.steps())
            .skip(1)
            .map(|(t, s)| t.saturating_duration_since(t0 + Duration::from_micros(s.at_us)))
            .collect();
        let last = *late.last().expect("steps");
        let end = ended
            .expect("the tune ends")
            .saturating_duration_since(t0 + tune.length());
        late.sort();
        println!(
            "a {seconds} s tune, {} notes at 120 beats a minute: {} writes on {} deadlines",
            tune.steps().len() / 2,
            steps.len(),
            tune.steps().len()
        );
        println!("| writes | median lateness | p99 | max | last write | the end ({seconds} s) |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            late.len(),
            ms(percentile(&late, 0.5)),
            ms(percentile(&late, 0.99)),
            ms(late.last().copied().unwrap_or_default()),
            ms(last),
            ms(end)
        );
    });
}
