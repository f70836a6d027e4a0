//! The 5×5 matrix's pattern engine: runs one program at a time on the
//! agent's runtime (one task, no thread per LED). At each of the program's
//! deadlines (absolute, from its start) it computes the whole 25-LED frame
//! and writes it in one call, only when it changed. A new program (or OFF)
//! cancels the running one at once: its LEDs are not left lit. Commands
//! are latest-wins: a flood never queues, the newest program is the one run.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

use crate::hardware::{DigitalOutputs, HardwareError};
use crate::parts::matrix::pattern::{frame_at, next_change, Node};
use crate::parts::matrix::Frame;

/// What the engine is asked to do.
#[derive(Debug, Clone)]
pub enum MatrixCommand {
    /// Run a program (cancelling the running one).
    Run {
        /// The program.
        program: Arc<Node>,
        /// Its name, if it is a named pattern.
        effect: Option<String>,
    },
    /// Stop and turn every LED off.
    Off,
}

impl MatrixState {
    /// Its state report: `{"state": "ON", "effect": ..., "frame": "01110/..."}`.
    pub(crate) fn payload(&self) -> String {
        serde_json::json!({
            "state": if self.on { "ON" } else { "OFF" },
            "effect": self.effect,
            "frame": self.frame.to_text(),
        })
        .to_string()
    }
}

/// What the matrix shows, for the state topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatrixState {
    /// Running a program or showing a lit frame.
    pub on: bool,
    /// The named pattern running or last run.
    pub effect: Option<String>,
    /// The frame on the LEDs when this state was taken.
    pub frame: Frame,
}

/// The newest command not yet taken by the engine.
type Pending = watch::Sender<MatrixCommand>;

/// Sends commands to the engine.
#[derive(Clone)]
pub struct MatrixHandle {
    tx: Pending,
}

impl MatrixHandle {
    /// Hands the engine a command (replacing one it has not taken yet);
    /// fails only when the engine has stopped.
    pub fn send(&self, cmd: MatrixCommand) -> Result<(), HardwareError> {
        if self.tx.is_closed() {
            return Err(HardwareError::Invalid(
                "the matrix engine is not running".into(),
            ));
        }
        self.tx.send_replace(cmd);
        Ok(())
    }
}

/// Starts the engine: turns every LED off, then takes commands. It reports
/// the state when a program starts and when it ends (not on every step), and
/// hardware failures on `errors`. It stops when every handle is gone,
/// leaving `last` on the LEDs (the safe frame; usually all off).
pub fn spawn(
    mut outputs: Box<dyn DigitalOutputs>,
    states: watch::Sender<MatrixState>,
    errors: mpsc::Sender<HardwareError>,
    last: Frame,
) -> Result<(MatrixHandle, tokio::task::JoinHandle<()>), HardwareError> {
    if outputs.len() != Frame::LEDS {
        return Err(HardwareError::Invalid(format!(
            "the matrix needs {} outputs, the backend has {}",
            Frame::LEDS,
            outputs.len()
        )));
    }
    outputs.write(&Frame::OFF.leds())?;
    // The initial value is never taken: only what is sent wakes the engine.
    let (tx, rx) = watch::channel(MatrixCommand::Off);
    let task = tokio::spawn(
        Engine {
            outputs,
            shown: Frame::OFF,
            states,
            errors,
        }
        .run(rx, last),
    );
    Ok((MatrixHandle { tx }, task))
}

struct Running {
    program: Arc<Node>,
    effect: Option<String>,
    start: Instant,
    /// Next change, in ms since `start`.
    next: Option<u64>,
}

struct Engine {
    outputs: Box<dyn DigitalOutputs>,
    shown: Frame,
    states: watch::Sender<MatrixState>,
    errors: mpsc::Sender<HardwareError>,
}

impl Engine {
    fn show(&mut self, frame: Frame) {
        if frame != self.shown {
            match self.outputs.write(&frame.leds()) {
                Ok(()) => self.shown = frame,
                Err(e) => {
                    let _ = self.errors.try_send(e);
                }
            }
        }
    }

    fn report(&self, on: bool, effect: Option<String>) {
        // The newest state wins: a burst of commands never queues reports.
        self.states.send_replace(MatrixState {
            on: on || !self.shown.is_off(),
            effect,
            frame: self.shown,
        });
    }

