//! The device's parts, each in its own home: what it does with a command,
//! written against the hardware traits only. No part knows MQTT.

pub mod button;
pub mod buzzer;
pub mod input;
pub mod leds;
pub mod matrix;
pub mod message_board;
