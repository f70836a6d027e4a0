#![warn(missing_docs)]
//! edge-agent turns a Raspberry Pi-class Linux board into a well-behaved MQTT
//! device: LEDs, an LED matrix and a button driven through local backends,
//! commanded over MQTT, with an optional embedded broker.
//!
//! Module map, one home per concern:
//! - [`config`]: layered configuration and its validation;
//! - [`broker`]: the embedded rumqttd broker;
//! - [`transport`]: the MQTT connection (the only module that knows rumqttc);
//! - [`command`]: topic + payload → typed command;
//! - [`device`]: what each part does, against the [`hardware`] traits;
//! - [`agent`]: wires them together and shuts down safely;
//! - [`cli`]: the command line.

pub mod agent;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub mod device;
pub mod discovery;
pub mod hardware;
pub mod links;
pub mod mqtt;
pub mod parts;
pub mod pattern;
pub mod quote;
pub mod rate;
pub mod render;
pub mod service;
pub mod transport;
