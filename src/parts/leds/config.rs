//! The LEDs' section of the configuration, `[tilt]`.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::hardware::{Need, Wire};
use crate::parts::{Entity, Section};

/// The two tilt LEDs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiltConfig {
    /// Whether the LEDs are fitted.
    pub enabled: bool,
    /// GPIO line (BCM number) of the left LED.
    pub left_pin: u32,
    /// GPIO line (BCM number) of the right LED.
    pub right_pin: u32,
    /// PWM frequency in hertz.
    pub frequency_hz: f64,
    /// Both LEDs go off when no tilt arrives for this long, in ms.
    pub timeout_ms: u64,
    /// Shortest time between two PWM writes, in ms (newer values replace older ones meanwhile).
    pub write_interval_ms: u64,
    /// Shortest time between two `led/<name>` state publishes while tilting, in ms.
    pub state_interval_ms: u64,
}

impl Default for TiltConfig {
    fn default() -> Self {
        TiltConfig {
            enabled: true,
            left_pin: 5,
            right_pin: 18,
            frequency_hz: 1000.0,
            timeout_ms: 2000,
            write_interval_ms: 10,
            state_interval_ms: 250,
        }
    }
}

impl Section for TiltConfig {
    crate::parts::fitted_by_enabled!();

    fn entities(&self, _: &[&str]) -> Vec<Entity> {
        super::entities(self.enabled)
    }

    /// The PWM channels of its LEDs.
    fn wires(&self, _: &str) -> Vec<Wire> {
        let led = |name: &str, key, pin| {
            let need = Need::Pwm {
                pin,
                hz: self.frequency_hz,
            };
            Wire::new(crate::mqtt::topic::state::led(name), key, need)
        };
        vec![
            led("left", "tilt.left_pin", self.left_pin),
            led("right", "tilt.right_pin", self.right_pin),
        ]
    }

    /// Checks its values and adds its GPIO lines to `lines`.
    fn check(&self, gpio: &GpioPlan<'_>, lines: &mut Lines) -> Checked {
        if !(self.frequency_hz.is_finite() && (1.0..=1_000_000.0).contains(&self.frequency_hz)) {
            return Err(ConfigError::new(
                "tilt.frequency_hz",
                self.frequency_hz,
                "a frequency from 1 to 1000000 Hz",
            ));
        }
        for (key, v, lo, hi) in [
            ("tilt.timeout_ms", self.timeout_ms, 100, 3_600_000),
            ("tilt.write_interval_ms", self.write_interval_ms, 1, 1000),
            ("tilt.state_interval_ms", self.state_interval_ms, 50, 60_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::new(key, v, format!("{lo} to {hi} ms")));
            }
        }
        for (pin, key) in [
            (self.left_pin, "tilt.left_pin"),
            (self.right_pin, "tilt.right_pin"),
        ] {
            lines.push(gpio.rppal_output(
                pin,
                key.into(),
                "with hardware.backend = \"gpiocdev\" the LEDs are driven by rppal",
            ));
        }
        Ok(())
    }
}
