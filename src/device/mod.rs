//! Device logic: what each part does with a command, written against the
//! hardware traits only. Nothing here knows MQTT.

pub mod button;
pub mod led;
pub mod matrix;
