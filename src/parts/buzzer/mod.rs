//! The buzzer: on, off, and beeps of a given length.

pub(crate) mod command;
pub(crate) mod config;
mod device;

pub use device::*;

use serde_json::json;

use crate::mqtt::topic::{state, Verb};
use crate::parts::Entity;

/// The buzzer's Home Assistant entity: a switch.
pub fn entity(enabled: bool) -> Entity {
    Entity {
        component: "switch",
        object: "buzzer".into(),
        name: "Buzzer".into(),
        enabled,
        command: Some((Verb::Buzzer, "")),
        state: Some(state::BUZZER.into()),
        fields: json!({
            "payload_on": "ON",
            "payload_off": "OFF",
        }),
    }
}
