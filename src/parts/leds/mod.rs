//! The two PWM LEDs and the tilt that drives them.

pub mod command;
mod device;

pub use device::*;
