//! RTTTL, the ring tone text of old mobile phones: `name:defaults:notes`,
//! e.g. `scale:d=4,o=5,b=120:c,d,e,f,g,a,b,c6`. Parsed into a [`Tune`]
//! within named limits, and the tunes shipped with the agent
//! (`tunes/tunes.rtttl`), parsed once.
//!
//! - defaults: `d` (a note's duration: 1 a whole note, 4 a quarter, …),
//!   `o` (its octave) and `b` (beats, i.e. quarter notes, a minute), in
//!   any order, each at most once, any of them absent (`d=4`, `o=6`,
//!   `b=63`);
//! - a note: `[duration]note[#][.][octave][.]`: `a` to `g` (`h` is `b`),
//!   `#` a semitone up, `.` half as long again (once), `p` a pause;
//! - pitches in scientific pitch notation, A4 = 440 Hz.
//!
//! Letters may be in either case; spaces around the parts are ignored.

use std::ops::RangeInclusive;
use std::sync::Arc;

use super::tune::Tune;
use crate::quote::clip;

/// The note durations RTTTL has (1 a whole note, 32 a thirty-second).
pub const DURATIONS: [u32; 6] = [1, 2, 4, 8, 16, 32];
/// The octaves a note may be in (A4 is 440 Hz).
pub const OCTAVES: RangeInclusive<u32> = 3..=8;
/// The tempos a tune may have, in beats (quarter notes) a minute.
pub const TEMPOS: RangeInclusive<u32> = 25..=900;
/// The most notes (and pauses) a tune may have.
pub const MAX_NOTES: usize = 1000;

/// The defaults a tune that gives none has.
const DEFAULT_DURATION: u32 = 4;
const DEFAULT_OCTAVE: u32 = 6;
const DEFAULT_TEMPO: u32 = 63;

/// How much of the input an error message quotes.
const QUOTE: usize = 24;

/// Limits a tune must stay within, besides the fixed ones above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most notes (and pauses).
    pub max_notes: usize,
    /// The longest tune, in seconds (`buzzer.max_tune_s`).
    pub max_tune_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_notes: MAX_NOTES,
            max_tune_s: 300,
        }
    }
}

/// Why a tune was refused: the place, the value given and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RtttlError(pub String);

/// A tune read from RTTTL.
#[derive(Debug, Clone, PartialEq)]
pub struct Rtttl {
    /// Its name (the part before the first colon; may be empty).
    pub name: String,
    /// Its notes and pauses: (start, end) in µs from the tune's start, and
    /// the pitch in Hz (`None`: a pause).
    pub notes: Vec<(u64, u64, Option<f64>)>,
}

impl Rtttl {
    /// What the buzzer plays of it.
    pub fn tune(&self) -> Tune {
        Tune::notes(self.notes.iter().copied())
    }

    /// Its length in µs.
    pub fn length_us(&self) -> u64 {
        self.notes.last().map_or(0, |n| n.1)
    }
}

fn err(msg: String) -> RtttlError {
    RtttlError(msg)
}

/// A whole number as RTTTL writes one (digits only), or `None`.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn duration_ok(d: u32) -> bool {
    DURATIONS.contains(&d)
}

fn durations() -> &'static str {
    "1, 2, 4, 8, 16 or 32"
}

