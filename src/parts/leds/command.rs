//! The LEDs' commands: `led/<name>/set` in Home Assistant's light terms,
//! and `tilt/set` in three payload forms.

use std::time::Duration;

use serde::Deserialize;

use crate::parts::input::{flash, json_error, json_state, on_off, text, transition, CommandError};
use crate::quote::clip;

/// A gravity vector, each component within ±100 (clamped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tilt {
    /// Left/right.
    pub x: f64,
    /// Forward/back: drives the LEDs.
    pub y: f64,
    /// Up/down.
    pub z: f64,
}

impl Tilt {
    /// Largest magnitude of a component; larger values are clamped to it.
    pub const LIMIT: f64 = 100.0;

    pub(crate) fn new(x: f64, y: f64, z: f64) -> Result<Tilt, CommandError> {
        for (name, v) in [("x", x), ("y", y), ("z", z)] {
            if !v.is_finite() {
                return Err(CommandError::BadPayload(format!(
                    "{name} is {v}; tilt values are finite numbers"
                )));
            }
        }
        let c = |v: f64| v.clamp(-Self::LIMIT, Self::LIMIT);
        Ok(Tilt {
            x: c(x),
            y: c(y),
            z: c(z),
        })
    }
}

/// A change to one PWM LED, in Home Assistant's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedSet {
    /// `Some(true)` = ON, `Some(false)` = OFF, `None` = leave as is.
    pub state: Option<bool>,
    /// New brightness 0..=255, when given.
    pub brightness: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTilt {
    x: f64,
    y: f64,
    z: f64,
}

/// A tilt: `"x y z"`, JSON `{"x":..,"y":..,"z":..}`, or 12 bytes of three
/// little-endian f32. A 12-byte payload that is not printable text is binary.
pub(crate) fn parse_tilt(payload: &[u8]) -> Result<Tilt, CommandError> {
    let printable = payload
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || b.is_ascii_whitespace());
    if payload.len() == 12 && !printable {
        let f = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&payload[i * 4..i * 4 + 4]);
            f64::from(f32::from_le_bytes(b))
        };
        return Tilt::new(f(0), f(1), f(2));
    }
    let text = text(payload)?.trim();
    if text.starts_with('{') {
        let j: JsonTilt = serde_json::from_str(text).map_err(json_error)?;
        return Tilt::new(j.x, j.y, j.z);
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 3 {
        return Err(CommandError::BadPayload(format!(
            "a tilt is three numbers \"x y z\", JSON {{\"x\":..,\"y\":..,\"z\":..}} or 12 bytes of little-endian f32; this has {} value(s) in {} bytes",
            parts.len(),
            payload.len()
        )));
    }
    let mut v = [0.0; 3];
    for (slot, p) in v.iter_mut().zip(&parts) {
        *slot = p
            .parse::<f64>()
            .map_err(|_| CommandError::BadPayload(format!("{:?} is not a number", clip(p, 24))))?;
    }
    Tilt::new(v[0], v[1], v[2])
}

/// The Home Assistant JSON light schema, as far as a dimmable light uses it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLight {
    state: Option<String>,
    brightness: Option<serde_json::Value>,
    transition: Option<serde_json::Value>,
    flash: Option<serde_json::Value>,
}

/// How an LED gets to its new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Motion {
    /// Fading over this long (`transition`).
    Fade(Duration),
    /// Flashing for this long, then back (`flash`).
    Flash(Duration),
}

/// `ON`, `OFF`, a percentage, or a Home Assistant JSON light, with the
/// motion it asks for (`transition`, `flash`).
pub(crate) fn parse_led(payload: &str) -> Result<(LedSet, Option<Motion>), CommandError> {
    let p = payload.trim();
    if let Some(on) = on_off(p) {
        let set = LedSet {
            state: Some(on),
            brightness: None,
        };
        return Ok((set, None));
    }
    if p.starts_with('{') {
        let j: JsonLight = serde_json::from_str(p).map_err(json_error)?;
        let motion = match (&j.flash, &j.transition) {
            (Some(f), _) => Some(Motion::Flash(flash(f)?)),
            (None, Some(t)) => {
                Some(Motion::Fade(transition(t)?)).filter(|m| *m != Motion::Fade(Duration::ZERO))
            }
            (None, None) => None,
        };
        let state = json_state(j.state.as_deref())?;
        let brightness = match j.brightness {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|b| *b <= 255)
                    .map(|b| b as u8)
                    .ok_or_else(|| {
                        CommandError::BadPayload(format!(
                            "\"brightness\" is {}; it is a whole number from 0 to 255",
                            clip(&v.to_string(), 24)
                        ))
                    })?,
            ),
        };
        if state.is_none() && brightness.is_none() && !matches!(motion, Some(Motion::Flash(_))) {
            return Err(CommandError::BadPayload(
                "the JSON has neither \"state\" nor \"brightness\"".into(),
            ));
        }
        return Ok((LedSet { state, brightness }, motion));
    }
    match p.parse::<f64>() {
        Ok(pct) if pct.is_finite() && (0.0..=100.0).contains(&pct) => {
            let b = (pct * 255.0 / 100.0).round() as u8;
            Ok((LedSet { state: Some(b > 0), brightness: Some(b) }, None))
        }
        _ => Err(CommandError::BadPayload(format!(
            "{:?} is not a LED command; send ON, OFF, a percentage 0..100, or JSON {{\"state\": \"ON\", \"brightness\": 0..255}}",
            clip(p, 32)
        ))),
    }
}
