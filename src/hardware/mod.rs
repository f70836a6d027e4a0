//! Small traits between the device logic and the pins, so that a simulated
//! backend can stand in for the real one.
//!
//! Each part gets exactly the capability it needs: a set of digital outputs
//! written together (the matrix), a PWM channel (each LED, the buzzer), a
//! stream of input edges (the button), and a 1-bit display. A part asks for
//! its pins as a [`Need`] under its name ([`Wiring`]); every backend serves
//! any need, so no backend knows the parts.

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

    /// Sets the frequency (a passive buzzer's pitch) and the duty cycle
    /// together; the frequency stays for later duties. A channel that has
    /// no frequency of its own (a plain output) cannot.
    fn set_frequency(&mut self, hz: f64, _duty: f64) -> Result<(), HardwareError> {
        Err(HardwareError::Invalid(format!(
            "this output cannot change its frequency (asked for {hz} Hz)"
        )))
    }
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
    /// Whether it can refresh only what changed, faster and without the
    /// full refresh's flashing (at the price of some ghosting).
    fn has_partial_refresh(&self) -> bool {
        false
    }
    /// Shows a whole frame with a partial refresh, where the panel has one.
    fn show_partial(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        self.show(frame)
    }
}

/// What one part needs of the pins, as every backend takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// A PWM channel at `hz` on BCM `pin`: hardware PWM where the pin has a
    /// free channel, software PWM otherwise (an LED).
    Pwm {
        /// The BCM pin.
        pin: u32,
        /// The PWM frequency.
        hz: f64,
    },
    /// A digital output driven as a 0/1 duty, or software PWM at `hz` when it
    /// is not 0 (a buzzer, active or passive).
    Tone {
        /// The BCM pin.
        pin: u32,
        /// The tone; 0: a plain output.
        hz: f64,
    },
    /// Outputs always written together, on `chip` (the matrix).
    Outputs {
        /// The GPIO character device.
        chip: String,
        /// Its lines, in the order written.
        lines: Vec<u32>,
    },
    /// An active-low input with a pull-up, delivered as edges (a button).
    Input {
        /// The line, on the wiring's chip.
        line: u32,
    },
}

/// One part's need, under the name the part takes it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    /// The name the part takes it by, its path below base (`led/left`,
    /// `buzzer`, `button`); the simulated backend's recordings go by it too.
    pub name: String,
    /// The config key it comes from (`buzzer.pin`), for error messages.
    pub key: &'static str,
    /// What it needs.
    pub need: Need,
}

impl Wire {
    /// The need `need` of the part called `name`, from config key `key`.
    pub(crate) fn new(name: impl Into<String>, key: &'static str, need: Need) -> Wire {
        Wire {
            name: name.into(),
            key,
            need,
        }
    }
}

/// Which lines the enabled parts are on, as the backends take it: a small
/// value derived from the configuration, so no backend reads the config
/// and none knows the parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Wiring {
    /// The GPIO character device of parts that name none of their own.
    pub chip: String,
    /// Every enabled part's needs.
    pub wires: Vec<Wire>,
}

impl Wiring {
    /// The wiring of the parts `config` enables.
    pub fn of(config: &Config) -> Wiring {
        let chip = &config.hardware.chip;
        let sections = config.sections().into_iter().filter(|s| s.enabled());
        let wires = sections.flat_map(|s| s.wires(chip)).collect();
        Wiring {
            chip: chip.clone(),
            wires,
        }
    }
}

/// A backend's answer to one [`Need`].
pub enum Pin {
    /// For [`Need::Pwm`] and [`Need::Tone`].
    Pwm(Box<dyn PwmChannel>),
    /// For [`Need::Outputs`].
    Outputs(Box<dyn DigitalOutputs>),
    /// For [`Need::Input`].
    Input(Box<dyn InputEdges>),
}

/// The hardware the configuration enables: each wire's pins by name, and
/// the message board's panel.
pub struct Hardware {
    /// What the backend gave for each [`Wire`], by its name.
    pins: Vec<(String, Pin)>,
    /// The message board's panel.
    pub display: Option<Box<dyn Display>>,
    /// Controls of the simulated backend (button injection, recordings).
    pub sim: Option<sim::SimHandles>,
}

impl Hardware {
    /// The hardware of a backend's pins, without a panel yet.
    pub(crate) fn new(pins: Vec<(String, Pin)>, sim: Option<sim::SimHandles>) -> Hardware {
        Hardware {
            pins,
            display: None,
            sim,
        }
    }

    /// Takes the pin of the wire `name`, if it is there.
    fn take(&mut self, name: &str) -> Option<Pin> {
        let i = self.pins.iter().position(|(n, _)| n == name)?;
        Some(self.pins.swap_remove(i).1)
    }

    /// Takes the PWM channel of the wire `name`.
    pub(crate) fn pwm(&mut self, name: &str) -> Option<Box<dyn PwmChannel>> {
        match self.take(name)? {
            Pin::Pwm(p) => Some(p),
            _ => None,
        }
    }

    /// Takes the outputs of the wire `name`.
    pub(crate) fn outputs(&mut self, name: &str) -> Option<Box<dyn DigitalOutputs>> {
        match self.take(name)? {
            Pin::Outputs(o) => Some(o),
            _ => None,
        }
    }

    /// Takes the input of the wire `name`.
    pub(crate) fn input(&mut self, name: &str) -> Option<Box<dyn InputEdges>> {
        match self.take(name)? {
            Pin::Input(i) => Some(i),
            _ => None,
        }
    }

    /// Builds the backend the configuration asks for.
    pub fn from_settings(settings: &Settings) -> Result<Hardware, HardwareError> {
        let wiring = Wiring::of(&settings.config);
        let mut hw = match settings.config.hardware.backend {
            Backend::Sim => sim::build(&wiring),
            Backend::Rppal => Hardware::new(rppal_backend::build(&wiring)?, None),
            Backend::Gpiocdev => Hardware::new(gpiocdev_backend::build(&wiring)?, None),
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
        let need = |w: &Wiring, name: &str| {
            w.wires
                .iter()
                .find(|x| x.name == name)
                .map(|x| x.need.clone())
        };
        assert_eq!(need(&w, "led/left"), Some(Need::Pwm { pin: 5, hz: 1000.0 }));
        assert_eq!(
            need(&w, "led/right"),
            Some(Need::Pwm {
                pin: 18,
                hz: 1000.0
            })
        );
        let Some(Need::Outputs { chip, lines }) = need(&w, "matrix") else {
            panic!("no matrix in {w:?}");
        };
        assert_eq!((chip.as_str(), lines.len()), ("/dev/gpiochip0", 25));
        assert_eq!(need(&w, "button"), None);
        assert_eq!(need(&w, "buzzer"), Some(Need::Tone { pin: 28, hz: 0.0 }));
        c.matrix.chip = Some("/dev/gpiochip4".into());
        c.tilt.enabled = false;
        let w = Wiring::of(&c);
        assert!(
            matches!(need(&w, "matrix"), Some(Need::Outputs { chip, .. }) if chip == "/dev/gpiochip4")
        );
        assert_eq!(need(&w, "led/left"), None);
        assert_eq!(w.wires.len(), 2);
    }
}