/// Reads the defaults section (`d=4,o=5,b=120`, in any order, or empty).
fn defaults(text: &str) -> Result<(u32, u32, u32), RtttlError> {
    let (mut d, mut o, mut b) = (None, None, None);
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            if text.trim().is_empty() {
                break;
            }
            return Err(err(format!(
                "the defaults {:?} have an empty entry; they are d=, o= and b=, between commas",
                clip(text, QUOTE)
            )));
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(err(format!(
                "the default {:?} is not key=value; the defaults are d (duration), o (octave) and b (tempo), e.g. d=4,o=5,b=120",
                clip(item, QUOTE)
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        let slot = match key {
            k if k.eq_ignore_ascii_case("d") => &mut d,
            k if k.eq_ignore_ascii_case("o") => &mut o,
            k if k.eq_ignore_ascii_case("b") => &mut b,
            _ => {
                return Err(err(format!(
                    "the default {:?} is unknown; the defaults are d (duration), o (octave) and b (tempo)",
                    clip(key, QUOTE)
                )))
            }
        };
        if slot.is_some() {
            return Err(err(format!(
                "the default {} is given twice",
                key.to_ascii_lowercase()
            )));
        }
        let Some(n) = number(value) else {
            return Err(err(format!(
                "the default {}={} is not a whole number",
                key.to_ascii_lowercase(),
                clip(value, QUOTE)
            )));
        };
        *slot = Some(n);
    }
    let d = d.unwrap_or(DEFAULT_DURATION);
    let o = o.unwrap_or(DEFAULT_OCTAVE);
    let b = b.unwrap_or(DEFAULT_TEMPO);
    if !duration_ok(d) {
        return Err(err(format!(
            "the default duration d={d}; a duration is {}",
            durations()
        )));
    }
    if !OCTAVES.contains(&o) {
        return Err(err(format!(
            "the default octave o={o}; an octave is {} to {}",
            OCTAVES.start(),
            OCTAVES.end()
        )));
    }
    if !TEMPOS.contains(&b) {
        return Err(err(format!(
            "the tempo b={b}; a tempo is {} to {} beats a minute",
            TEMPOS.start(),
            TEMPOS.end()
        )));
    }
    Ok((d, o, b))
}

/// The semitone of a note letter above C, or `None` for a pause.
fn semitone(letter: u8) -> Option<Option<i32>> {
    Some(match letter.to_ascii_lowercase() {
        b'c' => Some(0),
        b'd' => Some(2),
        b'e' => Some(4),
        b'f' => Some(5),
        b'g' => Some(7),
        b'a' => Some(9),
        b'b' | b'h' => Some(11),
        b'p' => None,
        _ => return None,
    })
}

/// The pitch of `semitone` above C in `octave`: A4 = 440 Hz.
pub fn pitch(octave: u32, semitone: i32) -> f64 {
    let midi = 12 * (i64::from(octave) + 1) + i64::from(semitone);
    440.0 * 2f64.powf((midi - 69) as f64 / 12.0)
}

/// One note: (its length in 64ths of a whole note, its pitch or `None`).
fn note(text: &str, d: u32, o: u32) -> Result<(u64, Option<f64>), String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let duration = match &text[..i] {
        "" => d,
        digits => match number(digits) {
            Some(n) if duration_ok(n) => n,
            _ => {
                return Err(format!(
                    "the duration {}; a duration is {}",
                    clip(digits, QUOTE),
                    durations()
                ))
            }
        },
    };
    let Some(semi) = bytes.get(i).and_then(|&c| semitone(c)) else {
        return Err(match bytes.get(i) {
            None => "a duration without a note; a note is a to g, or p for a pause".into(),
            Some(_) => "not a note; a note is a to g (h is b), or p for a pause, e.g. 8c#6".into(),
        });
    };
    i += 1;
    let mut semi = semi;
    if bytes.get(i) == Some(&b'#') {
        match semi.as_mut() {
            Some(s) => *s += 1,
            None => return Err("a pause cannot be sharp".into()),
        }
        i += 1;
    }
    let mut dots = 0;
    if bytes.get(i) == Some(&b'.') {
        dots += 1;
        i += 1;
    }
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let octave = match &text[start..i] {
        "" => o,
        digits => match number(digits) {
            Some(n) if OCTAVES.contains(&n) => n,
            _ => {
                return Err(format!(
                    "the octave {}; an octave is {} to {}",
                    clip(digits, QUOTE),
                    OCTAVES.start(),
                    OCTAVES.end()
                ))
            }
        },
    };
    if bytes.get(i) == Some(&b'.') {
        dots += 1;
        i += 1;
    }
    if dots > 1 {
        return Err("two dots; a note has at most one".into());
    }
    if i < bytes.len() {
        return Err(format!(
            "{:?} after the note; a note is [duration]note[#][.][octave][.]",
            clip(&text[i..], QUOTE)
        ));
    }
    let sixty_fourths = u64::from(64 / duration);
    let length = if dots == 1 {
        sixty_fourths * 3 / 2
    } else {
        sixty_fourths
    };
    Ok((length, semi.map(|s| pitch(octave, s))))
}

/// Reads an RTTTL tune within `limits`.
pub fn parse(text: &str, limits: Limits) -> Result<Rtttl, RtttlError> {
    let text = text.trim();
    let mut parts = text.splitn(3, ':');
    let (Some(name), Some(defs), Some(notes)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(err(format!(
            "{:?} is not RTTTL: it is name:defaults:notes, e.g. scale:d=4,o=5,b=120:c,d,e,f,g,a,b,c6",
            clip(text, QUOTE)
        )));
    };
    let (d, o, b) = defaults(defs)?;
    let mut items: Vec<&str> = notes.split(',').map(str::trim).collect();
    while items.len() > 1 && items.last().is_some_and(|s| s.is_empty()) {
        items.pop(); // a comma at the end
    }
    if items.len() > limits.max_notes {
        return Err(err(format!(
            "the tune has {} notes; the most is {}",
            items.len(),
            limits.max_notes
        )));
    }
    if items.iter().all(|s| s.is_empty()) {
        return Err(err("the tune has no notes".into()));
    }
    // A whole note lasts 4 beats of 60/b s: 240 s / b, a 64th of it
    // 3.75 s / b. Each note's start follows from the sum of the lengths
    // before it, in 64ths, so rounding never adds up.
    let us = |sixty_fourths: u64| sixty_fourths.saturating_mul(3_750_000) / u64::from(b);
    let max_us = limits.max_tune_s.saturating_mul(1_000_000);
    let mut out = Vec::with_capacity(items.len());
    let mut at: u64 = 0;
    for (k, item) in items.iter().enumerate() {
        if item.is_empty() {
            return Err(err(format!("note {} is empty", k + 1)));
        }
        let (length, hz) = note(item, d, o)
            .map_err(|why| err(format!("note {} ({:?}): {why}", k + 1, clip(item, QUOTE))))?;
        let start = us(at);
        at = at.saturating_add(length);
        out.push((start, us(at), hz));
    }
    let length = us(at);
    if length > max_us {
        return Err(err(format!(
            "the tune lasts {:.1} s; the most is {} s (buzzer.max_tune_s)",
            length as f64 / 1e6,
            limits.max_tune_s
        )));
    }
    Ok(Rtttl {
        name: name.trim().to_string(),
        notes: out,
    })
}

/// The tunes shipped with the agent, one RTTTL a line (`#` starts a
/// comment line).
pub(crate) const TUNES_RTTTL: &str = include_str!("../../../tunes/tunes.rtttl");

/// The tunes shipped with the agent, by name, parsed.
#[derive(Debug, Clone)]
pub struct Tunes {
    tunes: Vec<(String, Arc<Tune>)>,
}

impl Tunes {
    /// No tunes.
    pub(crate) const fn empty() -> Tunes {
        Tunes { tunes: Vec::new() }
    }

    /// The shipped tunes (`tunes/tunes.rtttl`).
    pub fn builtin() -> Result<Tunes, RtttlError> {
        Self::from_text(TUNES_RTTTL)
    }

    /// The shipped tunes, parsed once per process: the buzzer and
    /// discovery's list of tones share them.
    pub(crate) fn shared() -> Result<&'static Tunes, RtttlError> {
        static SHARED: std::sync::OnceLock<Result<Tunes, RtttlError>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(Tunes::builtin)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Tunes from text: one RTTTL a line, named in lower case (a to z, 0
    /// to 9, `_`, `-`), each name once; blank lines and lines starting
    /// with `#` are left out.
    pub(crate) fn from_text(text: &str) -> Result<Tunes, RtttlError> {
        let mut tunes: Vec<(String, Arc<Tune>)> = Vec::new();
        let limits = Limits {
            max_notes: MAX_NOTES,
            max_tune_s: 3600,
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| err(format!("tunes line {}: {e}", n + 1));
            let r = parse(line, limits).map_err(|e| at(e.0))?;
            let good = !r.name.is_empty()
                && r.name.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                });
            if !good || r.name == "on" || r.name == "off" {
                return Err(at(format!(
                    "the name {:?} is not a-z, 0-9, _ and -, or is ON/OFF",
                    r.name
                )));
            }
            if tunes.iter().any(|(name, _)| *name == r.name) {
                return Err(at(format!("{:?} is there twice", r.name)));
            }
            tunes.push((r.name.clone(), Arc::new(r.tune())));
        }
        Ok(Tunes { tunes })
    }

    /// The tune called `name` in any case, with its name as the file spells it.
    pub fn find(&self, name: &str) -> Option<(&str, &Arc<Tune>)> {
        self.tunes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, t)| (n.as_str(), t))
    }

    /// Every name, in the file's order.
    pub fn names(&self) -> Vec<&str> {
        self.tunes.iter().map(|(n, _)| n.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Rtttl {
        parse(text, Limits::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match parse(text, Limits::default()) {
            Ok(r) => panic!("{text} accepted: {r:?}"),
            Err(e) => e.0,
        }
    }

    /// (start ms, length ms, Hz rounded) of each note.
    fn notes(r: &Rtttl) -> Vec<(u64, u64, Option<u32>)> {
        r.notes
            .iter()
            .map(|(s, e, hz)| (s / 1000, (e - s) / 1000, hz.map(|h| h.round() as u32)))
            .collect()
    }

    #[test]
    fn the_scale_in_scientific_pitch() {
        let r = ok("scale:d=4,o=5,b=120:c,d,e,f,g,a,b,c6");
        assert_eq!(r.name, "scale");
        let hz: Vec<u32> = notes(&r).iter().filter_map(|n| n.2).collect();
        assert_eq!(hz, vec![523, 587, 659, 698, 784, 880, 988, 1047]);
        // A quarter note at 120 beats a minute: 500 ms, one after another.
        let starts: Vec<u64> = notes(&r).iter().map(|n| n.0).collect();
        assert_eq!(starts, vec![0, 500, 1000, 1500, 2000, 2500, 3000, 3500]);
        assert_eq!(r.length_us(), 4_000_000);
        assert!((pitch(4, 9) - 440.0).abs() < 1e-9, "A4 is 440 Hz");
    }

    #[test]
    fn durations_dots_sharps_octaves_and_pauses() {
        let r = ok("x:d=8,o=4,b=60:2a,a#,8p,4c5.,c#.6,16h,32g.,1e");
        assert_eq!(
            notes(&r),
            vec![
                (0, 2000, Some(440)),    // a half note at 60 bpm: 2 s
                (2000, 500, Some(466)),  // the default eighth, sharp
                (2500, 500, None),       // a pause
                (3000, 1500, Some(523)), // a dotted quarter, octave 5, dot after it
                (4500, 750, Some(1109)), // dot before the octave
                (5250, 250, Some(494)),  // h is b
                (5500, 187, Some(392)),  // a dotted 32nd: 187.5 ms
                (5687, 4000, Some(330)), // a whole note
            ]
        );
        assert_eq!(r.length_us(), 9_687_500, "exact: sums never round");
    }

    #[test]
    fn defaults_in_any_order_any_case_or_absent() {
        let a = ok("a:b=120,o=5,d=8:c");
        let b = ok("b: D=8 , O=5, B=120 : C ");
        assert_eq!(a.notes, b.notes);
        assert_eq!(b.name, "b");
        // None: d=4, o=6, b=63.
        let none = ok("n::a");
        assert_eq!(notes(&none), vec![(0, 952, Some(1760))]);
        // Only some.
        assert_eq!(notes(&ok(":b=240:a")), vec![(0, 250, Some(1760))]);
        assert_eq!(ok("t::c,d,").notes.len(), 2, "a comma at the end");
    }

    #[test]
    fn many_notes_keep_exact_starts() {
        // 63 beats a minute: a 16th note is 238.095… ms. Note 600 starts
        // at 600 × 15/63 s (142.857142 s), not at 600 × 238 ms (142.8 s).
        let text = format!("long:d=16:{}", vec!["c"; 601].join(","));
        let r = ok(&text);
        assert_eq!(r.notes[600].0, 600 * 4 * 3_750_000 / 63);
        assert_eq!(r.notes[600].0, 142_857_142);
    }

    #[test]
    fn limits_and_errors_say_the_limit_and_the_value() {
        for (text, says) in [
            (
                "x:d=4,o=5,b=1000:c",
                "the tempo b=1000; a tempo is 25 to 900 beats a minute",
            ),
            ("x:b=10:c", "b=10; a tempo is 25 to 900"),
            ("x:o=9:c", "the default octave o=9; an octave is 3 to 8"),
            (
                "x:d=3:c",
                "the default duration d=3; a duration is 1, 2, 4, 8, 16 or 32",
            ),
            (
                "x::c9",
                "note 1 (\"c9\"): the octave 9; an octave is 3 to 8",
            ),
            (
                "x::c,d2",
                "note 2 (\"d2\"): the octave 2; an octave is 3 to 8",
            ),
            (
                "x::64c",
                "note 1 (\"64c\"): the duration 64; a duration is 1, 2, 4, 8, 16 or 32",
            ),
            ("x::c,x", "note 2 (\"x\"): not a note"),
            ("x::c..", "two dots"),
            ("x::c.5.", "two dots"),
            ("x::p#", "a pause cannot be sharp"),
            ("x::c#b", "\"b\" after the note"),
            ("x::8", "a duration without a note"),
            ("x::c,,d", "note 2 is empty"),
            ("x::", "the tune has no notes"),
            ("x:d=4,d=8:c", "the default d is given twice"),
            ("x:l=2:c", "the default \"l\" is unknown"),
            ("x:d:c", "is not key=value"),
            ("x:d=x:c", "d=x is not a whole number"),
            ("x:d=4,,b=9:c", "an empty entry"),
            ("just a name", "is not RTTTL: it is name:defaults:notes"),
            ("x:c", "is not RTTTL"),
        ] {
            let e = refused(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let many = format!("x::{}", vec!["32c"; 1001].join(","));
        assert_eq!(refused(&many), "the tune has 1001 notes; the most is 1000");
        // 400 whole notes at 60 beats a minute: 1600 s.
        let long = format!("x:b=60:{}", vec!["1c"; 400].join(","));
        assert_eq!(
            refused(&long),
            "the tune lasts 1600.0 s; the most is 300 s (buzzer.max_tune_s)"
        );
        let short = Limits {
            max_notes: 2,
            max_tune_s: 1,
        };
        assert!(parse("x::c,c,c", short)
            .unwrap_err()
            .0
            .contains("3 notes; the most is 2"));
        assert!(parse("x:b=60:1c", short)
            .unwrap_err()
            .0
            .contains("4.0 s; the most is 1 s"));
        // Long input is quoted clipped.
        let e = refused(&format!("x::{}", "z".repeat(500)));
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator: no dependency, the same run each time.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "abcdefghpABCDEFGHP0123456789#.,:= odb\u{e9}\u{1F3B5}\t-x"
            .chars()
            .collect();
        let mut accepted = 0;
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if round % 3 == 0 {
                s = format!("t:d=8,o=5,b=120:{s}");
            }
            if let Ok(r) = parse(&s, Limits::default()) {
                accepted += 1;
                let t = r.tune();
                assert!(t.steps().windows(2).all(|w| w[0].at_us < w[1].at_us), "{s}");
                assert!(t
                    .steps()
                    .iter()
                    .all(|st| st.at_us < t.length_us() || st.at_us == 0));
            }
        }
        assert!(accepted > 20, "some of it is RTTTL: {accepted}");
        // And raw bytes, read as text where they are.
        for _ in 0..5_000 {
            let bytes: Vec<u8> = (0..(next() % 48)).map(|_| next() as u8).collect();
            let _ = parse(&String::from_utf8_lossy(&bytes), Limits::default());
        }
    }

    #[test]
    fn the_shipped_tunes_parse_and_are_short() {
        let t = Tunes::builtin().expect("tunes/tunes.rtttl is valid");
        let names = t.names();
        for name in ["beep", "chime", "doorbell", "alarm", "scale"] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        for name in &names {
            let (_, tune) = t.find(name).unwrap();
            assert!(tune.length().as_secs() < 10, "{name} is short");
        }
        assert_eq!(t.find("Chime").map(|(n, _)| n), Some("chime"));
        assert!(t.find("nope").is_none());
    }

    #[test]
    fn a_tunes_file_is_checked_line_by_line() {
        let t = Tunes::from_text("# a comment\n\n  a::c\nb::d # not a comment\n");
        assert!(t.unwrap_err().0.starts_with("tunes line 4: note 1"));
        let t = Tunes::from_text("a::c\n# c# is sharp\nb:d=8:c#\n").unwrap();
        assert_eq!(t.names(), vec!["a", "b"]);
        for bad in ["a::c\na::d", "A::c", "::c", "off::c", "a b::c"] {
            assert!(Tunes::from_text(bad).is_err(), "{bad}");
        }
    }
}