    async fn run(mut self, mut rx: watch::Receiver<MatrixCommand>, last: Frame) {
        let mut running: Option<Running> = None;
        loop {
            let deadline = running
                .as_ref()
                .and_then(|r| r.next.map(|n| r.start + Duration::from_millis(n)));
            tokio::select! {
                changed = rx.changed() => match changed.map(|()| rx.borrow_and_update().clone()) {
                    Err(_) => break,
                    Ok(MatrixCommand::Run { program, effect }) => {
                        let start = Instant::now();
                        self.show(frame_at(&program, 0));
                        let next = next_change(&program, 0);
                        self.report(next.is_some(), effect.clone());
                        running = Some(Running { program, effect, start, next });
                    }
                    Ok(MatrixCommand::Off) => {
                        running = None;
                        self.show(Frame::OFF);
                        self.report(false, None);
                    }
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let Some(r) = running.as_mut() else { continue };
                    // The time on the program's own clock: its deadline, or
                    // later if we woke late; the next deadline follows from
                    // the program, not from when we woke.
                    let due = r.next.unwrap_or(0);
                    let late = (Instant::now() - (r.start + Duration::from_millis(due))).as_millis() as u64;
                    let tau = due + late;
                    let frame = frame_at(&r.program, tau);
                    r.next = next_change(&r.program, tau);
                    let ended = r.next.is_none();
                    let effect = r.effect.clone();
                    self.show(frame);
                    if ended {
                        self.report(false, effect);
                    }
                }
            }
        }
        self.show(last);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::{Recording, SimOutputs};
    use crate::parts::matrix::pattern::{parse, Library, Limits};
    use serde_json::json;

    struct Rig {
        handle: MatrixHandle,
        frames: Recording<Vec<bool>>,
        states: watch::Receiver<MatrixState>,
        t0: Instant,
        task: tokio::task::JoinHandle<()>,
    }

    fn rig() -> Rig {
        let o = SimOutputs::new(25);
        let frames = o.writes.clone();
        let (stx, states) = watch::channel(MatrixState {
            on: false,
            effect: None,
            frame: Frame::OFF,
        });
        let (etx, _erx) = mpsc::channel(4);
        let t0 = Instant::now();
        let (handle, task) = spawn(Box::new(o), stx, etx, Frame::OFF).unwrap();
        Rig {
            handle,
            frames,
            states,
            t0,
            task,
        }
    }

    fn program(v: serde_json::Value) -> Arc<Node> {
        Arc::new(parse(&v, Limits::default(), &Library::builtin().unwrap()).unwrap())
    }

    fn run(r: &Rig, v: serde_json::Value) {
        r.handle
            .send(MatrixCommand::Run {
                program: program(v),
                effect: None,
            })
            .unwrap();
    }

    /// (ms since t0, lit LED indexes) of every write after the first (start-up off).
    fn seen(r: &Rig) -> Vec<(u64, Vec<usize>)> {
        r.frames
            .entries()
            .iter()
            .skip(1)
            .map(|(t, f)| {
                (
                    (*t - r.t0).as_millis() as u64,
                    f.iter()
                        .enumerate()
                        .filter(|(_, on)| **on)
                        .map(|(i, _)| i)
                        .collect(),
                )
            })
            .collect()
    }

    /// Sleeps until `ms` after the rig started.
    async fn until(r: &Rig, ms: u64) {
        tokio::time::sleep_until(r.t0 + Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn blink() {
        let r = rig();
        run(
            &r,
            json!({"blink": {"leds": [[0, 0]], "interval_ms": 100, "times": 3}}),
        );
        until(&r, 1000).await;
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![0]),
                (100, vec![]),
                (200, vec![0]),
                (300, vec![]),
                (400, vec![0]),
                (500, vec![])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cycle() {
        let r = rig();
        run(
            &r,
            json!({"cycle": {"leds": "row:0", "interval_ms": 50, "times": 1}}),
        );
        until(&r, 1000).await;
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![0]),
                (50, vec![1]),
                (100, vec![2]),
                (150, vec![3]),
                (200, vec![4]),
                (250, vec![])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sequence() {
        let r = rig();
        run(
            &r,
            json!({"sequence": [
                {"on": {"leds": [[0, 0]], "ms": 100}},
                {"on": {"leds": [[4, 4]], "ms": 200}},
                {"frame": "01010/01010/00000/10001/01110"}
            ]}),
        );
        until(&r, 1000).await;
        let smiley: Vec<usize> = vec![1, 3, 6, 8, 15, 19, 21, 22, 23];
        assert_eq!(seen(&r), vec![(0, vec![0]), (100, vec![24]), (300, smiley)]);
    }

    #[tokio::test(start_paused = true)]
    async fn all_together_in_one_write_per_step() {
        let r = rig();
        run(
            &r,
            json!({"all": [
                {"blink": {"leds": [[0, 0]], "interval_ms": 100, "times": 2}},
                {"blink": {"leds": [[0, 1]], "interval_ms": 100, "times": 1}}
            ]}),
        );
        until(&r, 1000).await;
        // Both LEDs change together at 0 and 100 ms: one write each time.
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![0, 1]),
                (100, vec![]),
                (200, vec![0]),
                (300, vec![])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn any_cancels_the_others_at_the_first_finish() {
        let r = rig();
        run(
            &r,
            json!({"any": [
                {"on": {"leds": [[0, 0]], "ms": 250}},
                {"blink": {"leds": [[4, 4]], "interval_ms": 100}}
            ]}),
        );
        until(&r, 1000).await;
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![0, 24]),
                (100, vec![0]),
                (200, vec![0, 24]),
                (250, vec![])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn repeat_and_forever() {
        let r = rig();
        run(
            &r,
            json!({"repeat": {"times": 2, "pattern": {"on": {"leds": [[2, 2]], "ms": 100}}}}),
        );
        until(&r, 150).await;
        run(
            &r,
            json!({"forever": {"sequence": [{"on": {"leds": [[0, 0]], "ms": 30}}, {"on": {"leds": [[0, 1]], "ms": 30}}]}}),
        );
        until(&r, 150 + 130).await;
        // The repeat's two rounds lit LED 12 without a gap: one write; then
        // the forever program from 150 ms.
        assert_eq!(
            seen(&r),
            vec![
                (0, vec![12]),
                (150, vec![0]),
                (180, vec![1]),
                (210, vec![0]),
                (240, vec![1]),
                (270, vec![0])
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_until_cancelled() {
        let r = rig();
        run(&r, json!({"on": {"leds": "col:4"}}));
        until(&r, 10_000).await;
        r.handle.send(MatrixCommand::Off).unwrap();
        until(&r, 10_001).await;
        assert_eq!(
            seen(&r),
            vec![(0, vec![4, 9, 14, 19, 24]), (10_000, vec![])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_program_mid_step_cancels_cleanly() {
        let mut r = rig();
        run(&r, json!({"blink": {"leds": "all", "interval_ms": 100}}));
        until(&r, 50).await; // all lit, mid-step
        run(&r, json!({"on": {"leds": [[2, 2]], "ms": 100}}));
        until(&r, 1000).await;
        assert_eq!(
            seen(&r),
            vec![(0, (0..25).collect()), (50, vec![12]), (150, vec![])]
        );
        // The state was reported at the end, with what is shown.
        let s = r.states.borrow_and_update().clone();
        assert_eq!((s.on, s.frame), (false, Frame::OFF));
        assert_eq!(r.states.has_changed().ok(), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn blinking_for_an_hour_stays_in_phase() {
        let r = rig();
        run(&r, json!({"blink": {"leds": [[0, 0]], "interval_ms": 100}}));
        until(&r, 3_600_000 + 50).await;
        let e = r.frames.entries();
        let (t, f) = e.last().unwrap();
        assert_eq!(
            (*t - r.t0).as_millis(),
            3_600_000,
            "the last toggle is on the 100 ms grid"
        );
        assert!(f[0], "on at an even step");
        // Start-up off, lit at 0, then a toggle every 100 ms up to one hour.
        assert_eq!(
            r.frames.total(),
            1 + 1 + 36_000,
            "one write per step, none missed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stops_with_every_led_off() {
        let r = rig();
        run(&r, json!({"frame": "11111/11111/11111/11111/11111"}));
        until(&r, 10).await;
        let Rig {
            handle,
            frames,
            task,
            ..
        } = r;
        drop(handle);
        task.await.unwrap();
        assert_eq!(frames.last(), Some(vec![false; 25]));
    }
}
