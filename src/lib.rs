#![warn(missing_docs, unreachable_pub)]
//! edge-agent turns a Raspberry Pi-class Linux board into a well-behaved MQTT
//! device: LEDs, an LED matrix and a button driven through local backends,
//! commanded over MQTT, with an optional embedded broker.
//!
//! Module map, one home per concern:
//! - [`parts`]: each part of the device (LEDs, matrix, message board,
//!   button, buzzer) in its folder, behind one trait for the running part
//!   and one for its config section, listed once in a registry; written
//!   against the [`hardware`] traits; no part knows MQTT;
//! - [`mqtt`]: the topic table, the connection (the only module that knows
//!   rumqttc) and the embedded rumqttd broker;
//! - [`command`]: a topic to its verb by the table, its payload to the
//!   typed command of the part that takes it;
//! - [`config`]: layered configuration and its validation;
//! - `links`: messages turned into local commands;
//! - [`agent`]: a pure core that drives the parts and decides what to
//!   publish, in a thin loop that feeds it; shuts down safely;
//! - [`cli`]: the command line.

pub mod agent;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub(crate) mod discovery;
pub(crate) mod doctor;
pub(crate) mod fleet;
pub mod hardware;
pub(crate) mod host;
pub(crate) mod links;
pub mod mqtt;
pub mod parts;
pub(crate) mod quote;
pub(crate) mod rate;
pub mod service;
