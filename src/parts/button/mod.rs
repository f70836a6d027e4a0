//! The button: debounced presses, double and long presses.

pub(crate) mod config;
mod device;

pub use device::*;

use serde_json::json;

use crate::mqtt::topic::state;
use crate::parts::Entity;

/// The button's Home Assistant entity: an event with its press kinds.
pub fn entity(enabled: bool) -> Entity {
    Entity {
        component: "event",
        object: "button".into(),
        name: "Button".into(),
        enabled,
        command: None,
        state: Some(state::BUTTON_EVENT.into()),
        fields: json!({
            "event_types": ButtonEvent::ALL.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
            "device_class": "button",
        }),
    }
}
