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
    ttl_s: Option<serde_json::Value>,
}

/// The longest `ttl_s`: a week.
pub(crate) const MAX_TTL_S: u64 = 7 * 24 * 3600;

/// A message as parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    /// The text, trimmed, not empty.
    pub text: String,
    /// The sender, if given.
    pub from: Option<String>,
    /// How long it is shown before the clock comes back, if it expires.
    pub ttl: Option<std::time::Duration>,
}

/// A message: plain text, or JSON `{"text": ..., "from": ..., "ttl_s": ...}`.
pub(crate) fn parse_message(payload: &str, max_chars: usize) -> Result<Message, CommandError> {
    let (text, from, ttl) = if payload.trim_start().starts_with('{') {
        let j: JsonMessage = serde_json::from_str(payload).map_err(json_error)?;
        let ttl = match j.ttl_s {
            None => None,
            Some(v) => match v.as_u64() {
                Some(s) if (1..=MAX_TTL_S).contains(&s) => Some(std::time::Duration::from_secs(s)),
                _ => {
                    return Err(CommandError::BadPayload(format!(
                        "\"ttl_s\" is {}; a message is shown for 1 to {MAX_TTL_S} whole seconds (a week) before the clock comes back",
                        clip(&v.to_string(), 24)
                    )))
                }
            },
        };
        (j.text, j.from, ttl)
    } else {
        (payload.to_string(), None, None)
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
    Ok(Message { text, from, ttl })
}

/// `display/clock/set`: ON or OFF.
pub(crate) fn parse_clock(payload: &[u8]) -> Result<bool, CommandError> {
    let p = text(payload)?.trim();
    on_off(p).ok_or_else(|| CommandError::BadPayload(format!("{:?} is not ON or OFF", clip(p, 32))))
}
