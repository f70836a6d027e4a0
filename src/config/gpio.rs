//! The hardware section, `[hardware]`, and the plan of GPIO lines every
//! part's section adds to: which GPIO a line is on, and the range and
//! conflict checks over all of them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// Which hardware backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Simulated hardware that records every write.
    #[default]
    Sim,
    /// Raspberry Pi GPIO/PWM through rppal.
    Rppal,
    /// The Linux GPIO character device through gpiocdev.
    Gpiocdev,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sim => "sim",
            Backend::Rppal => "rppal",
            Backend::Gpiocdev => "gpiocdev",
        })
    }
}

/// Hardware backend selection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HardwareConfig {
    /// `sim`, `rppal` or `gpiocdev`.
    pub backend: Backend,
    /// GPIO character device used by parts that name no chip of their own.
    pub chip: String,
}

impl Default for HardwareConfig {
    fn default() -> Self {
        HardwareConfig {
            backend: Backend::Sim,
            chip: "/dev/gpiochip0".into(),
        }
    }
}

/// The lines of the Raspberry Pi's SPI0 that the Waveshare panel uses (BCM),
/// besides its reset, data/command and busy lines.
pub(crate) const WAVESHARE_SPI_LINES: [(u32, &str); 3] =
    [(8, "SPI0 CE0"), (10, "SPI0 MOSI"), (11, "SPI0 SCLK")];

/// The highest BCM number rppal may drive: the 40-pin header has BCM 0 to 27
/// on every Pi (higher numbers are internal lines, or absent on a Pi 5).
pub(crate) const MAX_BCM_LINE: u32 = 27;

/// The highest line offset accepted on a GPIO character device (or simulated).
pub(crate) const MAX_CHIP_LINE: u32 = 1023;

/// The GPIO lines the parts use, as their checks add them.
pub(crate) type Lines = Vec<UsedLine>;

/// What a part's check of its section gives: nothing, or the refused value.
pub(crate) type Checked = Result<(), ConfigError>;

/// A GPIO line a part uses, for the range and conflict checks.
#[derive(Debug, Clone)]
pub(crate) struct UsedLine {
    /// The GPIO the line is on: a character device path, or [`BCM_GPIO`].
    chip: String,
    /// Line offset, or BCM number.
    line: u32,
    /// The config key (or the part) that uses it.
    key: String,
    /// `Some(why)` when rppal drives the line by its BCM number: then it must
    /// be a header line, 0 to [`MAX_BCM_LINE`].
    bcm: Option<&'static str>,
}

/// The name of the SoC's GPIO when rppal drives every part.
const BCM_GPIO: &str = "the BCM GPIO";

/// Why a line is a BCM number with `hardware.backend = "rppal"`.
const RPPAL_WHY: &str = "hardware.backend = \"rppal\" uses BCM numbers";

/// Which GPIO each part's lines are on, and by what they are driven, for the
/// backend of `[hardware]`: rppal drives every line by its BCM number on the
/// SoC's one GPIO (it does not use `matrix.chip`); gpiocdev requests the
/// matrix and the button on their character devices, while the LEDs and the
/// buzzer still go through rppal (taken to be on `hardware.chip`, the
/// header's chip); the simulated backend takes the chips as they are given.
pub(crate) struct GpioPlan<'a> {
    backend: Backend,
    chip: &'a str,
    matrix_chip_given: bool,
}

impl<'a> GpioPlan<'a> {
    pub(crate) fn new(hardware: &'a HardwareConfig, matrix_chip: Option<&str>) -> Self {
        GpioPlan {
            backend: hardware.backend,
            chip: &hardware.chip,
            matrix_chip_given: matrix_chip.is_some(),
        }
    }

    /// The GPIO that rppal's lines are counted on.
    fn rppal_chip(&self) -> String {
        if self.backend == Backend::Rppal {
            BCM_GPIO.into()
        } else {
            self.chip.into()
        }
    }

    /// A line rppal always drives by its BCM number; `why` says so in words.
    pub(crate) fn bcm(&self, line: u32, key: String, why: &'static str) -> UsedLine {
        UsedLine {
            chip: self.rppal_chip(),
            line,
            key,
            bcm: Some(why),
        }
    }

    /// A PWM or plain output (an LED, the buzzer), which rppal drives with
    /// the rppal and the gpiocdev backend; `gpiocdev_why` says so for the latter.
    pub(crate) fn rppal_output(
        &self,
        line: u32,
        key: String,
        gpiocdev_why: &'static str,
    ) -> UsedLine {
        match self.backend {
            Backend::Sim => self.chip_line(None, line, key),
            Backend::Rppal => self.bcm(line, key, RPPAL_WHY),
            Backend::Gpiocdev => self.bcm(line, key, gpiocdev_why),
        }
    }

    /// A line on `chip` (default `hardware.chip`): a character device line
    /// with gpiocdev and the simulated backend, a BCM number with rppal.
    pub(crate) fn chip_line(&self, chip: Option<&str>, line: u32, key: String) -> UsedLine {
        match self.backend {
            Backend::Rppal => self.bcm(line, key, RPPAL_WHY),
            Backend::Sim | Backend::Gpiocdev => UsedLine {
                chip: chip.unwrap_or(self.chip).into(),
                line,
                key,
                bcm: None,
            },
        }
    }

    /// Refuses a line number the GPIO cannot have, and two parts on one line.
    pub(crate) fn check(&self, lines: &[UsedLine]) -> Result<(), ConfigError> {
        for (i, l) in lines.iter().enumerate() {
            match l.bcm {
                Some(why) if l.line > MAX_BCM_LINE => {
                    return Err(ConfigError::new(
                        &l.key,
                        l.line,
                        format!(
                            "a BCM GPIO number of the 40-pin header, 0 to {MAX_BCM_LINE} ({why})"
                        ),
                    ))
                }
                None if l.line > MAX_CHIP_LINE => {
                    return Err(ConfigError::new(
                        &l.key,
                        l.line,
                        format!("a GPIO line number from 0 to {MAX_CHIP_LINE}"),
                    ))
                }
                _ => {}
            }
            if let Some(other) = lines[..i]
                .iter()
                .find(|o| o.chip == l.chip && o.line == l.line)
            {
                let on = if l.chip == BCM_GPIO && self.matrix_chip_given {
                    format!("{BCM_GPIO} (hardware.backend = \"rppal\" drives every part there; it does not use matrix.chip)")
                } else {
                    l.chip.clone()
                };
                return Err(ConfigError::new(
                    &l.key,
                    l.line,
                    format!(
                        "a GPIO line no other part uses, but {} is also line {} on {on}",
                        other.key, l.line
                    ),
                ));
            }
        }
        Ok(())
    }
}
