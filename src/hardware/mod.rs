//! Small traits between the device logic and the pins, so that a simulated
//! backend can stand in for the real one.
//!
//! Each part gets exactly the capability it needs: a set of digital outputs
//! written together (the matrix), a PWM channel (each LED), a stream of input
//! edges (the button), and a 1-bit display.

pub mod sim;

use tokio::sync::mpsc;

use crate::config::{Backend, Settings};

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
}

/// The hardware parts the configuration enables.
pub struct Hardware {
    /// The PWM LEDs by name (`left`, `right`).
    pub leds: Vec<(String, Box<dyn PwmChannel>)>,
    /// The 25 matrix outputs.
    pub matrix: Option<Box<dyn DigitalOutputs>>,
    /// The button input.
    pub button: Option<Box<dyn InputEdges>>,
    /// Controls of the simulated backend (button injection, recordings).
    pub sim: Option<sim::SimHandles>,
}

impl Hardware {
    /// Builds the backend the configuration asks for.
    pub fn from_settings(settings: &Settings) -> Result<Hardware, HardwareError> {
        match settings.config.hardware.backend {
            Backend::Sim => Ok(sim::build(&settings.config)),
            other => Err(HardwareError::Backend {
                part: "hardware".into(),
                message: format!(
                    "backend {other} is not available in this build yet; use backend = \"sim\""
                ),
            }),
        }
    }
}
