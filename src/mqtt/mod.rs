//! MQTT: the device's topic vocabulary, the connection, and the embedded
//! broker.

pub mod broker;
pub mod topic;
pub mod transport;
