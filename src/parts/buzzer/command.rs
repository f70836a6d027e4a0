//! The buzzer's command, `buzzer/set`: ON, OFF or a beep.

use serde::Deserialize;

use crate::parts::input::{json_error, json_state, on_off, CommandError};
use crate::quote::clip;

/// What the buzzer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuzzerSet {
    /// Sound until OFF.
    On,
    /// Silence.
    Off,
    /// Sound for this many milliseconds.
    Beep(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBeep {
    beep_ms: serde_json::Value,
}

/// Home Assistant's siren: `{"state": "ON", "duration": seconds}`; a tone
/// and a volume are taken and not used (the buzzer has one of each).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSiren {
    state: Option<String>,
    duration: Option<serde_json::Value>,
    #[allow(dead_code)]
    tone: Option<serde_json::Value>,
    #[allow(dead_code)]
    volume_level: Option<serde_json::Value>,
}

/// A beep of `ms`, if it is from 1 to `max_ms`; `what` is the value as given.
fn beep(ms: Option<u64>, max_ms: u64, what: &str) -> Result<BuzzerSet, CommandError> {
    match ms {
        Some(ms) if (1..=max_ms).contains(&ms) => Ok(BuzzerSet::Beep(ms)),
        _ => Err(CommandError::BadPayload(format!(
            "{what}; a beep lasts from 1 to {max_ms} ms"
        ))),
    }
}

/// `ON`, `OFF`, JSON `{"beep_ms": N}`, or Home Assistant's siren
/// `{"state": "ON", "duration": seconds}`.
pub(crate) fn parse_buzzer(payload: &str, max_ms: u64) -> Result<BuzzerSet, CommandError> {
    let p = payload.trim();
    if let Some(on) = on_off(p) {
        return Ok(if on { BuzzerSet::On } else { BuzzerSet::Off });
    }
    if p.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(p).map_err(json_error)?;
        if v.get("beep_ms").is_none() {
            let j: JsonSiren = serde_json::from_value(v).map_err(json_error)?;
            return match (json_state(j.state.as_deref())?, j.duration) {
                (Some(false), _) => Ok(BuzzerSet::Off),
                (_, Some(d)) => {
                    let ms = d
                        .as_f64()
                        .filter(|s| *s > 0.0)
                        .map(|s| (s * 1000.0).round() as u64);
                    let what = format!("\"duration\" is {} s", clip(&d.to_string(), 24));
                    beep(ms, max_ms, &what)
                }
                (Some(true), None) => Ok(BuzzerSet::On),
                (None, None) => Err(CommandError::BadPayload(
                    "the JSON has neither \"state\" nor \"beep_ms\" nor \"duration\"".into(),
                )),
            };
        }
        let j: JsonBeep = serde_json::from_value(v).map_err(json_error)?;
        let what = format!("\"beep_ms\" is {}", clip(&j.beep_ms.to_string(), 24));
        return beep(j.beep_ms.as_u64(), max_ms, &what);
    }
    Err(CommandError::BadPayload(format!(
        "{:?} is not a buzzer command; send ON, OFF or {{\"beep_ms\": 200}}",
        clip(p, 32)
    )))
}
