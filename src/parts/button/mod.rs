//! The button: debounced presses, double and long presses.

mod device;

pub use device::*;
