//! The two dimmable LEDs: Home Assistant's light rules for explicit commands,
//! the tilt rule from the original two-LED project, and the PWM writer that
//! keeps a flood of tilt values from ever queueing up.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::command::{LedSet, Motion, Tilt};
use crate::hardware::{HardwareError, PwmChannel};

/// What an LED shows, in Home Assistant's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedState {
    /// Lit or not.
    pub on: bool,
    /// Brightness 0..=255 (kept while off, so ON brings it back).
    pub brightness: u8,
}

impl LedState {
    /// Its state report, as a Home Assistant JSON light reads it.
    pub(crate) fn payload(&self) -> String {
        serde_json::json!({
            "state": if self.on { "ON" } else { "OFF" },
            "brightness": self.brightness,
        })
        .to_string()
    }
}

impl Default for LedState {
    fn default() -> Self {
        LedState {
            on: false,
            brightness: 255,
        }
    }
}

impl LedState {
    /// The PWM duty cycle this state needs.
    pub fn duty(&self) -> f64 {
        if self.on {
            f64::from(self.brightness) / 255.0
        } else {
            0.0
        }
    }

    /// The state an explicit command leads to.
    pub fn apply(self, set: LedSet) -> LedState {
        let mut next = self;
        if let Some(b) = set.brightness {
            next.brightness = b;
            next.on = b > 0;
        }
        match set.state {
            Some(true) => {
                next.on = true;
                if next.brightness == 0 {
                    next.brightness = 255;
                }
            }
            Some(false) => {
                next.on = false;
                if set.brightness.is_some() {
                    next.brightness = self.brightness;
                }
            }
            None => {}
        }
        next
    }

    /// This LED at `duty` (0..=1) as a light state; off keeps the brightness.
    pub fn at_duty(self, duty: f64) -> LedState {
        let b = (duty * 255.0).round().clamp(0.0, 255.0) as u8;
        if b == 0 {
            LedState { on: false, ..self }
        } else {
            LedState {
                on: true,
                brightness: b,
            }
        }
    }
}

/// The tilt rule: `y > 0` lights the right LED at `y` percent and turns the
/// left one off; `y < 0` lights the left one at `-y` percent. Returns the
/// duty cycles (left, right).
pub fn tilt_duties(t: Tilt) -> (f64, f64) {
    let y = t.y.clamp(-Tilt::LIMIT, Tilt::LIMIT) / Tilt::LIMIT;
    if y > 0.0 {
        (0.0, y)
    } else {
        (-y, 0.0)
    }
}

/// Timing of a [`LedGroup`].
#[derive(Debug, Clone, Copy)]
pub struct LedTiming {
    /// Shortest time between two PWM writes.
    pub write_interval: Duration,
    /// The LEDs go off when no tilt arrives for this long.
    pub tilt_timeout: Duration,
    /// Shortest time between two state publishes while tilting.
    pub publish_interval: Duration,
}

/// What a [`LedGroup`] timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedTimer {
    /// No tilt for the timeout: turn the LEDs off.
    TiltTimeout,
    /// A throttled state publish is due.
    Publish,
    /// A fade or a flash takes its next step.
    Motion,
}

/// Half a flash: lit this long, then dark this long.
pub(crate) const FLASH_HALF: Duration = Duration::from_millis(250);
/// The time between two steps of a fade (50 a second).
pub(crate) const FADE_STEP: Duration = Duration::from_millis(20);

/// A fade or a flash under way on one LED, on absolute deadlines from its start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Moving {
    /// From duty `from` to the state's, evenly from `start` to `end`.
    Fade {
        from: f64,
        start: Instant,
        end: Instant,
    },
    /// Lit and dark by turns of [`FLASH_HALF`] from `start`, then the state's duty at `end`.
    Flash { start: Instant, end: Instant },
}

impl Moving {
    fn start(motion: Motion, from: f64, now: Instant) -> Moving {
        match motion {
            Motion::Fade(d) => Moving::Fade {
                from,
                start: now,
                end: now + d,
            },
            Motion::Flash(d) => Moving::Flash {
                start: now,
                end: now + d,
            },
        }
    }

