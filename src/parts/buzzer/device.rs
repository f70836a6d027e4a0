//! The buzzer: on, off, or a tune (a beep, a pattern of beeps, an RTTTL
//! melody), which ends by itself. A tune's steps are on absolute deadlines
//! from its start: step k is due at the start plus its offset, whenever the
//! one before it was actually played, so a late wake-up never delays the
//! rest. A new command replaces what plays at once.

use std::sync::Arc;

use tokio::time::{Duration, Instant};
use tracing::warn;

use super::command::{BuzzerSet, Limits, Play};
use super::rtttl::Tunes;
use super::tune::{Sound, Tune};
use crate::hardware::{HardwareError, PwmChannel};

/// The duty of a passive buzzer's tone: a square wave.
const TONE_DUTY: f64 = 0.5;

/// A tune being played.
#[derive(Debug)]
struct Playing {
    tune: Arc<Tune>,
    /// When it started: every step is due at this plus its offset.
    t0: Instant,
    /// The next step to play; past the last one, the end is next.
    next: usize,
    /// The shipped tune it is, if it is one.
    tone: Option<String>,
}

impl Playing {
    /// When its next step (or its end) is due.
    fn due(&self) -> Instant {
        let at = match self.tune.steps().get(self.next) {
            Some(step) => step.at_us,
            None => self.tune.length_us(),
        };
        self.t0 + Duration::from_micros(at)
    }
}

/// What the buzzer is doing.
#[derive(Debug)]
enum Mode {
    Off,
    /// On until OFF.
    On,
    Playing(Playing),
}

/// The buzzer, what it plays and what it sounds now.
pub struct Buzzer {
    channel: Box<dyn PwmChannel>,
    /// Its own tone in Hz (`buzzer.tone_hz`); 0: an active buzzer, a plain
    /// output that sounds one tone of its own and has no pitch to set.
    tone_hz: f64,
    /// What the output does now.
    sounding: Sound,
    mode: Mode,
    /// Whether the log has said that an active buzzer leaves pitches out.
    said_no_pitch: bool,
    /// The limits of its commands.
    pub(crate) limits: Limits,
    /// The shipped tunes, which commands name.
    pub(crate) tunes: &'static Tunes,
}

/// No tunes, for a buzzer made where the shipped ones are broken.
static NO_TUNES: Tunes = Tunes::empty();

impl Buzzer {
    /// Takes the channel (silenced). `tone_hz` is its tone: above 0 a
    /// passive buzzer on PWM, whose pitch each note sets; 0 an active
    /// buzzer on a plain output, fully on when it sounds.
    pub fn new(mut channel: Box<dyn PwmChannel>, tone_hz: f64) -> Result<Self, HardwareError> {
        channel.set_duty(0.0)?;
        Ok(Buzzer {
            channel,
            tone_hz,
            sounding: Sound::Off,
            mode: Mode::Off,
            said_no_pitch: false,
            limits: Limits::from(&super::config::BuzzerConfig::default()),
            tunes: Tunes::shared().unwrap_or(&NO_TUNES),
        })
    }

    /// Whether it has a pitch to set (a passive buzzer).
    fn passive(&self) -> bool {
        self.tone_hz > 0.0
    }

