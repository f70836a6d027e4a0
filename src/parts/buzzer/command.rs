//! The buzzer's command, `buzzer/set`: ON, OFF, a beep or a pattern of
//! beeps, an RTTTL tune, or the name of a tune shipped with the agent; and
//! Home Assistant's siren JSON.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::rtttl::{self, Tunes, MAX_NOTES};
use super::tune::{Sound, Tune};
use crate::parts::input::{json_error, json_state, on_off, CommandError};
use crate::quote::clip;

/// The most beeps a pattern has (`count`).
pub(crate) const MAX_COUNT: u64 = 100;
/// The tones a pattern's `tone_hz` may ask for, in Hz.
pub(crate) const TONE_HZ: std::ops::RangeInclusive<f64> = 20.0..=20_000.0;

/// What the buzzer should do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BuzzerSet {
    /// Sound until OFF.
    On,
    /// Silence.
    Off,
    /// Sound for this many milliseconds.
    Beep(u64),
    /// Play a tune (a pattern of beeps, an RTTTL, a shipped tune).
    Play(Play),
}

/// A tune to play, and the shipped tune's name when it is one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Play {
    /// What to play.
    pub tune: Arc<Tune>,
    /// The shipped tune it is (Home Assistant's tone), if it is one.
    pub tone: Option<String>,
}

/// The limits of the buzzer's commands, from `[buzzer]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `buzzer.max_beep_ms`: the longest beep and pause.
    pub max_beep_ms: u64,
    /// `buzzer.max_tune_s`: the longest tune or pattern.
    pub max_tune_s: u64,
}

impl From<&super::config::BuzzerConfig> for Limits {
    fn from(c: &super::config::BuzzerConfig) -> Self {
        Limits {
            max_beep_ms: c.max_beep_ms,
            max_tune_s: c.max_tune_s,
        }
    }
}

/// `{"beep_ms": 100, "count": 3, "pause_ms": 100, "tone_hz": 2000}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBeep {
    beep_ms: Value,
    count: Option<Value>,
    pause_ms: Option<Value>,
    tone_hz: Option<Value>,
}

/// `{"rtttl": "scale:d=4,o=5,b=120:c,d,e"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRtttl {
    rtttl: Value,
}

/// Home Assistant's siren: `{"state": "ON", "tone": "chime", "duration":
/// seconds}`; a volume is taken and not used (the buzzer has one).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSiren {
    state: Option<String>,
    duration: Option<Value>,
    tone: Option<Value>,
    #[allow(dead_code)]
    volume_level: Option<Value>,
}

/// A JSON value as an error message quotes it.
fn quoted(v: &Value) -> String {
    clip(&v.to_string(), 24).into_owned()
}

/// A beep of `ms`, if it is from 1 to `max_ms`; `what` is the value as given.
fn beep(ms: Option<u64>, max_ms: u64, what: &str) -> Result<u64, CommandError> {
    match ms {
        Some(ms) if (1..=max_ms).contains(&ms) => Ok(ms),
        _ => Err(CommandError::BadPayload(format!(
            "{what}; a beep lasts from 1 to {max_ms} ms (buzzer.max_beep_ms)"
        ))),
    }
}

/// The error for something that lasts `us`, longer than `max_tune_s`.
fn too_long(what: &str, us: u64, max_tune_s: u64) -> CommandError {
    CommandError::BadPayload(format!(
        "{what} lasts {:.1} s; the most is {max_tune_s} s (buzzer.max_tune_s)",
        us as f64 / 1e6
    ))
}

/// A pattern of beeps.
fn pattern(j: JsonBeep, limits: &Limits) -> Result<BuzzerSet, CommandError> {
    let max = limits.max_beep_ms;
    let what = format!("\"beep_ms\" is {}", quoted(&j.beep_ms));
    let beep_ms = beep(j.beep_ms.as_u64(), max, &what)?;
    let count = match j.count.filter(|v| !v.is_null()) {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_COUNT).contains(&n) => n,
            _ => {
                return Err(CommandError::BadPayload(format!(
                    "\"count\" is {}; a pattern has 1 to {MAX_COUNT} beeps",
                    quoted(&v)
                )))
            }
        },
    };
    let pause_ms = match j.pause_ms.filter(|v| !v.is_null()) {
        None => beep_ms,
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => n,
            _ => {
                return Err(CommandError::BadPayload(format!(
                    "\"pause_ms\" is {}; a pause lasts from 0 to {max} ms (buzzer.max_beep_ms)",
                    quoted(&v)
                )))
            }
        },
    };
    let sound = match j.tone_hz.filter(|v| !v.is_null()) {
        None => Sound::On,
        Some(v) => match v.as_f64() {
            Some(hz) if TONE_HZ.contains(&hz) => Sound::Pitch(hz),
            _ => {
                return Err(CommandError::BadPayload(format!(
                    "\"tone_hz\" is {}; a tone is {} to {} Hz",
                    quoted(&v),
                    TONE_HZ.start(),
                    TONE_HZ.end()
                )))
            }
        },
    };
    if count == 1 && sound == Sound::On {
        return Ok(BuzzerSet::Beep(beep_ms));
    }
    let tune = Tune::beeps(beep_ms, count, pause_ms, sound);
    if tune.length_us() > limits.max_tune_s.saturating_mul(1_000_000) {
        return Err(too_long("the pattern", tune.length_us(), limits.max_tune_s));
    }
    Ok(BuzzerSet::Play(Play {
        tune: Arc::new(tune),
        tone: None,
    }))
}

