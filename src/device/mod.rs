//! Device logic: what each part does with a command, written against the
//! hardware traits only. Nothing here knows MQTT.

pub mod board;
pub mod button;
pub mod buzzer;
pub mod display;
pub mod led;
pub mod matrix;
