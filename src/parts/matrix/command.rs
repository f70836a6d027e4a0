//! The matrix's command, `matrix/set`: ON/OFF, a frame, a pattern name, a
//! Home Assistant JSON light, or a pattern program.

use serde::Deserialize;

use super::pattern::Library;
use super::Frame;
use crate::parts::input::{flash, json_error, json_state, on_off, transition, CommandError};
use crate::quote::clip;

/// A change to the LED matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MatrixSet {
    /// Run a program (a frame, a named pattern, or a JSON program).
    Run {
        /// The program.
        program: std::sync::Arc<super::pattern::Node>,
        /// The pattern's name, when it is a named one.
        effect: Option<String>,
    },
    /// Stop and turn every LED off.
    Off,
    /// Turn the matrix back on with its last program.
    On,
    /// Blink every LED for this long, then show what was shown before.
    Flash(std::time::Duration),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLightMatrix {
    state: Option<String>,
    effect: Option<String>,
    flash: Option<serde_json::Value>,
    /// Home Assistant offers it on every JSON light; the matrix has no
    /// brightness to fade, so it changes at once.
    transition: Option<serde_json::Value>,
}

pub(crate) fn named(name: &str, lib: &Library) -> Result<MatrixSet, CommandError> {
    lib.find(name)
        .map(|(name, p)| MatrixSet::Run {
            program: p.clone(),
            effect: Some(name.to_string()),
        })
        .ok_or_else(|| {
            CommandError::BadPayload(format!(
                "there is no pattern called {:?}; the patterns are {}",
                clip(name, 32),
                lib.names().join(", ")
            ))
        })
}

/// `matrix/set`: `ON`/`OFF`, a frame, a pattern name, a Home Assistant JSON
/// light (`state`, `effect`), or a JSON pattern program.
pub(crate) fn parse_matrix(payload: &str, lib: &Library) -> Result<MatrixSet, CommandError> {
    use super::pattern::{parse, Limits, Node};
    let p = payload.trim();
    if p.is_empty() {
        return Err(CommandError::BadPayload(
            "the payload is empty; send a frame like 01110/10001/10001/10001/01110, a pattern name, ON, OFF or a program"
                .into(),
        ));
    }
    if let Some(on) = on_off(p) {
        return Ok(if on { MatrixSet::On } else { MatrixSet::Off });
    }
    if p.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(p).map_err(json_error)?;
        let is_light = v.as_object().is_some_and(|o| {
            ["state", "effect", "flash", "transition"]
                .iter()
                .any(|k| o.contains_key(*k))
        });
        if is_light {
            let j: JsonLightMatrix = serde_json::from_value(v).map_err(json_error)?;
            let state = json_state(j.state.as_deref())?;
            if let Some(t) = &j.transition {
                transition(t)?;
            }
            if let Some(f) = &j.flash {
                return Ok(MatrixSet::Flash(flash(f)?));
            }
            return match (state, j.effect) {
                (Some(false), _) => Ok(MatrixSet::Off),
                // Home Assistant's "no effect" while the light is on: lit,
                // without a pattern (the `off` pattern would show a light
                // that says OFF).
                (_, Some(effect)) if effect == "off" => Ok(MatrixSet::Run {
                    program: std::sync::Arc::new(Node::Frame(Frame::ALL)),
                    effect: None,
                }),
                (_, Some(effect)) => named(&effect, lib),
                _ => Ok(MatrixSet::On),
            };
        }
        let program = parse(&v, Limits::default(), lib)
            .map_err(|e| CommandError::BadPayload(e.to_string()))?;
        return Ok(MatrixSet::Run {
            program: std::sync::Arc::new(program),
            effect: None,
        });
    }
    if p.contains('/') {
        let frame = Frame::parse(p).map_err(CommandError::BadPayload)?;
        return Ok(MatrixSet::Run {
            program: std::sync::Arc::new(Node::Frame(frame)),
            effect: None,
        });
    }
    named(p, lib)
}