/// An RTTTL tune given in the command.
fn rtttl(text: &str, limits: &Limits) -> Result<BuzzerSet, CommandError> {
    let limits = rtttl::Limits {
        max_notes: MAX_NOTES,
        max_tune_s: limits.max_tune_s,
    };
    let r = rtttl::parse(text, limits)
        .map_err(|e| CommandError::BadPayload(format!("the RTTTL tune: {e}")))?;
    Ok(BuzzerSet::Play(Play {
        tune: Arc::new(r.tune()),
        tone: None,
    }))
}

/// The shipped tune called `name`, played once or for `duration`.
fn shipped(
    name: &str,
    duration: Option<Duration>,
    limits: &Limits,
    tunes: &Tunes,
) -> Result<Option<BuzzerSet>, CommandError> {
    let Some((name, tune)) = tunes.find(name) else {
        return Ok(None);
    };
    let tune = match duration {
        Some(d) => Arc::new(tune.repeated_for(d)),
        None => Arc::clone(tune),
    };
    if tune.length_us() > limits.max_tune_s.saturating_mul(1_000_000) {
        let what = format!("the tune {name:?}");
        return Err(too_long(&what, tune.length_us(), limits.max_tune_s));
    }
    Ok(Some(BuzzerSet::Play(Play {
        tune,
        tone: Some(name.to_string()),
    })))
}

/// Home Assistant's siren: ON or OFF, a tone (a shipped tune, repeated
/// for the duration when there is one), or a beep of the duration.
fn siren(j: JsonSiren, limits: &Limits, tunes: &Tunes) -> Result<BuzzerSet, CommandError> {
    let state = json_state(j.state.as_deref())?;
    if state == Some(false) {
        return Ok(BuzzerSet::Off);
    }
    let duration = j.duration.filter(|v| !v.is_null());
    match j.tone.filter(|v| !v.is_null()) {
        Some(tone) => {
            let d = match duration {
                None => None,
                Some(v) => match v.as_f64() {
                    Some(s) if s > 0.0 && s <= limits.max_tune_s as f64 => {
                        Some(Duration::from_secs_f64(s))
                    }
                    _ => {
                        return Err(CommandError::BadPayload(format!(
                            "\"duration\" is {} s; a tone plays for more than 0 and up to {} s (buzzer.max_tune_s)",
                            quoted(&v),
                            limits.max_tune_s
                        )))
                    }
                },
            };
            let found = match tone.as_str() {
                Some(name) => shipped(name, d, limits, tunes)?,
                None => None,
            };
            found.ok_or_else(|| {
                CommandError::BadPayload(format!(
                    "\"tone\" is {}; the tones are {}",
                    quoted(&tone),
                    tunes.names().join(", ")
                ))
            })
        }
        None => match (state, duration) {
            (_, Some(d)) => {
                let ms = d
                    .as_f64()
                    .filter(|s| *s > 0.0)
                    .map(|s| (s * 1000.0).round() as u64);
                let what = format!("\"duration\" is {} s", quoted(&d));
                Ok(BuzzerSet::Beep(beep(ms, limits.max_beep_ms, &what)?))
            }
            (Some(true), None) => Ok(BuzzerSet::On),
            _ => Err(CommandError::BadPayload(
                "the JSON has none of \"state\", \"beep_ms\", \"rtttl\", \"tone\" and \"duration\""
                    .into(),
            )),
        },
    }
}

