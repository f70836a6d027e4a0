//! Small traits between the device logic and the pins, so that a simulated
//! backend can stand in for the real one.
//!
//! Each part gets exactly the capability it needs: a set of digital outputs
//! written together (the matrix), a PWM channel (each LED), a stream of input
//! edges (the button), and a 1-bit display.

pub mod epd_file;
pub mod gpiocdev_backend;
pub mod png_file;
pub mod rppal_backend;
pub mod sim;
#[cfg(feature = "waveshare")]
pub mod waveshare;

use tokio::sync::mpsc;

use crate::config::{Backend, Config, DisplayBackend, Settings};

/// A hardware write or set-up that failed.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// The backend reported an error.
    #[error("{part}: {message}")]
    Backend {
        /// Which part failed.
        part: String,
        /// What the backend said.
        message: String,
    },
    /// The values do not fit the hardware.
    #[error("{0}")]
    Invalid(String),
}

/// Digital outputs that are always written together, as one set.
pub trait DigitalOutputs: Send {
    /// How many outputs the set has.
    fn len(&self) -> usize;
    /// Whether the set is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sets every output at once; `levels.len()` equals [`len`](Self::len).
    fn write(&mut self, levels: &[bool]) -> Result<(), HardwareError>;
}

/// One PWM channel.
pub trait PwmChannel: Send {
    /// Sets the duty cycle, from 0.0 (off) to 1.0 (fully on).
    fn set_duty(&mut self, duty: f64) -> Result<(), HardwareError>;
}

/// A change of level on an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// True when the input became active (the button is pressed).
    pub active: bool,
    /// When the edge happened.
    pub at: tokio::time::Instant,
}

/// An input whose level changes are delivered as edges.
pub trait InputEdges: Send {
    /// Starts delivering edges; called once.
    fn edges(&mut self) -> Result<mpsc::Receiver<Edge>, HardwareError>;
}

/// A black-and-white frame, one bit a pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels, row-major; true = black.
    pub pixels: Vec<bool>,
}

/// A 1-bit display such as an e-paper panel.
pub trait Display: Send {
    /// Panel size in pixels (width, height).
    fn size(&self) -> (u32, u32);
    /// Shows a whole frame; may take seconds on a real panel.
    fn show(&mut self, frame: &BitFrame) -> Result<(), HardwareError>;
    /// Whether `show` can take long (a real panel), so that it must run off
    /// the async runtime's threads.
    fn is_slow(&self) -> bool {
        true
    }
}

/// A PWM channel and the name of the LED on it.
pub(crate) type NamedPwm = (String, Box<dyn PwmChannel>);

/// Which line each enabled part is on, as the backends take it: a small
/// value derived from the configuration, so no backend reads the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Wiring {
    /// The GPIO character device of parts that name none of their own.
    pub chip: String,
    /// The LEDs' BCM pins by name, and their PWM frequency (Hz).
    pub leds: Option<([(&'static str, u32); 2], f64)>,
    /// The matrix's character device and its 25 lines, row by row.
    pub matrix: Option<(String, Vec<u32>)>,
    /// The button's line.
    pub button: Option<u32>,
    /// The buzzer's BCM pin and tone (0: a digital output).
    pub buzzer: Option<(u32, f64)>,
}

impl Wiring {
    /// The wiring of the parts `config` enables.
    pub fn of(config: &Config) -> Wiring {
        let chip = config.hardware.chip.clone();
        let t = &config.tilt;
        Wiring {
            leds: t.enabled.then_some((
                [("left", t.left_pin), ("right", t.right_pin)],
                t.frequency_hz,
            )),
            matrix: config.matrix.enabled.then(|| {
                (
                    config.matrix.chip.clone().unwrap_or_else(|| chip.clone()),
                    config.matrix.lines.clone(),
                )
            }),
            button: config.button.enabled.then_some(config.button.pin),
            buzzer: config
                .buzzer
                .enabled
                .then_some((config.buzzer.pin, config.buzzer.tone_hz)),
            chip,
        }
    }
}

/// The hardware parts the configuration enables.
pub struct Hardware {
    /// The PWM LEDs by name (`left`, `right`).
    pub leds: Vec<NamedPwm>,
    /// The 25 matrix outputs.
    pub matrix: Option<Box<dyn DigitalOutputs>>,
    /// The button input.
    pub button: Option<Box<dyn InputEdges>>,
    /// The message board's panel.
    pub display: Option<Box<dyn Display>>,
    /// The buzzer (a digital output as a 0/1 duty, or a PWM tone).
    pub buzzer: Option<Box<dyn PwmChannel>>,
    /// Controls of the simulated backend (button injection, recordings).
    pub sim: Option<sim::SimHandles>,
}

impl Hardware {
    /// Builds the backend the configuration asks for.
    pub fn from_settings(settings: &Settings) -> Result<Hardware, HardwareError> {
        let wiring = Wiring::of(&settings.config);
        let mut hw = match settings.config.hardware.backend {
            Backend::Sim => sim::build(&wiring),
            Backend::Rppal => rppal_backend::build(&wiring)?,
            Backend::Gpiocdev => gpiocdev_backend::build(&wiring)?,
        };
        let d = &settings.config.display;
        if d.enabled {
            hw.display = Some(match d.backend {
                DisplayBackend::Sim => {
                    let s = sim::SimDisplay::new(d.width, d.height);
                    if let Some(h) = &mut hw.sim {
                        h.display = Some(s.frames.clone());
                    }
                    Box::new(s)
                }
                DisplayBackend::Png => Box::new(png_file::PngDisplay::new(&d.png_path, d.width, d.height)),
                DisplayBackend::Epd => Box::new(epd_file::EpdFile::open(&d.epd_path)?),
                #[cfg(feature = "waveshare")]
                DisplayBackend::Waveshare => Box::new(waveshare::Waveshare27::open(d)?),
                #[cfg(not(feature = "waveshare"))]
                DisplayBackend::Waveshare => {
                    return Err(HardwareError::Backend {
                        part: "display".into(),
                        message: "this edge-agent was built without Waveshare support; rebuild with `--features waveshare`".into(),
                    })
                }
            });
        }
        Ok(hw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wiring_has_the_enabled_parts_lines_only() {
        let mut c = Config::default();
        c.buzzer.enabled = true;
        c.button.enabled = false;
        let w = Wiring::of(&c);
        assert_eq!(w.leds, Some(([("left", 5), ("right", 18)], 1000.0)));
        let (chip, lines) = w.matrix.unwrap();
        assert_eq!((chip.as_str(), lines.len()), ("/dev/gpiochip0", 25));
        assert_eq!((w.button, w.buzzer), (None, Some((28, 0.0))));
        c.matrix.chip = Some("/dev/gpiochip4".into());
        c.tilt.enabled = false;
        let w = Wiring::of(&c);
        assert_eq!(w.matrix.unwrap().0, "/dev/gpiochip4");
        assert_eq!(w.leds, None);
    }
}
