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
    /// A second press within this time after a release is a double press; 0 = none.
    pub double_press_ms: u64,
    /// Held this long, a press is a long press, in ms.
    pub long_press_ms: u64,
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
            double_press_ms: 300,
            long_press_ms: 800,
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
            ("button.double_press_ms", b.double_press_ms, 5000),
            ("button.long_press_ms", b.long_press_ms, 60_000),
        ] {
            if v > max {
                return Err(ConfigError::new(key, v, format!("0 to {max} ms")));
            }
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
