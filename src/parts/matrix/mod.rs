//! The 5×5 LED matrix: its frame type, its pattern language and the engine
//! that plays a pattern on the outputs.

pub(crate) mod command;
pub(crate) mod config;
pub mod engine;
mod frame;
pub mod pattern;

pub use frame::Frame;

use serde_json::json;

use crate::mqtt::topic::{state, Verb};
use crate::parts::Entity;

/// The matrix's Home Assistant entity: a JSON light whose effects are the
/// named patterns.
pub fn entity(enabled: bool, effects: &[&str]) -> Entity {
    Entity {
        component: "light",
        object: "matrix".into(),
        name: "Matrix".into(),
        enabled,
        command: Some((Verb::Matrix, "")),
        state: Some(state::MATRIX.into()),
        fields: json!({
            "schema": "json",
            "effect": true,
            "effect_list": effects,
            "color_mode": true,
            "supported_color_modes": ["onoff"],
        }),
    }
}
