//! The two PWM LEDs and the tilt that drives them.

pub(crate) mod command;
pub(crate) mod config;
mod device;

pub use device::*;

use serde_json::json;

use crate::mqtt::topic::{state, Verb, LED_NAMES};
use crate::parts::Entity;

/// The LEDs' Home Assistant entities: a dimmable JSON light each.
pub(crate) fn entities(enabled: bool) -> Vec<Entity> {
    LED_NAMES
        .iter()
        .map(|&name| Entity {
            component: "light",
            object: format!("led_{name}"),
            name: format!("LED {name}"),
            enabled,
            command: Some((Verb::Led, name)),
            state: Some(state::led(name)),
            fields: json!({
                "schema": "json",
                "brightness": true,
                "brightness_scale": 255,
                // Home Assistant before 2024.4 wants both; later ones ignore color_mode.
                "color_mode": true,
                "supported_color_modes": ["brightness"],
            }),
        })
        .collect()
}
