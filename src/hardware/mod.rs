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

use crate::config::{Backend, DisplayBackend, Settings};

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
        let mut hw = match settings.config.hardware.backend {
            Backend::Sim => sim::build(&settings.config),
            Backend::Rppal => rppal_backend::build(&settings.config)?,
            Backend::Gpiocdev => gpiocdev_backend::build(&settings.config)?,
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
