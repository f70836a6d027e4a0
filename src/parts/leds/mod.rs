//! The two PWM LEDs and the tilt that drives them.

mod device;

pub use device::*;
