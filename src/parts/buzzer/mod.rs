//! The buzzer: on, off, and beeps of a given length.

pub mod command;
mod device;

pub use device::*;
