//! The e-paper message board: a message or the minute clock, drawn on the
//! panel by a worker of its own.

pub(crate) mod board;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod display;
pub mod render;

use serde_json::json;

use crate::config::DisplayConfig;
use crate::mqtt::topic::{state, Verb};
use crate::parts::Entity;

/// The longest text Home Assistant's text entity holds.
pub(crate) const HA_TEXT_MAX: usize = 255;

/// The board's Home Assistant entities: the message as a text, the minute
/// clock as a timestamp sensor.
pub(crate) fn entities(display: &DisplayConfig) -> Vec<Entity> {
    vec![
        Entity {
            component: "text",
            object: "message".into(),
            name: "Message".into(),
            enabled: display.enabled,
            command: Some((Verb::Message, "")),
            state: Some(state::DISPLAY.into()),
            fields: json!({
                "value_template": "{{ value_json.text if value_json.text is not none else '' }}",
                "min": 0,
                "max": display.max_message_chars.min(HA_TEXT_MAX),
                "mode": "text",
            }),
        },
        Entity {
            component: "sensor",
            object: "clock".into(),
            name: "Clock".into(),
            enabled: display.enabled,
            command: None,
            state: Some(state::CLOCK_TICK.into()),
            fields: json!({
                "value_template": "{{ value_json.time }}",
                "device_class": "timestamp",
            }),
        },
    ]
}
