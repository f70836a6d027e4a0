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
    /// Keep a program under a name (`matrix/pattern/<name>/set`).
    Save {
        /// Its name.
        name: String,
        /// The program, parsed.
        program: std::sync::Arc<super::pattern::Node>,
        /// The program as JSON text, as it is kept.
        source: String,
    },
    /// Forget the saved pattern of this name (an empty payload).
    Delete(String),
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

/// `matrix/pattern/<name>/set`: a pattern program (JSON) or a frame to save
/// under `name`; empty: forget it.
pub(crate) fn parse_save(
    name: &str,
    payload: &str,
    lib: &Library,
) -> Result<MatrixSet, CommandError> {
    use super::pattern::{parse, Limits, Node};
    use super::saved::{check_name, MAX_SAVED};
    check_name(name).map_err(|e| CommandError::BadPayload(format!("{}: {e}", clip(name, 40))))?;
    if lib.is_shipped(name) {
        return Err(CommandError::BadPayload(format!(
            "{name:?} is a shipped pattern, which cannot be replaced or deleted; save yours under another name"
        )));
    }
    let exists = lib.find(name).is_some();
    let p = payload.trim();
    if p.is_empty() {
        return if exists {
            Ok(MatrixSet::Delete(name.to_string()))
        } else {
            Err(CommandError::BadPayload(format!(
                "there is no saved pattern called {name:?} to delete"
            )))
        };
    }
    if !exists && lib.saved() >= MAX_SAVED {
        return Err(CommandError::BadPayload(format!(
            "{MAX_SAVED} patterns are saved, the most there may be; delete one first (an empty payload)"
        )));
    }
    let (program, source) = if p.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(p).map_err(json_error)?;
        let program = parse(&v, Limits::default(), lib)
            .map_err(|e| CommandError::BadPayload(e.to_string()))?;
        (program, v.to_string())
    } else if p.contains('/') {
        let frame = Frame::parse(p).map_err(CommandError::BadPayload)?;
        let source = serde_json::json!({ "frame": frame.to_string() }).to_string();
        (Node::Frame(frame), source)
    } else {
        return Err(CommandError::BadPayload(format!(
            "{:?} is neither a pattern program (JSON) nor a frame like 01110/10001/10001/10001/01110",
            clip(p, 32)
        )));
    };
    Ok(MatrixSet::Save {
        name: name.to_string(),
        program: std::sync::Arc::new(program),
        source,
    })
}
