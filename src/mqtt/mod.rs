//! MQTT: the device's topic vocabulary, the connection, and the embedded
//! broker.

pub mod broker;
pub(crate) mod topic;
pub(crate) mod transport;
