//! The buzzer's section of the configuration, `[buzzer]`.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::hardware::{Need, Wire};
use crate::parts::{Entity, Section};

/// The buzzer's default line. The defaults of the matrix, the LEDs and the
/// button take all 28 lines of the 40-pin header (BCM 0 to 27), so the buzzer
/// gets the next number: free of every other default, it can be enabled on
/// the simulated hardware as it is; on a board it needs a header line that
/// another part gives up (rppal refuses 28: see `config::gpio::MAX_BCM_LINE`).
pub const DEFAULT_BUZZER_PIN: u32 = 28;

/// The largest `buzzer.max_tune_s`: an hour.
pub(crate) const MAX_TUNE_S: u64 = 3600;

/// The buzzer: a digital output (active buzzer) or a PWM tone (passive piezo).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuzzerConfig {
    /// Whether a buzzer is fitted.
    pub enabled: bool,
    /// GPIO line (BCM number).
    pub pin: u32,
    /// `0`: a digital output (active buzzer); otherwise a PWM tone of this frequency.
    pub tone_hz: f64,
    /// Longest `beep_ms` (and `pause_ms`) accepted.
    pub max_beep_ms: u64,
    /// Longest tune accepted, in seconds: an RTTTL, a pattern of beeps, a
    /// shipped tune, or one repeated for Home Assistant's `duration`.
    pub max_tune_s: u64,
}

impl Default for BuzzerConfig {
    fn default() -> Self {
        BuzzerConfig {
            enabled: false,
            pin: DEFAULT_BUZZER_PIN,
            tone_hz: 0.0,
            max_beep_ms: 10_000,
            max_tune_s: 300,
        }
    }
}

impl Section for BuzzerConfig {
    crate::parts::fitted_by_enabled!();

    fn entities(&self, _: &[&str]) -> Vec<Entity> {
        super::entities(self.enabled)
    }

    /// Its output.
    fn wires(&self, _: &str) -> Vec<Wire> {
        let need = Need::Tone {
            pin: self.pin,
            hz: self.tone_hz,
        };
        vec![Wire::new(
            crate::mqtt::topic::state::BUZZER,
            "buzzer.pin",
            need,
        )]
    }

    /// Checks its values and adds its GPIO lines to `lines`.
    fn check(&self, gpio: &GpioPlan<'_>, lines: &mut Lines) -> Checked {
        let b = self;
        if !(b.tone_hz.is_finite() && (b.tone_hz == 0.0 || (20.0..=20_000.0).contains(&b.tone_hz)))
        {
            return Err(ConfigError::new(
                "buzzer.tone_hz",
                b.tone_hz,
                "0 (a digital output) or a tone from 20 to 20000 Hz",
            ));
        }
        if !(1..=600_000).contains(&b.max_beep_ms) {
            return Err(ConfigError::new(
                "buzzer.max_beep_ms",
                b.max_beep_ms,
                "1 to 600000 ms",
            ));
        }
        if !(1..=MAX_TUNE_S).contains(&b.max_tune_s) {
            return Err(ConfigError::new(
                "buzzer.max_tune_s",
                b.max_tune_s,
                "1 to 3600 s",
            ));
        }
        lines.push(gpio.rppal_output(
            b.pin,
            "buzzer.pin".into(),
            "with hardware.backend = \"gpiocdev\" the buzzer is driven by rppal",
        ));
        Ok(())
    }
}
