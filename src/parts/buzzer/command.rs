//! The buzzer's command, `buzzer/set`: ON, OFF or a beep.

use serde::Deserialize;

use crate::parts::input::{json_error, on_off, CommandError};
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

/// `ON`, `OFF`, or JSON `{"beep_ms": N}`.
pub(crate) fn parse_buzzer(payload: &str, max_ms: u64) -> Result<BuzzerSet, CommandError> {
    let p = payload.trim();
    if let Some(on) = on_off(p) {
        return Ok(if on { BuzzerSet::On } else { BuzzerSet::Off });
    }
    if p.starts_with('{') {
        let j: JsonBeep = serde_json::from_str(p).map_err(json_error)?;
        return match j.beep_ms.as_u64() {
            Some(ms) if (1..=max_ms).contains(&ms) => Ok(BuzzerSet::Beep(ms)),
            _ => Err(CommandError::BadPayload(format!(
                "\"beep_ms\" is {}; it is a whole number of milliseconds from 1 to {max_ms}",
                clip(&j.beep_ms.to_string(), 24)
            ))),
        };
    }
    Err(CommandError::BadPayload(format!(
        "{:?} is not a buzzer command; send ON, OFF or {{\"beep_ms\": 200}}",
        clip(p, 32)
    )))
}
