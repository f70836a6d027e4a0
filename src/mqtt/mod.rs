//! MQTT: the device's topic vocabulary.

pub mod topic;
