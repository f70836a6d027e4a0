//! What every part's command parser shares: the error a refused command
//! gets, and readers for the payload forms (text, ON/OFF, JSON).

use crate::quote::{clip, MAX_ECHO};

/// Largest command payload accepted, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The topic is below `<base>` and ends in `/set`, but names nothing known.
    #[error("unknown command topic; known commands: {known}")]
    UnknownTopic {
        /// The commands that exist on this device.
        known: String,
    },
    /// The part exists in the product but is disabled in this device's config.
    #[error("{0} is disabled in this device's configuration")]
    Disabled(String),
    /// The payload is not UTF-8 text.
    #[error("the payload is not valid UTF-8 text")]
    NotUtf8,
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("the payload is {0} bytes; the most a command takes is {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// The payload could not be understood.
    #[error("{0}")]
    BadPayload(String),
}

/// The payload as text.
impl CommandError {
    /// The hardware refused a command.
    pub(crate) fn refused(e: crate::hardware::HardwareError) -> CommandError {
        CommandError::BadPayload(format!("the hardware refused it: {e}"))
    }
}

pub(crate) fn text(payload: &[u8]) -> Result<&str, CommandError> {
    std::str::from_utf8(payload).map_err(|_| CommandError::NotUtf8)
}

/// `ON` or `OFF`, in any case.
pub(crate) fn on_off(s: &str) -> Option<bool> {
    match s {
        s if s.eq_ignore_ascii_case("on") => Some(true),
        s if s.eq_ignore_ascii_case("off") => Some(false),
        _ => None,
    }
}

/// A JSON light's `"state"`: `ON`, `OFF` or absent.
pub(crate) fn json_state(state: Option<&str>) -> Result<Option<bool>, CommandError> {
    state
        .map(|s| {
            on_off(s).ok_or_else(|| {
                CommandError::BadPayload(format!(
                    "\"state\" is {:?}; it is \"ON\" or \"OFF\"",
                    clip(s, 16)
                ))
            })
        })
        .transpose()
}

pub(crate) fn json_error(e: serde_json::Error) -> CommandError {
    CommandError::BadPayload(format!(
        "the JSON could not be read: {}",
        clip_quoted(&e.to_string())
    ))
}

/// A serde error message with the input it quotes (`` `name` `` for fields,
/// `"text"` for strings) clipped to [`MAX_ECHO`] characters a piece, and the
/// whole to twice that, in case a name holds a quote mark.
pub(crate) fn clip_quoted(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = &rest[open..=open];
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        let close = if quote == "`" {
            body.find('`')
        } else {
            // A Debug-quoted string: `\"` and `\\` are inside it.
            let mut escaped = false;
            body.char_indices().find_map(|(i, c)| match (escaped, c) {
                (false, '"') => Some(i),
                (false, '\\') => {
                    escaped = true;
                    None
                }
                _ => {
                    escaped = false;
                    None
                }
            })
        };
        let (inside, after) = match close {
            Some(c) => (&body[..c], &body[c..]),
            None => (body, ""),
        };
        out.push_str(&clip(inside, MAX_ECHO));
        match after.get(..1) {
            Some(q) => {
                out.push_str(q);
                rest = &after[1..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    clip(&out, 2 * MAX_ECHO).into_owned()
}

/// The longest `flash` accepted, in seconds.
pub(crate) const MAX_FLASH_S: f64 = 60.0;
/// The longest `transition` accepted, in seconds.
pub(crate) const MAX_TRANSITION_S: f64 = 3600.0;

/// A Home Assistant light's `flash`: the seconds it flashes for (Home
/// Assistant sends its `flash_time_short` or `flash_time_long`, 2 and 10 by
/// default), or `short` / `long`.
pub(crate) fn flash(v: &serde_json::Value) -> Result<std::time::Duration, CommandError> {
    let s = match v.as_str() {
        Some("short") => Some(2.0),
        Some("long") => Some(10.0),
        _ => v.as_f64(),
    };
    match s {
        Some(s) if s > 0.0 && s <= MAX_FLASH_S => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(CommandError::BadPayload(format!(
            "\"flash\" is {}; it is \"short\", \"long\" or seconds, more than 0 and up to {MAX_FLASH_S}",
            clip(&v.to_string(), 24)
        ))),
    }
}

/// A Home Assistant light's `transition`: seconds, 0 up to [`MAX_TRANSITION_S`].
pub(crate) fn transition(v: &serde_json::Value) -> Result<std::time::Duration, CommandError> {
    match v.as_f64() {
        Some(s) if (0.0..=MAX_TRANSITION_S).contains(&s) => {
            Ok(std::time::Duration::from_secs_f64(s))
        }
        _ => Err(CommandError::BadPayload(format!(
            "\"transition\" is {}; it is seconds from 0 to {MAX_TRANSITION_S}",
            clip(&v.to_string(), 24)
        ))),
    }
}