/// `ON`, `OFF`, a shipped tune's name, an RTTTL tune (as text or JSON
/// `{"rtttl": "..."}`), JSON `{"beep_ms": N}` with an optional `count`,
/// `pause_ms` and `tone_hz`, or Home Assistant's siren `{"state": "ON",
/// "tone": name, "duration": seconds}`.
pub(crate) fn parse_buzzer(
    payload: &str,
    limits: &Limits,
    tunes: &Tunes,
) -> Result<BuzzerSet, CommandError> {
    let p = payload.trim();
    if let Some(on) = on_off(p) {
        return Ok(if on { BuzzerSet::On } else { BuzzerSet::Off });
    }
    if p.starts_with('{') {
        let v: Value = serde_json::from_str(p).map_err(json_error)?;
        if v.get("beep_ms").is_some() {
            let j: JsonBeep = serde_json::from_value(v).map_err(json_error)?;
            return pattern(j, limits);
        }
        if v.get("rtttl").is_some() {
            let j: JsonRtttl = serde_json::from_value(v).map_err(json_error)?;
            let Some(text) = j.rtttl.as_str() else {
                return Err(CommandError::BadPayload(format!(
                    "\"rtttl\" is {}; it is RTTTL text, e.g. \"scale:d=4,o=5,b=120:c,d,e\"",
                    quoted(&j.rtttl)
                )));
            };
            return rtttl(text, limits);
        }
        let j: JsonSiren = serde_json::from_value(v).map_err(json_error)?;
        return siren(j, limits, tunes);
    }
    if let Some(set) = shipped(p, None, limits, tunes)? {
        return Ok(set);
    }
    if p.contains(':') {
        return rtttl(p, limits);
    }
    Err(CommandError::BadPayload(format!(
        "{:?} is not a buzzer command; send ON, OFF, a tune ({}), {{\"beep_ms\": 200}} or {{\"rtttl\": \"name:d=4,o=5,b=120:c,e,g\"}}",
        clip(p, 32),
        tunes.names().join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_beep_ms: 1000,
            max_tune_s: 60,
        }
    }

    fn tunes() -> Tunes {
        Tunes::from_text("beep:d=8,o=6,b=120:a\nalarm:d=16,o=6,b=150:a,e,8p\n").unwrap()
    }

    fn parse(p: &str) -> Result<BuzzerSet, String> {
        parse_buzzer(p, &limits(), &tunes()).map_err(|e| e.to_string())
    }

    fn play(p: &str) -> Play {
        match parse(p) {
            Ok(BuzzerSet::Play(play)) => play,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn a_pattern_of_beeps() {
        let p = play(r#"{"beep_ms": 100, "count": 3, "pause_ms": 50, "tone_hz": 2000}"#);
        assert_eq!(*p.tune, Tune::beeps(100, 3, 50, Sound::Pitch(2000.0)));
        assert_eq!(p.tone, None);
        // The pause is the beep's length unless given; the tone the buzzer's own.
        let p = play(r#"{"beep_ms": 100, "count": 2}"#);
        assert_eq!(*p.tune, Tune::beeps(100, 2, 100, Sound::On));
        // One beep is a beep, as before.
        assert_eq!(parse(r#"{"beep_ms": 200}"#), Ok(BuzzerSet::Beep(200)));
        assert_eq!(
            parse(r#"{"beep_ms": 200, "count": 1, "pause_ms": 5}"#),
            Ok(BuzzerSet::Beep(200))
        );
        let one_tone = play(r#"{"beep_ms": 200, "tone_hz": 440}"#);
        assert_eq!(
            *one_tone.tune,
            Tune::beeps(200, 1, 200, Sound::Pitch(440.0))
        );
    }

    #[test]
    fn a_pattern_out_of_its_limits_says_the_limit_and_the_value() {
        for (p, says) in [
            (
                r#"{"beep_ms": 0}"#,
                "\"beep_ms\" is 0; a beep lasts from 1 to 1000 ms (buzzer.max_beep_ms)",
            ),
            (
                r#"{"beep_ms": 1001}"#,
                "\"beep_ms\" is 1001; a beep lasts from 1 to 1000 ms",
            ),
            (
                r#"{"beep_ms": 100, "count": 0}"#,
                "\"count\" is 0; a pattern has 1 to 100 beeps",
            ),
            (
                r#"{"beep_ms": 100, "count": 101}"#,
                "\"count\" is 101; a pattern has 1 to 100 beeps",
            ),
            (r#"{"beep_ms": 100, "count": 2.5}"#, "\"count\" is 2.5"),
            (
                r#"{"beep_ms": 100, "pause_ms": 1001}"#,
                "\"pause_ms\" is 1001; a pause lasts from 0 to 1000 ms",
            ),
            (r#"{"beep_ms": 100, "pause_ms": -1}"#, "\"pause_ms\" is -1"),
            (
                r#"{"beep_ms": 100, "tone_hz": 5}"#,
                "\"tone_hz\" is 5; a tone is 20 to 20000 Hz",
            ),
            (
                r#"{"beep_ms": 100, "tone_hz": "high"}"#,
                "\"tone_hz\" is \"high\"",
            ),
            (r#"{"beep_ms": 100, "loud": true}"#, "unknown field `loud`"),
            (
                r#"{"beep_ms": 1000, "count": 100, "pause_ms": 1000}"#,
                "the pattern lasts 199.0 s; the most is 60 s (buzzer.max_tune_s)",
            ),
        ] {
            let e = parse(p).unwrap_err();
            assert!(e.contains(says), "{p}: {e}");
        }
    }

    #[test]
    fn rtttl_as_json_or_as_text() {
        let p = play(r#"{"rtttl": "scale:d=4,o=5,b=120:c,d,e"}"#);
        assert_eq!(p.tone, None);
        assert_eq!(p.tune.length(), Duration::from_millis(1500));
        assert_eq!(*play("scale:d=4,o=5,b=120:c,d,e").tune, *p.tune);
        for (p, says) in [
            (r#"{"rtttl": 5}"#, "\"rtttl\" is 5; it is RTTTL text"),
            (
                r#"{"rtttl": "x:b=9000:c"}"#,
                "the RTTTL tune: the tempo b=9000; a tempo is 25 to 900",
            ),
            (
                r#"{"rtttl": "x::c", "tone": "beep"}"#,
                "unknown field `tone`",
            ),
            (
                "x:d=1,o=5,b=25:c,c,c,c,c,c,c,c,c,c,c,c,c,c,c,c",
                "the RTTTL tune: the tune lasts 153.6 s; the most is 60 s (buzzer.max_tune_s)",
            ),
            ("x::q", "the RTTTL tune: note 1 (\"q\"): not a note"),
        ] {
            let e = parse(p).unwrap_err();
            assert!(e.contains(says), "{p}: {e}");
        }
    }

    #[test]
    fn a_shipped_tune_by_its_name_in_any_case() {
        let p = play("alarm");
        assert_eq!(p.tone.as_deref(), Some("alarm"));
        assert_eq!(p.tune.length(), Duration::from_millis(400));
        assert_eq!(play(" ALARM\n").tone.as_deref(), Some("alarm"));
        let e = parse("loud").unwrap_err();
        assert!(
            e.contains("\"loud\" is not a buzzer command") && e.contains("a tune (beep, alarm)"),
            "{e}"
        );
    }

    #[test]
    fn home_assistants_siren_with_a_tone_and_a_duration() {
        let p = play(r#"{"state": "ON", "tone": "alarm"}"#);
        assert_eq!(p.tone.as_deref(), Some("alarm"));
        assert_eq!(p.tune.length(), Duration::from_millis(400));
        // With a duration the tone repeats until it is up.
        let p = play(r#"{"state": "ON", "tone": "alarm", "duration": 2}"#);
        assert_eq!(p.tune.length(), Duration::from_secs(2));
        assert_eq!(p.tune.steps().len(), 5 * 4, "five rounds of two notes");
        assert_eq!(
            parse(r#"{"state": "OFF", "tone": "alarm"}"#),
            Ok(BuzzerSet::Off)
        );
        // HA's volume is taken and unused; no tone is a beep or ON.
        assert_eq!(
            parse(r#"{"state": "ON", "duration": 0.25, "tone": null, "volume_level": 0.5}"#),
            Ok(BuzzerSet::Beep(250))
        );
        assert_eq!(parse(r#"{"state": "ON"}"#), Ok(BuzzerSet::On));
        for (p, says) in [
            (r#"{"tone": "siren"}"#, "\"tone\" is \"siren\"; the tones are beep, alarm"),
            (r#"{"tone": 3}"#, "\"tone\" is 3; the tones are"),
            (
                r#"{"tone": "beep", "duration": 61}"#,
                "\"duration\" is 61 s; a tone plays for more than 0 and up to 60 s (buzzer.max_tune_s)",
            ),
            (r#"{"tone": "beep", "duration": 0}"#, "\"duration\" is 0 s"),
            (r#"{"state": "ON", "duration": 2}"#, "\"duration\" is 2 s; a beep lasts from 1 to 1000 ms"),
            (r#"{"state": "LOUD"}"#, "\"state\" is \"LOUD\""),
            ("{}", "the JSON has none of"),
        ] {
            let e = parse(p).unwrap_err();
            assert!(e.contains(says), "{p}: {e}");
        }
        let short = Limits {
            max_beep_ms: 1000,
            max_tune_s: 1,
        };
        let e = parse_buzzer(r#"{"tone": "alarm", "duration": 1}"#, &short, &tunes());
        assert!(e.is_ok(), "{e:?}");
        let doorbell = Tunes::from_text("doorbell:d=4,o=5,b=100:e6,2c6\n").unwrap();
        let e = parse_buzzer("doorbell", &short, &doorbell)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the tune \"doorbell\" lasts 1.8 s; the most is 1 s (buzzer.max_tune_s)"
        );
    }
}
