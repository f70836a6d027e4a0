//! The matrix's section of the configuration, `[matrix]`.

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::hardware::{Need, Wire};
use crate::parts::{Entity, Section};

/// The 5×5 LED matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatrixConfig {
    /// Whether the matrix is fitted.
    pub enabled: bool,
    /// GPIO character device of the matrix lines; default: `hardware.chip`.
    pub chip: Option<String>,
    /// 25 GPIO lines, row by row from the top left LED.
    pub lines: Vec<u32>,
}

/// The default matrix line map: every header line but the tilt LEDs' and the button's.
pub const DEFAULT_MATRIX_LINES: [u32; 25] = [
    0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26,
];

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            enabled: true,
            chip: None,
            lines: DEFAULT_MATRIX_LINES.to_vec(),
        }
    }
}

impl Section for MatrixConfig {
    crate::parts::fitted_by_enabled!();

    fn entities(&self, effects: &[&str]) -> Vec<Entity> {
        vec![super::entity(self.enabled, effects)]
    }

    /// Its 25 outputs, on `chip` unless it names its own.
    fn wires(&self, chip: &str) -> Vec<Wire> {
        let need = Need::Outputs {
            chip: self.chip.clone().unwrap_or_else(|| chip.to_string()),
            lines: self.lines.clone(),
        };
        vec![Wire::new(
            crate::mqtt::topic::state::MATRIX,
            "matrix.lines",
            need,
        )]
    }

    /// Checks its values and adds its GPIO lines to `lines`.
    fn check(&self, gpio: &GpioPlan<'_>, lines: &mut Lines) -> Checked {
        if self.lines.len() != 25 {
            return Err(ConfigError::new(
                "matrix.lines",
                format!("a list of {} lines", self.lines.len()),
                "exactly 25 GPIO lines, row by row",
            ));
        }
        for (i, line) in self.lines.iter().enumerate() {
            lines.push(gpio.chip_line(self.chip.as_deref(), *line, format!("matrix.lines[{i}]")));
        }
        Ok(())
    }
}
