//! The board's commands: a message (`display/message/set`) and the clock
//! on or off (`display/clock/set`).

use serde::Deserialize;

use crate::parts::input::{json_error, on_off, text, CommandError};
use crate::quote::clip;

/// Longest sender name accepted, in characters.
pub(crate) const MAX_FROM_CHARS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMessage {
    text: String,
    from: Option<String>,
}

/// A message: plain text, or JSON `{"text": ..., "from": ...}`.
pub(crate) fn parse_message(
    payload: &str,
    max_chars: usize,
) -> Result<(String, Option<String>), CommandError> {
    let (text, from) = if payload.trim_start().starts_with('{') {
        let j: JsonMessage = serde_json::from_str(payload).map_err(json_error)?;
        (j.text, j.from)
    } else {
        (payload.to_string(), None)
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(CommandError::BadPayload("the message is empty".into()));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(CommandError::BadPayload(format!(
            "the message has {n} characters; the most this board takes is {max_chars}"
        )));
    }
    let from = from.map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
    if let Some(f) = &from {
        if f.chars().count() > MAX_FROM_CHARS || f.chars().any(char::is_control) {
            return Err(CommandError::BadPayload(format!(
                "\"from\" is at most {MAX_FROM_CHARS} characters on one line"
            )));
        }
    }
    Ok((text, from))
}

/// `display/clock/set`: ON or OFF.
pub(crate) fn parse_clock(payload: &[u8]) -> Result<bool, CommandError> {
    let p = text(payload)?.trim();
    on_off(p).ok_or_else(|| CommandError::BadPayload(format!("{:?} is not ON or OFF", clip(p, 32))))
}
