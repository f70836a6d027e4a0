//! The health report's section of the configuration, `[diag]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::parts::{Entity, Section};

/// The board's report on itself: temperature, throttling, load, memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiagConfig {
    /// Whether `<base>/diag` is published.
    pub enabled: bool,
    /// Seconds between two reports.
    pub interval_s: u64,
    /// Seconds between two looks at the firmware's throttling flags (one
    /// sysfs file), which report at once when a flag changes; 0 = only
    /// with each report.
    pub throttle_check_s: u64,
    /// Where procfs and sysfs are (`/`; tests give a made-up tree).
    pub root: PathBuf,
    /// The folder whose free space is reported; default: `device.state_dir`.
    pub state_dir: Option<PathBuf>,
}

impl Default for DiagConfig {
    fn default() -> Self {
        DiagConfig {
            enabled: true,
            interval_s: 60,
            throttle_check_s: 5,
            root: PathBuf::from("/"),
            state_dir: None,
        }
    }
}

impl Section for DiagConfig {
    crate::parts::fitted_by_enabled!();

    fn entities(&self, _: &[&str]) -> Vec<Entity> {
        super::entities(self.enabled)
    }

    /// Checks its values; it has no GPIO lines.
    fn check(&self, _: &GpioPlan<'_>, _: &mut Lines) -> Checked {
        if !(5..=86_400).contains(&self.interval_s) {
            return Err(ConfigError::new(
                "diag.interval_s",
                self.interval_s,
                "5 to 86400 seconds",
            ));
        }
        if self.throttle_check_s > self.interval_s {
            return Err(ConfigError::new(
                "diag.throttle_check_s",
                self.throttle_check_s,
                format!("0 (off) to diag.interval_s ({}) seconds", self.interval_s),
            ));
        }
        Ok(())
    }
}
