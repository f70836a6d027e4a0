//! The device's parts, each in its own home: what it does with a command,
//! written against the hardware traits only. No part knows MQTT.

pub mod button;
pub mod buzzer;
pub(crate) mod input;
pub mod leds;
pub mod matrix;
pub mod message_board;

use crate::mqtt::topic::Verb;

/// A Home Assistant entity a part offers, in the topic table's terms:
/// discovery adds the topics, the device and availability.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Home Assistant's component (`light`, `sensor`, ...).
    pub component: &'static str,
    /// The object id, unique on the device.
    pub object: String,
    /// The entity's name.
    pub name: String,
    /// Whether the part is enabled; a disabled one's entity is removed.
    pub enabled: bool,
    /// The command it takes, with the LED it names (for `led/<name>/set`).
    pub command: Option<(Verb, &'static str)>,
    /// The state topic below base it reads.
    pub state: Option<String>,
    /// The rest of its config.
    pub fields: serde_json::Value,
}