    fn span(&self) -> (Instant, Instant, Duration) {
        match *self {
            Moving::Fade { start, end, .. } => (start, end, FADE_STEP),
            Moving::Flash { start, end } => (start, end, FLASH_HALF),
        }
    }

    /// The duty at `t` of an LED whose state asks for `to`, and lights at
    /// `lit` when it flashes.
    fn duty(&self, t: Instant, to: f64, lit: f64) -> f64 {
        let (start, end, step) = self.span();
        if t >= end {
            return to;
        }
        let since = t.saturating_duration_since(start);
        match *self {
            Moving::Fade { from, .. } => {
                from + (to - from) * since.as_secs_f64() / (end - start).as_secs_f64()
            }
            Moving::Flash { .. } if (since.as_nanos() / step.as_nanos()) % 2 == 0 => lit,
            Moving::Flash { .. } => 0.0,
        }
    }

    /// The next step after `t`; the end is the last.
    fn next(&self, t: Instant) -> Instant {
        let (start, end, step) = self.span();
        let done = t.saturating_duration_since(start).as_nanos() / step.as_nanos();
        let k = u32::try_from(done + 1).unwrap_or(u32::MAX);
        start
            .checked_add(step.saturating_mul(k))
            .unwrap_or(end)
            .min(end)
    }
}

/// The named PWM LEDs: their light states, explicit commands, the tilt rule
/// with its timeout, and a rate limit for reporting state while tilting.
pub struct LedGroup {
    names: Vec<String>,
    states: Vec<LedState>,
    duties: Vec<f64>,
    writer: PwmWriter,
    timing: LedTiming,
    tilt_until: Option<Instant>,
    last_publish: Option<Instant>,
    publish_pending: bool,
    /// Each LED's fade or flash under way.
    moving: Vec<Option<Moving>>,
    /// When each one's next step is due: fixed when it is set, so that a
    /// timer that fires late still finds its step due.
    due: Vec<Option<Instant>>,
}

impl LedGroup {
    /// Takes the channels (turned off) and starts their writer.
    pub fn new(
        channels: Vec<(String, Box<dyn PwmChannel>)>,
        timing: LedTiming,
        errors: mpsc::Sender<HardwareError>,
    ) -> Self {
        let (names, channels): (Vec<String>, Vec<_>) = channels.into_iter().unzip();
        LedGroup {
            states: vec![LedState::default(); names.len()],
            duties: vec![0.0; names.len()],
            moving: vec![None; names.len()],
            due: vec![None; names.len()],
            names,
            writer: PwmWriter::spawn(channels, timing.write_interval, errors),
            timing,
            tilt_until: None,
            last_publish: None,
            publish_pending: false,
        }
    }

