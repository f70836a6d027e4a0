//! The board's section of the configuration, `[display]`.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::error::{quote, ConfigError};
use crate::config::gpio::WAVESHARE_SPI_LINES;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::parts::{Entity, Section};

/// Which panel shows the message board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DisplayBackend {
    /// Frames kept in memory only (tests).
    Sim,
    /// Each frame written to a PNG file.
    #[default]
    Png,
    /// The Embedded Artists / Pervasive Displays EPD driver's files (`/dev/epd`).
    Epd,
    /// A Waveshare 2.7" panel on SPI (needs the `waveshare` build feature).
    Waveshare,
}

impl fmt::Display for DisplayBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DisplayBackend::Sim => "sim",
            DisplayBackend::Png => "png",
            DisplayBackend::Epd => "epd",
            DisplayBackend::Waveshare => "waveshare",
        })
    }
}

/// The e-paper message board: clock and messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    /// Whether the board is fitted.
    pub enabled: bool,
    /// `png`, `epd`, `waveshare` or `sim`.
    pub backend: DisplayBackend,
    /// Panel width in pixels (the EPD driver reports its own).
    pub width: u32,
    /// Panel height in pixels.
    pub height: u32,
    /// Time zone of the clock: an IANA name, e.g. `Europe/Berlin`, or a
    /// POSIX TZ rule (`clock::Zone::named`); default: the system's.
    pub time_zone: Option<String>,
    /// The PNG file the `png` backend writes.
    pub png_path: PathBuf,
    /// The EPD driver's folder for the `epd` backend.
    pub epd_path: PathBuf,
    /// Simulated panel refresh time of the `png` and `sim` backends, in ms.
    pub refresh_ms: u64,
    /// Longest message accepted, in characters.
    pub max_message_chars: usize,
    /// On a panel with partial refresh (the `epd` backend, `sim`), every
    /// this many updates one is a full refresh (against ghosting), the
    /// others partial; 1: every one full.
    pub full_refresh_every: u32,
    /// Waveshare panel: reset line (BCM).
    pub rst_pin: u32,
    /// Waveshare panel: data/command line (BCM).
    pub dc_pin: u32,
    /// Waveshare panel: busy line (BCM).
    pub busy_pin: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            enabled: true,
            backend: DisplayBackend::Png,
            width: 264,
            height: 176,
            time_zone: None,
            png_path: PathBuf::from("edge-agent-display.png"),
            epd_path: PathBuf::from("/dev/epd"),
            refresh_ms: 0,
            max_message_chars: 1000,
            full_refresh_every: 10,
            rst_pin: 17,
            dc_pin: 25,
            busy_pin: 24,
        }
    }
}

impl Section for DisplayConfig {
    crate::parts::fitted_by_enabled!();

    fn entities(&self, _: &[&str]) -> Vec<Entity> {
        super::entities(self)
    }

    /// Checks its values and adds its GPIO lines to `lines`.
    fn check(&self, gpio: &GpioPlan<'_>, lines: &mut Lines) -> Checked {
        let d = self;
        if !(8..=4096).contains(&d.width) || d.width % 8 != 0 {
            return Err(ConfigError::new(
                "display.width",
                d.width,
                "a multiple of 8 from 8 to 4096 pixels",
            ));
        }
        if !(8..=4096).contains(&d.height) {
            return Err(ConfigError::new(
                "display.height",
                d.height,
                "8 to 4096 pixels",
            ));
        }
        if d.refresh_ms > 600_000 {
            return Err(ConfigError::new(
                "display.refresh_ms",
                d.refresh_ms,
                "0 to 600000 ms",
            ));
        }
        if !(1..=10_000).contains(&d.max_message_chars) {
            return Err(ConfigError::new(
                "display.max_message_chars",
                d.max_message_chars,
                "1 to 10000 characters",
            ));
        }
        if !(1..=1000).contains(&d.full_refresh_every) {
            return Err(ConfigError::new(
                "display.full_refresh_every",
                d.full_refresh_every,
                "1 (every update a full refresh) to 1000 updates",
            ));
        }
        if d.backend == DisplayBackend::Waveshare && !cfg!(feature = "waveshare") {
            return Err(ConfigError::new(
                "display.backend",
                quote("waveshare"),
                "png, epd or sim: this edge-agent was built without the waveshare feature (rebuild with --features waveshare)",
            ));
        }
        if d.backend == DisplayBackend::Waveshare {
            // The panel is driven through rppal whatever hardware.backend is.
            let why = "the Waveshare panel is driven by rppal";
            for (line, name) in WAVESHARE_SPI_LINES {
                lines.push(gpio.bcm(line, format!("the Waveshare panel's {name}"), why));
            }
            lines.push(gpio.bcm(d.rst_pin, "display.rst_pin".into(), why));
            lines.push(gpio.bcm(d.dc_pin, "display.dc_pin".into(), why));
            lines.push(gpio.bcm(d.busy_pin, "display.busy_pin".into(), why));
        }
        Ok(())
    }
}
