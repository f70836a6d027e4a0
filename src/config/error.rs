//! A refused configuration value, said in one line.

use std::fmt;

/// A configuration that was refused, with the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {key} = {value}{source_note}: {allowed}")]
pub struct ConfigError {
    /// Dotted key, e.g. `mqtt.url`.
    pub key: String,
    /// The refused value as it was given (secrets are never shown).
    pub value: String,
    /// Where the value came from (` (in FILE)`), or empty.
    pub source_note: String,
    /// What would have been accepted.
    pub allowed: String,
}

impl ConfigError {
    pub(crate) fn new(
        key: impl Into<String>,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        ConfigError {
            key: key.into(),
            value: value.to_string(),
            source_note: String::new(),
            allowed: allowed.into(),
        }
    }
}

/// A value as an error message quotes it.
pub(crate) fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A multi-line parser message (TOML's, with a source excerpt) as one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect::<Vec<_>>()
        .join("; ")
}