    /// The LEDs' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Each LED's name and state.
    pub fn states(&self) -> impl Iterator<Item = (&str, LedState)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.states.iter().copied())
    }

    /// How long a tilt drives the LEDs.
    pub fn tilt_timeout(&self) -> Duration {
        self.timing.tilt_timeout
    }

    /// Whether tilt values currently drive the LEDs.
    pub fn tilting(&self) -> bool {
        self.tilt_until.is_some()
    }

    fn show(&mut self, duties: Vec<f64>) {
        self.moving.iter_mut().for_each(|m| *m = None);
        self.due.iter_mut().for_each(|d| *d = None);
        for (i, d) in duties.iter().enumerate() {
            self.states[i] = self.states[i].at_duty(*d);
        }
        self.duties = duties;
        self.writer.set(&self.duties);
    }

    /// An explicit command for LED `name` (it takes over from tilting, and
    /// from a fade or flash under way), reaching its new state by `motion`
    /// from `now`; `false` if there is no such LED. Report the state at once:
    /// it is the state the LED ends in.
    pub(crate) fn command(
        &mut self,
        name: &str,
        set: LedSet,
        motion: Option<Motion>,
        now: Instant,
    ) -> bool {
        let Some(i) = self.names.iter().position(|n| n == name) else {
            return false;
        };
        self.tilt_until = None;
        self.states[i] = self.states[i].apply(set);
        self.moving[i] = motion.map(|m| Moving::start(m, self.duties[i], now));
        self.move_to(i, now);
        self.writer.set(&self.duties);
        true
    }

    /// The step after `now` of LED `i`'s motion, if it still moves.
    fn plan(&mut self, i: usize, now: Instant) {
        self.due[i] = self.moving[i].map(|m| m.next(now));
    }

    /// LED `i` at its duty at `now`, its fade or flash taken into account;
    /// one that has ended is done.
    fn move_to(&mut self, i: usize, now: Instant) {
        let state = self.states[i];
        let lit = f64::from(state.brightness.max(1)) / 255.0;
        self.duties[i] = match self.moving[i] {
            Some(m) => m.duty(now, state.duty(), lit),
            None => state.duty(),
        };
        if self.moving[i].is_some_and(|m| now >= m.span().1) {
            self.moving[i] = None;
        }
        self.plan(i, now);
    }

    /// Every moving LED at its duty at `now`.
    fn step(&mut self, now: Instant) {
        for i in 0..self.duties.len() {
            if self.moving[i].is_some() {
                self.move_to(i, now);
            }
        }
        self.writer.set(&self.duties);
    }

    /// A tilt value: the LEDs follow it, and go off if no other comes in time.
    /// Its state is reported through the rate-limited [`LedTimer::Publish`].
    pub fn tilt(&mut self, t: Tilt, now: Instant) {
        let (left, right) = tilt_duties(t);
        let mut duties = self.duties.clone();
        for (name, d) in [("left", left), ("right", right)] {
            if let Some(i) = self.names.iter().position(|n| n == name) {
                duties[i] = d;
            }
        }
        self.show(duties);
        self.tilt_until = Some(now + self.timing.tilt_timeout);
        self.publish_pending = true;
    }

    /// Turns every LED off (tilt timeout, broker loss, shutdown). Report the state at once.
    pub fn off(&mut self) {
        self.tilt_until = None;
        self.show(vec![0.0; self.duties.len()]);
    }

    /// Puts every LED at `duty` (0..=1), the safe value; tilting stops.
    /// Report the state at once.
    pub fn safe(&mut self, duty: f64) {
        self.tilt_until = None;
        self.show(vec![duty; self.duties.len()]);
    }

    /// Notes that the state was just reported.
    pub fn published(&mut self, now: Instant) {
        self.last_publish = Some(now);
        self.publish_pending = false;
    }

    /// The next timer due, if any.
    pub fn next_timer(&self, now: Instant) -> Option<(Instant, LedTimer)> {
        let publish = self.publish_pending.then(|| {
            let at = self
                .last_publish
                .map_or(now, |l| (l + self.timing.publish_interval).max(now));
            (at, LedTimer::Publish)
        });
        let timeout = self.tilt_until.map(|t| (t, LedTimer::TiltTimeout));
        let motion = self
            .due
            .iter()
            .flatten()
            .min()
            .map(|at| (*at, LedTimer::Motion));
        [timeout, publish, motion]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Acts on a timer at `now`; afterwards the state should be reported,
    /// except after a motion's step (the state is the one it ends in).
    pub fn fire(&mut self, timer: LedTimer, now: Instant) {
        match timer {
            LedTimer::TiltTimeout => self.off(),
            LedTimer::Motion => self.step(now),
            LedTimer::Publish => {}
        }
    }

    /// Writes every LED at `duty` (the safe value) and stops the writer
    /// (at most `within`).
    pub async fn finish(self, duty: f64, within: Duration) {
        let last = vec![duty; self.duties.len()];
        self.writer.finish(&last, within).await;
    }
}

/// Hands duty cycles to the writer task; the newest value wins.
pub struct PwmWriter {
    tx: watch::Sender<Vec<f64>>,
    task: JoinHandle<()>,
}

impl PwmWriter {
    /// Starts the writer for `channels` (all turned off first). It writes at
    /// most once per `min_interval`, and only channels whose duty changed;
    /// failed writes go to `errors`.
    pub fn spawn(
        channels: Vec<Box<dyn PwmChannel>>,
        min_interval: Duration,
        errors: mpsc::Sender<HardwareError>,
    ) -> PwmWriter {
        let (tx, rx) = watch::channel(vec![0.0; channels.len()]);
        let task = tokio::spawn(write_loop(channels, min_interval, rx, errors));
        PwmWriter { tx, task }
    }

