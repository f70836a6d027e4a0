//! The buzzer: on, off, and beeps of a given length.

mod device;

pub use device::*;
