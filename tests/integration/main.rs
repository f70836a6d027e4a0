//! The integration tests: the agent over real MQTT on 127.0.0.1, one module
//! per part. They are one test binary, so they are compiled and linked once
//! (which matters most for the ARM builds under qemu-user). Run one part with
//! `cargo test --test integration tilt::`.

mod common;
mod scenarios;

mod at_least_once;
mod broker_faults;
mod button;
mod buzzer;
mod config_errors;
mod doctor;
mod embedded_broker;
mod fleet;
mod flood;
mod health;
mod homeassistant;
mod hostile;
mod isolation;
mod links;
mod matrix;
mod message_board;
mod mosquitto;
mod readme;
mod safety;
mod sim_hardware;
mod tilt;
