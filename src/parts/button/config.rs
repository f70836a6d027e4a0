//! The button's section of the configuration, `[button]`.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::hardware::{Need, Wire};
use crate::parts::{Entity, Section};

/// The push button.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ButtonConfig {
    /// Whether the button is fitted.
    pub enabled: bool,
    /// GPIO line (BCM number) of the button.
    pub pin: u32,
    /// The level must hold this long to count (contact bounce), in ms.
    pub debounce_ms: u64,
    /// The next press within this time after a release counts with it (a
    /// double, triple ... press), in ms; 0: every press is a press at once.
    #[serde(alias = "double_press_ms")]
    pub multi_press_ms: u64,
    /// The most presses one event counts, 1 to 5 (`quintuple_press`); the
    /// last is reported at once.
    pub max_presses: u8,
    /// Held this long, a press is a long press, in ms.
    pub long_press_ms: u64,
    /// While held after a long press, a `hold` event this often, in ms; 0: none.
    pub hold_repeat_ms: u64,
    /// Events while the broker is away are kept (at most
    /// [`super::KEPT_OFFLINE`]) and published when it is back, unless
    /// older than this, in seconds; 0: none kept.
    pub offline_max_age_s: u64,
}

impl Default for ButtonConfig {
    fn default() -> Self {
        ButtonConfig {
            enabled: true,
            pin: 27,
            debounce_ms: 30,
            multi_press_ms: 300,
            max_presses: 5,
            long_press_ms: 800,
            hold_repeat_ms: 500,
            offline_max_age_s: 300,
        }
    }
}

impl Section for ButtonConfig {
    crate::parts::fitted_by_enabled!();

    fn entities(&self, _: &[&str]) -> Vec<Entity> {
        super::entities(self.enabled)
    }

    /// Its input.
    fn wires(&self, _: &str) -> Vec<Wire> {
        vec![Wire::new(
            "button",
            "button.pin",
            Need::Input { line: self.pin },
        )]
    }

    /// Checks its values and adds its GPIO lines to `lines`.
    fn check(&self, gpio: &GpioPlan<'_>, lines: &mut Lines) -> Checked {
        let b = self;
        for (key, v, max) in [
            ("button.debounce_ms", b.debounce_ms, 1000),
            ("button.multi_press_ms", b.multi_press_ms, 5000),
            ("button.long_press_ms", b.long_press_ms, 60_000),
            ("button.hold_repeat_ms", b.hold_repeat_ms, 60_000),
        ] {
            if v > max {
                return Err(ConfigError::new(key, v, format!("0 to {max} ms")));
            }
        }
        if !(1..=super::MAX_PRESSES).contains(&b.max_presses) {
            return Err(ConfigError::new(
                "button.max_presses",
                b.max_presses,
                format!("1 to {} presses in a row", super::MAX_PRESSES),
            ));
        }
        if b.hold_repeat_ms != 0 && b.hold_repeat_ms < 50 {
            return Err(ConfigError::new(
                "button.hold_repeat_ms",
                b.hold_repeat_ms,
                "0 (no hold events) or 50 to 60000 ms",
            ));
        }
        if b.offline_max_age_s > 86_400 {
            return Err(ConfigError::new(
                "button.offline_max_age_s",
                b.offline_max_age_s,
                "0 (none kept) to 86400 seconds",
            ));
        }
        if b.long_press_ms <= b.debounce_ms {
            return Err(ConfigError::new(
                "button.long_press_ms",
                b.long_press_ms,
                format!("more than button.debounce_ms ({})", b.debounce_ms),
            ));
        }
        lines.push(gpio.chip_line(None, self.pin, "button.pin".into()));
        Ok(())
    }
}
