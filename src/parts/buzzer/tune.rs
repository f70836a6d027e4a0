//! What the buzzer plays: a tune is a list of steps on absolute offsets from
//! its start (a beep, a pattern of beeps, an RTTTL melody), so the time of
//! every step follows from the start alone and nothing drifts.

use std::time::Duration;

/// What the buzzer does from one step on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sound {
    /// Silent.
    Off,
    /// Sounding its own tone (`buzzer.tone_hz`; an active buzzer's only one).
    On,
    /// Sounding this pitch, in Hz (a passive buzzer; an active buzzer
    /// sounds its own tone and keeps the rhythm only).
    Pitch(f64),
}

/// One step of a tune: from `at_us` after the start, the buzzer does `sound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Microseconds after the tune's start.
    pub at_us: u64,
    /// What it does from then on.
    pub sound: Sound,
}

/// A tune: steps at strictly increasing offsets, the first at 0, each
/// changing the sound; silent at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Tune {
    steps: Vec<Step>,
    length_us: u64,
}

impl Tune {
    /// One beep of `ms` at the buzzer's own tone.
    pub fn beep(ms: u64) -> Tune {
        Tune::beeps(ms, 1, 0, Sound::On)
    }

    /// `count` beeps of `beep_ms` with `pause_ms` of silence between them,
    /// each sounding `sound`.
    pub fn beeps(beep_ms: u64, count: u64, pause_ms: u64, sound: Sound) -> Tune {
        let mut b = Builder::default();
        let period = beep_ms.saturating_add(pause_ms).saturating_mul(1000);
        for k in 0..count {
            let at = k.saturating_mul(period);
            b.push(at, sound);
            b.push(at.saturating_add(beep_ms.saturating_mul(1000)), Sound::Off);
        }
        let length = count
            .saturating_mul(period)
            .saturating_sub(pause_ms.saturating_mul(1000));
        b.finish(length)
    }

    /// A tune of notes, each `(start_us, end_us, pitch)` (`None`: a rest),
    /// in order; each note sounds for [`SOUNDING`] of its length, so that
    /// two notes in a row are heard as two, on an active buzzer too.
    pub(crate) fn notes(notes: impl IntoIterator<Item = (u64, u64, Option<f64>)>) -> Tune {
        let mut b = Builder::default();
        let mut end = 0;
        for (start, stop, pitch) in notes {
            if let Some(hz) = pitch {
                b.push(start, Sound::Pitch(hz));
                let (num, den) = SOUNDING;
                let sounding = (stop.saturating_sub(start)).saturating_mul(num) / den;
                b.push(start.saturating_add(sounding), Sound::Off);
            } else {
                b.push(start, Sound::Off);
            }
            end = stop;
        }
        b.finish(end)
    }

    /// This tune again and again, back to back, for `length` (the last
    /// round cut there).
    pub fn repeated_for(&self, length: Duration) -> Tune {
        let total = u64::try_from(length.as_micros()).unwrap_or(u64::MAX);
        let mut b = Builder::default();
        if self.length_us == 0 {
            return b.finish(0);
        }
        let mut round_start: u64 = 0;
        while round_start < total {
            for s in &self.steps {
                b.push(round_start.saturating_add(s.at_us), s.sound);
            }
            round_start = round_start.saturating_add(self.length_us);
            b.push(round_start, Sound::Off);
        }
        b.finish(total)
    }

    /// Its steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Its length: when it ends, silent, after its start.
    pub fn length(&self) -> Duration {
        Duration::from_micros(self.length_us)
    }

    /// Its length in microseconds.
    pub fn length_us(&self) -> u64 {
        self.length_us
    }

    /// Whether it asks for pitches (which an active buzzer cannot play).
    pub fn has_pitch(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.sound, Sound::Pitch(_)))
    }
}

/// The part of a note's length it sounds: the rest of it is silent.
pub const SOUNDING: (u64, u64) = (9, 10);

/// Builds a tune's steps in order, merging what changes nothing.
struct Builder {
    steps: Vec<Step>,
}

impl Default for Builder {
    /// Silent from the start.
    fn default() -> Self {
        Builder {
            steps: vec![Step {
                at_us: 0,
                sound: Sound::Off,
            }],
        }
    }
}

impl Builder {
    /// From `at_us` on (not before the last step), `sound`: it replaces a
    /// step at the same time, and one that changes nothing is left out.
    fn push(&mut self, at_us: u64, sound: Sound) {
        if self.steps.last().is_some_and(|s| s.at_us >= at_us) {
            self.steps.pop();
        }
        if self.steps.last().map(|s| s.sound) != Some(sound) {
            self.steps.push(Step { at_us, sound });
        }
    }

    /// The tune, ending at `length_us` (steps from then on are cut).
    fn finish(mut self, length_us: u64) -> Tune {
        self.steps.retain(|s| s.at_us < length_us || s.at_us == 0);
        if self.steps.is_empty() {
            self.steps.push(Step {
                at_us: 0,
                sound: Sound::Off,
            });
        }
        Tune {
            steps: self.steps,
            length_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &Tune) -> Vec<(u64, Sound)> {
        t.steps()
            .iter()
            .map(|s| (s.at_us / 1000, s.sound))
            .collect()
    }

    #[test]
    fn a_beep_is_on_then_off_at_its_end() {
        let t = Tune::beep(200);
        assert_eq!(at(&t), vec![(0, Sound::On)]);
        assert_eq!(t.length(), Duration::from_millis(200));
        assert!(!t.has_pitch());
    }

    #[test]
    fn beeps_with_pauses_and_without() {
        let t = Tune::beeps(100, 3, 50, Sound::Pitch(2000.0));
        let p = Sound::Pitch(2000.0);
        assert_eq!(
            at(&t),
            vec![
                (0, p),
                (100, Sound::Off),
                (150, p),
                (250, Sound::Off),
                (300, p)
            ]
        );
        assert_eq!(t.length(), Duration::from_millis(400));
        // No pause: one long beep.
        let t = Tune::beeps(100, 3, 0, Sound::On);
        assert_eq!(at(&t), vec![(0, Sound::On)]);
        assert_eq!(t.length(), Duration::from_millis(300));
    }

    #[test]
    fn notes_sound_for_nine_tenths_and_rests_are_silent() {
        let t = Tune::notes([
            (0, 100_000, Some(440.0)),
            (100_000, 200_000, Some(440.0)),
            (200_000, 400_000, None),
            (400_000, 500_000, Some(880.0)),
        ]);
        let (a, a2) = (Sound::Pitch(440.0), Sound::Pitch(880.0));
        assert_eq!(
            at(&t),
            vec![
                (0, a),
                (90, Sound::Off),
                (100, a),
                (190, Sound::Off),
                (400, a2),
                (490, Sound::Off)
            ]
        );
        assert_eq!(t.length_us(), 500_000);
        assert!(t.has_pitch());
    }

    #[test]
    fn a_tune_repeated_is_cut_at_its_length() {
        let t = Tune::beeps(100, 2, 100, Sound::On).repeated_for(Duration::from_millis(650));
        assert_eq!(
            at(&t),
            vec![
                (0, Sound::On),
                (100, Sound::Off),
                (200, Sound::On),
                (400, Sound::Off),
                (500, Sound::On)
            ],
            "the second round follows the first at 300 ms, and is cut at 650"
        );
        assert_eq!(t.length(), Duration::from_millis(650));
        let empty = Tune::notes([]).repeated_for(Duration::from_secs(1));
        assert_eq!(empty.length_us(), 0);
    }
}