    /// Asks for `duties` (one per channel, 0..=1); replaces any not yet written.
    pub fn set(&self, duties: &[f64]) {
        self.tx.send_if_modified(|d| {
            if d.as_slice() == duties {
                false
            } else {
                d.clear();
                d.extend_from_slice(duties);
                true
            }
        });
    }

    /// Writes `duties` as the last values and waits (at most `within`) until they are written.
    pub async fn finish(self, duties: &[f64], within: Duration) {
        self.set(duties);
        let PwmWriter { tx, mut task } = self;
        drop(tx);
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn write_loop(
    mut channels: Vec<Box<dyn PwmChannel>>,
    min_interval: Duration,
    mut rx: watch::Receiver<Vec<f64>>,
    errors: mpsc::Sender<HardwareError>,
) {
    let mut written: Vec<Option<f64>> = vec![None; channels.len()];
    let mut write = |want: &[f64], written: &mut Vec<Option<f64>>| {
        for (i, ch) in channels.iter_mut().enumerate() {
            let d = want.get(i).copied().unwrap_or(0.0);
            if written[i] != Some(d) {
                match ch.set_duty(d) {
                    Ok(()) => written[i] = Some(d),
                    Err(e) => {
                        written[i] = None;
                        let _ = errors.try_send(e);
                    }
                }
            }
        }
    };
    let first = rx.borrow_and_update().clone();
    write(&first, &mut written);
    while rx.changed().await.is_ok() {
        let want = rx.borrow_and_update().clone();
        write(&want, &mut written);
        // Values arriving meanwhile coalesce: only the newest is written next.
        tokio::time::sleep(min_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::{Recording, SimPwm};

    #[test]
    fn light_rules() {
        let s = LedState::default().apply(LedSet {
            state: Some(true),
            brightness: Some(51),
        });
        assert_eq!(
            s,
            LedState {
                on: true,
                brightness: 51
            }
        );
        let off = s.apply(LedSet {
            state: Some(false),
            brightness: None,
        });
        assert_eq!(
            off,
            LedState {
                on: false,
                brightness: 51
            }
        );
        assert_eq!(off.duty(), 0.0);
        assert_eq!(
            off.apply(LedSet {
                state: Some(true),
                brightness: None
            }),
            s
        );
        let zero = s.apply(LedSet {
            state: None,
            brightness: Some(0),
        });
        assert!(!zero.on);
        assert_eq!(
            zero.apply(LedSet {
                state: Some(true),
                brightness: None
            })
            .brightness,
            255
        );
        assert_eq!(
            LedState::default().at_duty(0.5),
            LedState {
                on: true,
                brightness: 128
            }
        );
        assert_eq!(
            s.at_duty(0.0),
            LedState {
                on: false,
                brightness: 51
            }
        );
    }

    #[test]
    fn the_sign_rule() {
        let t = |y| Tilt { x: 0.0, y, z: 0.0 };
        assert_eq!(tilt_duties(t(40.0)), (0.0, 0.4));
        assert_eq!(tilt_duties(t(-75.0)), (0.75, 0.0));
        assert_eq!(tilt_duties(t(0.0)), (0.0, 0.0));
        assert_eq!(tilt_duties(t(100.0)), (0.0, 1.0));
        assert_eq!(tilt_duties(t(-100.0)), (1.0, 0.0));
    }

    fn writer(interval_ms: u64) -> (PwmWriter, Recording<f64>, Recording<f64>) {
        let (a, b) = (SimPwm::default(), SimPwm::default());
        let (ra, rb) = (a.writes.clone(), b.writes.clone());
        let (etx, _erx) = mpsc::channel(4);
        let w = PwmWriter::spawn(
            vec![Box::new(a), Box::new(b)],
            Duration::from_millis(interval_ms),
            etx,
        );
        (w, ra, rb)
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_coalesces_and_the_last_value_is_written() {
        let (w, left, right) = writer(10);
        let start = Instant::now();
        tokio::task::yield_now().await;
        // 10 000 values within 100 ms.
        for i in 0..10_000u32 {
            w.set(&[0.0, f64::from(i % 97) / 100.0]);
            if i % 1000 == 999 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        w.set(&[0.0, 0.42]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(right.last(), Some(0.42));
        assert!(
            right.total() <= 15,
            "{} writes for 10 001 values",
            right.total()
        );
        assert_eq!(
            left.values(),
            vec![0.0],
            "an unchanged duty is never written again"
        );
        // At most one write per 10 ms.
        // (The first write is the start-up "off".)
        let times: Vec<_> = right
            .entries()
            .iter()
            .skip(1)
            .map(|(t, _)| *t - start)
            .collect();
        assert!(
            times
                .windows(2)
                .all(|p| p[1] - p[0] >= Duration::from_millis(10)),
            "{times:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_a_quiet_spell_is_written_at_once() {
        let (w, _, right) = writer(10);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        w.set(&[0.0, 0.3]);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let e = right.entries();
        assert_eq!(
            e.last().map(|(at, v)| (*at - t, *v)),
            Some((Duration::ZERO, 0.3))
        );
    }

    /// Runs the group's timers the way the agent does, until `until`.
    async fn run_timers(
        g: &mut LedGroup,
        until: Instant,
        published: &mut Vec<(Duration, Vec<LedState>)>,
        t0: Instant,
    ) {
        while let Some((at, timer)) = g.next_timer(Instant::now()).filter(|(at, _)| *at <= until) {
            tokio::time::sleep_until(at).await;
            g.fire(timer, Instant::now());
            published.push((Instant::now() - t0, g.states().map(|(_, s)| s).collect()));
            g.published(Instant::now());
        }
        tokio::time::sleep_until(until).await;
    }

    fn group() -> (LedGroup, Recording<f64>, Recording<f64>) {
        let (a, b) = (SimPwm::default(), SimPwm::default());
        let (ra, rb) = (a.writes.clone(), b.writes.clone());
        let (etx, _erx) = mpsc::channel(4);
        let timing = LedTiming {
            write_interval: Duration::from_millis(10),
            tilt_timeout: Duration::from_millis(2000),
            publish_interval: Duration::from_millis(250),
        };
        let g = LedGroup::new(
            vec![("left".into(), Box::new(a)), ("right".into(), Box::new(b))],
            timing,
            etx,
        );
        (g, ra, rb)
    }

    #[tokio::test(start_paused = true)]
    async fn without_tilt_for_the_timeout_both_leds_go_off() {
        let (mut g, left, right) = group();
        let t0 = Instant::now();
        let mut published = Vec::new();
        g.tilt(
            Tilt {
                x: 0.0,
                y: -60.0,
                z: 0.0,
            },
            Instant::now(),
        );
        run_timers(&mut g, t0 + Duration::from_millis(1500), &mut published, t0).await;
        g.tilt(
            Tilt {
                x: 0.0,
                y: 30.0,
                z: 0.0,
            },
            Instant::now(),
        ); // at 1.5 s: the timeout restarts
        run_timers(&mut g, t0 + Duration::from_secs(5), &mut published, t0).await;
        // Left lit at 0 s, off at 1.5 s; right lit at 1.5 s and off exactly 2 s later.
        let at = |r: &Recording<f64>| {
            r.entries()
                .iter()
                .map(|(t, v)| ((*t - t0).as_millis(), *v))
                .collect::<Vec<_>>()
        };
        // (The start-up "off" of the left LED coalesced with the first tilt.)
        assert_eq!(at(&left), vec![(0, 0.6), (1500, 0.0)]);
        assert_eq!(at(&right), vec![(0, 0.0), (1500, 0.3), (3500, 0.0)]);
        assert!(!g.tilting());
        // The off state was reported when the timeout fired.
        let last = published.last().expect("published");
        assert_eq!(last.0, Duration::from_millis(3500));
        assert!(last.1.iter().all(|s| !s.on));
    }

    #[tokio::test(start_paused = true)]
    async fn state_reports_are_rate_limited_and_end_with_the_final_value() {
        let (mut g, _, right) = group();
        let t0 = Instant::now();
        let mut published = Vec::new();
        // 100 tilts a second for a second.
        for i in 1..=100u32 {
            g.tilt(
                Tilt {
                    x: 0.0,
                    y: f64::from(i),
                    z: 0.0,
                },
                Instant::now(),
            );
            run_timers(
                &mut g,
                t0 + Duration::from_millis(10 * u64::from(i)),
                &mut published,
                t0,
            )
            .await;
        }
        run_timers(&mut g, t0 + Duration::from_millis(1500), &mut published, t0).await;
        let times: Vec<u128> = published.iter().map(|(t, _)| t.as_millis()).collect();
        // Tilts at 0, 10, ..., 990 ms: reports at most every 250 ms, the last one with the final value.
        assert_eq!(times, vec![0, 250, 500, 750, 1000]);
        assert_eq!(
            published.last().unwrap().1[1],
            LedState {
                on: true,
                brightness: 255
            }
        );
        assert_eq!(right.last(), Some(1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn finish_writes_the_final_values() {
        let (w, left, right) = writer(10);
        w.set(&[0.9, 0.0]);
        w.finish(&[0.0, 0.0], Duration::from_secs(1)).await;
        assert_eq!(left.last(), Some(0.0));
        assert_eq!(right.last(), Some(0.0));
    }

    /// The duty `rec` had at `at` (its last write at or before it).
    fn duty_at(rec: &Recording<f64>, at: Instant) -> Option<f64> {
        rec.entries()
            .into_iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .map(|(_, d)| d)
    }

    fn on_state(brightness: u8) -> LedState {
        LedState {
            on: true,
            brightness,
        }
    }

    fn on(brightness: u8) -> LedSet {
        LedSet {
            state: Some(true),
            brightness: Some(brightness),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transition_fades_on_the_writers_deadlines_and_a_newer_command_ends_it() {
        let (mut g, left, _) = group();
        let t0 = Instant::now();
        let fade = Some(Motion::Fade(Duration::from_secs(2)));
        assert!(g.command("left", on(255), fade, t0));
        // The state is the one it ends in, at once.
        assert_eq!(g.states().next().map(|(_, s)| s), Some(on_state(255)));
        let mut published = Vec::new();
        run_timers(&mut g, t0 + Duration::from_millis(2100), &mut published, t0).await;
        let half = duty_at(&left, t0 + Duration::from_millis(1000)).unwrap();
        assert!((half - 0.5).abs() < 0.02, "halfway: {half}");
        assert_eq!(duty_at(&left, t0 + Duration::from_millis(2000)), Some(1.0));
        let writes = left.total();
        assert!(
            writes > 50 && writes <= 102,
            "{writes} writes for 2 s at 50 a second"
        );
        assert!(
            published.iter().all(|(_, s)| s[0] == on_state(255)),
            "no state per step"
        );
        // A fade down, cut short by a command without one: at its state
        // at once, and no more steps.
        let t1 = Instant::now();
        g.command(
            "left",
            LedSet {
                state: Some(false),
                brightness: None,
            },
            Some(Motion::Fade(Duration::from_secs(10))),
            t1,
        );
        run_timers(&mut g, t1 + Duration::from_millis(500), &mut published, t0).await;
        let during = duty_at(&left, Instant::now()).unwrap();
        assert!(during > 0.9 && during < 1.0, "{during}");
        g.command("left", on(51), None, Instant::now());
        assert_eq!(g.next_timer(Instant::now()), None);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(left.last(), Some(51.0 / 255.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flash_blinks_then_the_led_is_as_before() {
        let (mut g, left, right) = group();
        let t0 = Instant::now();
        g.command("left", on(51), None, t0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t1 = Instant::now();
        let flash = LedSet {
            state: None,
            brightness: None,
        };
        g.command(
            "left",
            flash,
            Some(Motion::Flash(Duration::from_secs(2))),
            t1,
        );
        let mut published = Vec::new();
        run_timers(&mut g, t1 + Duration::from_millis(2100), &mut published, t0).await;
        let lit = 51.0 / 255.0;
        for (ms, want) in [(100, lit), (300, 0.0), (600, lit), (800, 0.0), (1900, 0.0)] {
            assert_eq!(
                duty_at(&left, t1 + Duration::from_millis(ms)),
                Some(want),
                "at {ms} ms"
            );
        }
        assert_eq!(
            duty_at(&left, t1 + Duration::from_millis(2000)),
            Some(lit),
            "back"
        );
        assert_eq!(right.last(), Some(0.0), "the other LED is left alone");
    }
}
