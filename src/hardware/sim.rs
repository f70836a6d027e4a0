//! The simulated backend: every write is recorded with the time it happened,
//! so tests (and curious people) can see exactly what the hardware saw.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use super::{
    BitFrame, DigitalOutputs, Display, Edge, Hardware, HardwareError, InputEdges, Need, Pin,
    PwmChannel, Wiring,
};

/// How many writes a recording keeps; older ones are dropped (the count goes on).
pub(crate) const RECORD_LIMIT: usize = 100_000;

/// A bounded, shared log of timestamped writes. It keeps them for a
/// reader: while the backend's own handle is the only one (the agent as a
/// program, which no test reads), it keeps just the last write.
#[derive(Debug)]
pub struct Recording<T> {
    inner: Arc<Mutex<Log<T>>>,
}

#[derive(Debug)]
struct Log<T> {
    entries: VecDeque<(Instant, T)>,
    total: u64,
}

impl<T> Clone for Recording<T> {
    fn clone(&self) -> Self {
        Recording {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone> Default for Recording<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Recording<T> {
    /// An empty recording.
    pub fn new() -> Self {
        Recording {
            inner: Arc::new(Mutex::new(Log {
                entries: VecDeque::new(),
                total: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Log<T>> {
        // A panic while holding this lock cannot leave the log inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a write at the current (tokio) time.
    pub(crate) fn record(&self, value: T) {
        let keep = if Arc::strong_count(&self.inner) > 1 {
            RECORD_LIMIT
        } else {
            1
        };
        let mut log = self.lock();
        while log.entries.len() >= keep {
            log.entries.pop_front();
        }
        log.entries.push_back((Instant::now(), value));
        log.total += 1;
    }

    /// The kept writes, oldest first.
    pub fn entries(&self) -> Vec<(Instant, T)> {
        self.lock().entries.iter().cloned().collect()
    }

    /// The values of the kept writes, oldest first.
    pub fn values(&self) -> Vec<T> {
        self.lock().entries.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The most recent write.
    pub fn last(&self) -> Option<T> {
        self.lock().entries.back().map(|(_, v)| v.clone())
    }

    /// How many writes there have been in all.
    pub fn total(&self) -> u64 {
        self.lock().total
    }
}

/// Simulated digital outputs.
pub(crate) struct SimOutputs {
    len: usize,
    /// Every set written.
    pub writes: Recording<Vec<bool>>,
}

impl SimOutputs {
    /// A set of `len` outputs.
    pub(crate) fn new(len: usize) -> Self {
        SimOutputs {
            len,
            writes: Recording::new(),
        }
    }
}

impl DigitalOutputs for SimOutputs {
    fn len(&self) -> usize {
        self.len
    }
    fn write(&mut self, levels: &[bool]) -> Result<(), HardwareError> {
        if levels.len() != self.len {
            return Err(HardwareError::Invalid(format!(
                "{} levels written to {} outputs",
                levels.len(),
                self.len
            )));
        }
        self.writes.record(levels.to_vec());
        Ok(())
    }
}

/// A simulated PWM channel: a PWM pin, or a tone output (a passive
/// buzzer's, whose pitch can change) or a plain one (an active buzzer's).
pub(crate) struct SimPwm {
    /// Every duty cycle written.
    pub writes: Recording<f64>,
    /// Every frequency set (a passive buzzer's pitches); `None` for a plain
    /// output, which has no frequency to set.
    pub pitches: Option<Recording<f64>>,
}

impl Default for SimPwm {
    /// A PWM channel whose frequency can be set.
    fn default() -> Self {
        SimPwm {
            writes: Recording::new(),
            pitches: Some(Recording::new()),
        }
    }
}

impl SimPwm {
    /// A plain output driven as a 0/1 duty (an active buzzer): no frequency.
    pub(crate) fn plain() -> Self {
        SimPwm {
            writes: Recording::new(),
            pitches: None,
        }
    }
}

impl PwmChannel for SimPwm {
    fn set_duty(&mut self, duty: f64) -> Result<(), HardwareError> {
        if !(0.0..=1.0).contains(&duty) {
            return Err(HardwareError::Invalid(format!(
                "duty cycle {duty} outside 0..1"
            )));
        }
        self.writes.record(duty);
        Ok(())
    }

    fn set_frequency(&mut self, hz: f64, duty: f64) -> Result<(), HardwareError> {
        let Some(pitches) = &self.pitches else {
            return Err(HardwareError::Invalid(format!(
                "a plain output cannot change its frequency (asked for {hz} Hz)"
            )));
        };
        if !(hz.is_finite() && hz > 0.0) {
            return Err(HardwareError::Invalid(format!("a frequency of {hz} Hz")));
        }
        let pitches = pitches.clone();
        self.set_duty(duty)?;
        pitches.record(hz);
        Ok(())
    }
}

/// A simulated input whose edges are injected by [`ButtonInjector`].
pub struct SimInput {
    rx: Option<mpsc::Receiver<Edge>>,
}

/// Injects presses into a [`SimInput`].
#[derive(Clone)]
pub struct ButtonInjector {
    tx: mpsc::Sender<Edge>,
}

/// How long an injected press holds the button down.
pub(crate) const INJECTED_PRESS: Duration = Duration::from_millis(100);

impl ButtonInjector {
    /// Presses and releases the button (held for `INJECTED_PRESS`).
    pub async fn press(&self) {
        self.hold(INJECTED_PRESS).await;
    }

    /// Presses the button, holds it for `held`, releases it.
    pub async fn hold(&self, held: Duration) {
        // The receiver only goes away when the agent stops: nothing to do then.
        let _ = self
            .tx
            .send(Edge {
                active: true,
                at: Instant::now(),
            })
            .await;
        tokio::time::sleep(held).await;
        let _ = self
            .tx
            .send(Edge {
                active: false,
                at: Instant::now(),
            })
            .await;
    }
}

/// A simulated input and the injector that drives it.
pub fn input() -> (SimInput, ButtonInjector) {
    let (tx, rx) = mpsc::channel(64);
    (SimInput { rx: Some(rx) }, ButtonInjector { tx })
}

impl InputEdges for SimInput {
    fn edges(&mut self) -> Result<mpsc::Receiver<Edge>, HardwareError> {
        self.rx
            .take()
            .ok_or_else(|| HardwareError::Invalid("edges already taken".into()))
    }
}

/// A simulated 1-bit display.
pub(crate) struct SimDisplay {
    size: (u32, u32),
    /// Every frame shown.
    pub frames: Recording<BitFrame>,
    /// How each was refreshed: `true` full, `false` partial.
    pub full: Recording<bool>,
}

impl SimDisplay {
    /// A display of the given size.
    pub(crate) fn new(width: u32, height: u32) -> Self {
        SimDisplay {
            size: (width, height),
            frames: Recording::new(),
            full: Recording::new(),
        }
    }
}

impl SimDisplay {
    fn draw(&mut self, frame: &BitFrame, full: bool) -> Result<(), HardwareError> {
        if (frame.width, frame.height) != self.size
            || frame.pixels.len() != (frame.width * frame.height) as usize
        {
            return Err(HardwareError::Invalid(format!(
                "frame {}x{} on a {}x{} display",
                frame.width, frame.height, self.size.0, self.size.1
            )));
        }
        self.frames.record(frame.clone());
        self.full.record(full);
        Ok(())
    }
}

impl Display for SimDisplay {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn show(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        self.draw(frame, true)
    }
    fn is_slow(&self) -> bool {
        false
    }
    /// It stands in for a panel that has one.
    fn has_partial_refresh(&self) -> bool {
        true
    }
    fn show_partial(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        self.draw(frame, false)
    }
}

/// What a test or the sim command topics can reach of the simulated
/// hardware: each wire's recording or injector, by the wire's name.
#[derive(Clone, Default)]
pub struct SimHandles {
    /// Duty writes of each PWM channel and tone output.
    pub pwm: Vec<(String, Recording<f64>)>,
    /// Frequencies set on each PWM channel and tone output that has one
    /// (a passive buzzer's pitches, at the time each was set).
    pub pitches: Vec<(String, Recording<f64>)>,
    /// Sets written to each group of outputs.
    pub outputs: Vec<(String, Recording<Vec<bool>>)>,
    /// What presses each input.
    pub inputs: Vec<(String, ButtonInjector)>,
    /// Frames shown on the simulated display (`display.backend = "sim"`).
    pub display: Option<Recording<BitFrame>>,
}

/// The entry called `name` of a list of recordings or injectors.
fn named<'a, T>(list: &'a [(String, T)], name: &str) -> Option<&'a T> {
    list.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

impl SimHandles {
    /// Duty writes of the wire `name` (`led/left`, `buzzer`).
    pub fn pwm(&self, name: &str) -> Option<&Recording<f64>> {
        named(&self.pwm, name)
    }

    /// Frequencies set on the wire `name` (`buzzer`), if it has one.
    pub fn pitches(&self, name: &str) -> Option<&Recording<f64>> {
        named(&self.pitches, name)
    }

    /// Sets written to the wire `name` (`matrix`).
    pub fn outputs(&self, name: &str) -> Option<&Recording<Vec<bool>>> {
        named(&self.outputs, name)
    }

    /// What presses the input of the wire `name` (`button`).
    pub fn input(&self, name: &str) -> Option<&ButtonInjector> {
        named(&self.inputs, name)
    }
}

/// Builds simulated hardware for the wires, each recorded under its name.
pub fn build(wiring: &Wiring) -> Hardware {
    let mut pins = Vec::new();
    let mut handles = SimHandles::default();
    for wire in &wiring.wires {
        let name = wire.name.clone();
        let pin = match &wire.need {
            Need::Pwm { .. } | Need::Tone { .. } => {
                let pwm = match wire.need {
                    Need::Tone { hz, .. } if hz <= 0.0 => SimPwm::plain(),
                    _ => SimPwm::default(),
                };
                handles.pwm.push((name.clone(), pwm.writes.clone()));
                if let Some(p) = &pwm.pitches {
                    handles.pitches.push((name.clone(), p.clone()));
                }
                Pin::Pwm(Box::new(pwm))
            }
            Need::Outputs { lines, .. } => {
                let outputs = SimOutputs::new(lines.len());
                handles.outputs.push((name.clone(), outputs.writes.clone()));
                Pin::Outputs(Box::new(outputs))
            }
            Need::Input { .. } => {
                let (input, injector) = input();
                handles.inputs.push((name.clone(), injector));
                Pin::Input(Box::new(input))
            }
        };
        pins.push((name, pin));
    }
    Hardware::new(pins, Some(handles))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn records_writes_with_their_time() {
        let mut pwm = SimPwm::default();
        let writes = pwm.writes.clone();
        let start = Instant::now();
        pwm.set_duty(0.5).unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        pwm.set_duty(1.0).unwrap();
        let e = writes.entries();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0 - start, Duration::ZERO);
        assert_eq!(e[1].0 - start, Duration::from_millis(250));
        assert_eq!(writes.values(), vec![0.5, 1.0]);
        assert!(pwm.set_duty(1.5).is_err());
        assert_eq!(writes.total(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn records_pitches_with_their_time_and_a_plain_output_has_none() {
        let mut pwm = SimPwm::default();
        let pitches = pwm.pitches.clone().unwrap();
        let writes = pwm.writes.clone();
        let start = Instant::now();
        pwm.set_frequency(440.0, 0.5).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        pwm.set_frequency(880.0, 0.5).unwrap();
        let at: Vec<(Duration, f64)> = pitches
            .entries()
            .iter()
            .map(|(t, hz)| (*t - start, *hz))
            .collect();
        assert_eq!(
            at,
            vec![(Duration::ZERO, 440.0), (Duration::from_millis(100), 880.0)]
        );
        assert_eq!(writes.values(), vec![0.5, 0.5]);
        assert!(pwm.set_frequency(0.0, 0.5).is_err());
        assert!(pwm.set_frequency(440.0, 2.0).is_err());
        assert_eq!(pitches.total(), 2, "nothing recorded for a refused write");
        let mut plain = SimPwm::plain();
        let e = plain.set_frequency(440.0, 1.0).unwrap_err();
        assert!(e.to_string().contains("cannot change its frequency"), "{e}");
        assert!(plain.writes.values().is_empty());
        // The wiring: a tone buzzer has pitches, an active one does not.
        let wire = |hz| Wiring {
            chip: "c".into(),
            wires: vec![super::super::Wire::new(
                "buzzer",
                "buzzer.pin",
                Need::Tone { pin: 1, hz },
            )],
        };
        assert!(build(&wire(2000.0))
            .sim
            .unwrap()
            .pitches("buzzer")
            .is_some());
        assert!(build(&wire(0.0)).sim.unwrap().pitches("buzzer").is_none());
    }

    #[test]
    fn recording_is_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = Recording::new();
            let reader = r.clone();
            for i in 0..(RECORD_LIMIT + 10) {
                r.record(i);
            }
            assert_eq!(reader.total(), (RECORD_LIMIT + 10) as u64);
            assert_eq!(reader.entries().len(), RECORD_LIMIT);
            assert_eq!(reader.last(), Some(RECORD_LIMIT + 9));
        });
    }

    /// Nobody reads the recordings of the agent run as a program: 20,000
    /// matrix frames kept for nobody were 1.7 MiB after a flood.
    #[tokio::test]
    async fn a_recording_without_a_reader_keeps_only_the_last_write() {
        let r = Recording::new();
        for i in 0..1000 {
            r.record(i);
        }
        assert_eq!(r.total(), 1000);
        assert_eq!(r.entries().len(), 1);
        assert_eq!(r.last(), Some(999));
        // A reader from now on sees what comes after it.
        let reader = r.clone();
        r.record(1000);
        r.record(1001);
        assert_eq!(reader.values(), [999, 1000, 1001]);
    }

    #[test]
    fn outputs_are_written_as_one_set() {
        let mut o = SimOutputs::new(3);
        o.write(&[true, false, true]).unwrap();
        assert!(o.write(&[true]).is_err());
        assert_eq!(o.writes.values(), vec![vec![true, false, true]]);
    }

    #[tokio::test(start_paused = true)]
    async fn injected_press_gives_two_edges() {
        let (mut input, inj) = input();
        let mut rx = input.edges().unwrap();
        let start = Instant::now();
        inj.press().await;
        let down = rx.recv().await.unwrap();
        let up = rx.recv().await.unwrap();
        assert!(down.active && !up.active);
        assert_eq!(up.at - down.at, INJECTED_PRESS);
        assert_eq!(down.at, start);
    }
}