    /// Its state report: `{"state": "ON"|"OFF"}`, while a tune plays with
    /// its length in seconds (`duration`) and, for a shipped tune, its name
    /// (`tone`): Home Assistant's siren reads these keys.
    pub(crate) fn payload(&self) -> String {
        /// The state, its keys in this order, those without a value left out.
        #[derive(serde::Serialize)]
        struct State<'a> {
            state: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            tone: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            duration: Option<f64>,
        }
        let playing = match &self.mode {
            Mode::Playing(p) => Some(p),
            _ => None,
        };
        let s = State {
            state: if self.is_on() { "ON" } else { "OFF" },
            tone: playing.and_then(|p| p.tone.as_deref()),
            duration: playing.map(|p| p.tune.length_us().div_ceil(1000) as f64 / 1000.0),
        };
        serde_json::to_string(&s).unwrap_or_default()
    }

    /// Whether it is on or playing.
    pub fn is_on(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// When what plays next changes (a note, a beep, a pause, the end).
    pub fn next_change(&self) -> Option<Instant> {
        match &self.mode {
            Mode::Playing(p) => Some(p.due()),
            _ => None,
        }
    }

    /// Makes the output do `sound`, writing only a change.
    fn sound(&mut self, sound: Sound) -> Result<(), HardwareError> {
        // An active buzzer has one tone: a pitch is its tone.
        let sound = match sound {
            Sound::Pitch(_) if !self.passive() => Sound::On,
            s => s,
        };
        if sound == self.sounding {
            return Ok(());
        }
        match sound {
            Sound::Off => self.channel.set_duty(0.0)?,
            Sound::On if self.passive() => self.channel.set_frequency(self.tone_hz, TONE_DUTY)?,
            Sound::On => self.channel.set_duty(1.0)?,
            Sound::Pitch(hz) => self.channel.set_frequency(hz, TONE_DUTY)?,
        }
        self.sounding = sound;
        Ok(())
    }

    /// Carries out a command at `now`, replacing what plays; nothing
    /// changes if the hardware refuses.
    pub(crate) fn set(&mut self, set: BuzzerSet, now: Instant) -> Result<(), HardwareError> {
        match set {
            BuzzerSet::On => {
                self.sound(Sound::On)?;
                self.mode = Mode::On;
            }
            BuzzerSet::Off => {
                self.sound(Sound::Off)?;
                self.mode = Mode::Off;
            }
            BuzzerSet::Beep(ms) => self.play(Arc::new(Tune::beep(ms)), None, now)?,
            BuzzerSet::Play(Play { tune, tone }) => self.play(tune, tone, now)?,
        }
        Ok(())
    }

    /// Plays `tune` from `now` (`tone`: the shipped tune it is), replacing
    /// what plays. An active buzzer keeps its rhythm and leaves its pitches
    /// out, which the log says the first time.
    pub fn play(
        &mut self,
        tune: Arc<Tune>,
        tone: Option<String>,
        now: Instant,
    ) -> Result<(), HardwareError> {
        if !self.passive() && !self.said_no_pitch && tune.has_pitch() {
            self.said_no_pitch = true;
            warn!(
                "the buzzer is a plain output (buzzer.tone_hz = 0, an active buzzer): \
                 tunes keep their rhythm, their pitches are left out"
            );
        }
        let first = tune.steps().first().map_or(Sound::Off, |s| s.sound);
        self.sound(first)?;
        self.mode = Mode::Playing(Playing {
            tune,
            t0: now,
            next: 1,
            tone,
        });
        Ok(())
    }

    /// Plays what is due at `now`: the step of the tune that covers `now`
    /// (steps a late wake-up has passed are left out), or the silence at
    /// its end. Returns whether the tune ended. A hardware failure ends it.
    pub fn advance(&mut self, now: Instant) -> Result<bool, HardwareError> {
        let Mode::Playing(p) = &self.mode else {
            return Ok(false);
        };
        if now < p.due() {
            return Ok(false);
        }
        let elapsed = u64::try_from((now - p.t0).as_micros()).unwrap_or(u64::MAX);
        if elapsed >= p.tune.length_us() {
            self.mode = Mode::Off;
            self.sound(Sound::Off)?;
            return Ok(true);
        }
        let steps = p.tune.steps();
        let current = steps.partition_point(|s| s.at_us <= elapsed);
        let sound = current
            .checked_sub(1)
            .and_then(|i| steps.get(i))
            .map_or(Sound::Off, |s| s.sound);
        if let Mode::Playing(p) = &mut self.mode {
            p.next = current.max(p.next);
        }
        if let Err(e) = self.sound(sound) {
            self.mode = Mode::Off;
            return Err(e);
        }
        Ok(false)
    }

    /// Silences it and ends what plays (shutdown, the safe state): the
    /// output is written whatever it was thought to be.
    pub fn off(&mut self) -> Result<(), HardwareError> {
        self.mode = Mode::Off;
        self.sounding = Sound::Off;
        self.channel.set_duty(0.0)
    }

    /// Whether the log has said that pitches are left out.
    #[cfg(test)]
    pub(crate) fn said_no_pitch(&self) -> bool {
        self.said_no_pitch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::{Recording, SimPwm};
    use crate::parts::buzzer::rtttl::{parse, Limits as RtttlLimits};

    struct Rig {
        b: Buzzer,
        duty: Recording<f64>,
        pitches: Option<Recording<f64>>,
        t0: Instant,
    }

    fn rig(tone_hz: f64) -> Rig {
        let pwm = if tone_hz > 0.0 {
            SimPwm::default()
        } else {
            SimPwm::plain()
        };
        let (duty, pitches) = (pwm.writes.clone(), pwm.pitches.clone());
        let b = Buzzer::new(Box::new(pwm), tone_hz).unwrap();
        Rig {
            b,
            duty,
            pitches,
            t0: Instant::now(),
        }
    }

    impl Rig {
        /// Plays on as the agent's loop does, waking `late` after each
        /// deadline, until `until` after the start; returns when the tune
        /// ended, if it did.
        async fn run(&mut self, until: Duration, late: Duration) -> Option<Instant> {
            let mut ended = None;
            while let Some(due) = self.b.next_change() {
                let wake = due + late;
                if wake > self.t0 + until {
                    break;
                }
                tokio::time::sleep_until(wake).await;
                if self.b.advance(Instant::now()).unwrap() {
                    ended = Some(Instant::now());
                }
            }
            tokio::time::sleep_until(self.t0 + until).await;
            ended
        }

        /// (ms since the start, duty) of every write after the first (start-up off).
        fn duties(&self) -> Vec<(u64, f64)> {
            self.duty
                .entries()
                .iter()
                .skip(1)
                .map(|(t, d)| ((*t - self.t0).as_millis() as u64, *d))
                .collect()
        }

        /// (ms since the start, Hz rounded) of every pitch set.
        fn pitches(&self) -> Vec<(u64, u32)> {
            self.pitches
                .as_ref()
                .map(|r| r.entries())
                .unwrap_or_default()
                .iter()
                .map(|(t, hz)| ((*t - self.t0).as_millis() as u64, hz.round() as u32))
                .collect()
        }
    }

    fn rtttl(text: &str) -> Arc<Tune> {
        Arc::new(parse(text, RtttlLimits::default()).unwrap().tune())
    }

    #[tokio::test(start_paused = true)]
    async fn a_beep_ends_by_itself() {
        let mut r = rig(2000.0);
        r.b.set(BuzzerSet::Beep(200), r.t0).unwrap();
        assert_eq!(r.b.next_change(), Some(r.t0 + Duration::from_millis(200)));
        assert_eq!(r.b.payload(), r#"{"state":"ON","duration":0.2}"#);
        r.run(Duration::from_secs(1), Duration::ZERO).await;
        assert_eq!(r.duties(), vec![(0, 0.5), (200, 0.0)]);
        assert_eq!(r.pitches(), vec![(0, 2000)], "its own tone");
        assert!(!r.b.is_on() && r.b.next_change().is_none());
        assert_eq!(r.b.payload(), r#"{"state":"OFF"}"#);
        r.b.set(BuzzerSet::On, Instant::now()).unwrap();
        assert!(r.b.is_on() && r.b.next_change().is_none());
        assert_eq!(r.b.payload(), r#"{"state":"ON"}"#);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pattern_of_beeps_at_its_tone() {
        let mut r = rig(2000.0);
        let tune = Tune::beeps(100, 3, 50, Sound::Pitch(3000.0));
        r.b.play(Arc::new(tune), None, r.t0).unwrap();
        r.run(Duration::from_secs(1), Duration::ZERO).await;
        assert_eq!(
            r.duties(),
            vec![
                (0, 0.5),
                (100, 0.0),
                (150, 0.5),
                (250, 0.0),
                (300, 0.5),
                (400, 0.0)
            ]
        );
        assert_eq!(r.pitches(), vec![(0, 3000), (150, 3000), (300, 3000)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_rtttl_tune_sets_each_notes_pitch_on_a_passive_buzzer() {
        let mut r = rig(2000.0);
        r.b.play(rtttl("t:d=4,o=5,b=120:c,e,p,g"), None, r.t0)
            .unwrap();
        assert_eq!(r.b.payload(), r#"{"state":"ON","duration":2.0}"#);
        r.run(Duration::from_secs(3), Duration::ZERO).await;
        // Each quarter note: 500 ms, sounding 450 of them.
        assert_eq!(r.pitches(), vec![(0, 523), (500, 659), (1500, 784)]);
        assert_eq!(
            r.duties(),
            vec![
                (0, 0.5),
                (450, 0.0),
                (500, 0.5),
                (950, 0.0),
                (1500, 0.5),
                (1950, 0.0)
            ]
        );
        assert!(!r.b.is_on());
        assert!(!r.b.said_no_pitch());
    }

    #[tokio::test(start_paused = true)]
    async fn an_active_buzzer_keeps_the_rhythm_and_says_once_that_it_has_no_pitch() {
        let mut r = rig(0.0);
        r.b.play(rtttl("t:d=4,o=5,b=120:c,e"), None, r.t0).unwrap();
        assert!(r.b.said_no_pitch(), "said at the first tune with pitches");
        r.run(Duration::from_secs(1), Duration::ZERO).await;
        assert_eq!(
            r.duties(),
            vec![(0, 1.0), (450, 0.0), (500, 1.0), (950, 0.0)],
            "fully on for each note, off between them"
        );
        assert!(r.pitches.is_none(), "a plain output has no pitch");
        // Again: said once only (the flag stays, nothing else is logged).
        r.b.play(rtttl("t:d=4,o=5,b=120:c"), None, Instant::now())
            .unwrap();
        assert!(r.b.said_no_pitch());
        // Beeps without a pitch say nothing on a fresh buzzer.
        let mut q = rig(0.0);
        q.b.set(BuzzerSet::Beep(100), q.t0).unwrap();
        assert!(!q.b.said_no_pitch());
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_command_cancels_the_tune() {
        let mut r = rig(2000.0);
        r.b.play(rtttl("t:d=4,o=5,b=120:c,d,e,f,g"), Some("t".into()), r.t0)
            .unwrap();
        r.run(Duration::from_millis(700), Duration::ZERO).await;
        // A beep replaces it mid-note, at its own tone.
        r.b.set(BuzzerSet::Beep(100), Instant::now()).unwrap();
        r.run(Duration::from_millis(1000), Duration::ZERO).await;
        assert_eq!(r.pitches(), vec![(0, 523), (500, 587), (700, 2000)]);
        assert_eq!(
            r.duties(),
            vec![(0, 0.5), (450, 0.0), (500, 0.5), (700, 0.5), (800, 0.0)]
        );
        // OFF silences a tune at once.
        r.b.play(rtttl("t:d=4,o=5,b=120:c,d"), None, Instant::now())
            .unwrap();
        r.b.set(BuzzerSet::Off, Instant::now()).unwrap();
        assert_eq!(r.duty.last(), Some(0.0));
        assert!(r.b.next_change().is_none() && !r.b.is_on());
    }

    #[tokio::test(start_paused = true)]
    async fn a_three_minute_tune_ends_on_time_however_late_each_wake_up() {
        // 720 eighth notes at 120 beats a minute: 180 s.
        let notes: Vec<&str> = ["c", "e", "g", "c6"]
            .iter()
            .cycle()
            .take(720)
            .copied()
            .collect();
        let tune = rtttl(&format!("long:d=8,o=5,b=120:{}", notes.join(",")));
        assert_eq!(tune.length(), Duration::from_secs(180));
        for late in [Duration::ZERO, Duration::from_millis(7)] {
            let mut r = rig(2000.0);
            r.b.play(Arc::clone(&tune), None, r.t0).unwrap();
            let ended = r.run(Duration::from_secs(181), late).await;
            assert_eq!(
                ended.map(|t| t - r.t0),
                Some(Duration::from_secs(180) + late),
                "the end, {late:?} late"
            );
            let e = r.duty.entries();
            // Every write at its step's own deadline plus one wake-up's
            // lateness, never the sum of them.
            for (k, (t, _)) in e.iter().skip(1).enumerate() {
                let due = r.t0
                    + Duration::from_micros(
                        tune.steps().get(k).map_or(tune.length_us(), |s| s.at_us),
                    );
                assert_eq!(
                    *t - due,
                    if k == 0 { Duration::ZERO } else { late },
                    "write {k}"
                );
            }
            let (last, duty) = e.last().copied().unwrap();
            assert_eq!(duty, 0.0);
            // The last note sounds 225 of its 250 ms.
            assert_eq!(last - r.t0, Duration::from_millis(179_975) + late);
            assert_eq!(
                e.len(),
                1 + 2 * 720,
                "start-up off, then on and off for each note"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_past_steps_plays_what_is_due_now() {
        let mut r = rig(2000.0);
        r.b.play(rtttl("t:d=8,o=5,b=120:c,d,e,f"), None, r.t0)
            .unwrap();
        // Woken 600 ms in: the third note (500 to 750 ms) sounds, the
        // second is left out; the next deadline is the third's end.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!r.b.advance(Instant::now()).unwrap());
        assert_eq!(r.pitches(), vec![(0, 523), (600, 659)]);
        assert_eq!(
            r.b.next_change(),
            Some(r.t0 + Duration::from_micros(725_000))
        );
        r.run(Duration::from_secs(2), Duration::ZERO).await;
        assert_eq!(r.pitches(), vec![(0, 523), (600, 659), (750, 698)]);
        assert_eq!(r.duty.last(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn off_writes_silence_whatever_it_thought() {
        let mut r = rig(2000.0);
        r.b.off().unwrap();
        assert_eq!(
            r.duty.values(),
            vec![0.0, 0.0],
            "written, though it was silent"
        );
        r.b.set(BuzzerSet::On, r.t0).unwrap();
        r.b.off().unwrap();
        assert_eq!(r.duty.last(), Some(0.0));
        assert!(!r.b.is_on());
    }
}
