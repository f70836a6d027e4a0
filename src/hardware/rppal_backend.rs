//! Raspberry Pi GPIO and PWM through rppal (`hardware.backend = "rppal"`).
//!
//! LEDs use the hardware PWM channel where their pin has one (BCM 12/18 are
//! PWM0, 13/19 are PWM1; needs `dtoverlay=pwm-2chan`) and software PWM
//! elsewhere; the matrix's 25 lines are outputs set one after another (use the
//! gpiocdev backend to set them in one request); the button is an input with
//! the pull-up on, active low, its edges from rppal's interrupt thread.

use rppal::gpio::{Gpio, InputPin, Level, OutputPin, Trigger};
use rppal::pwm::{Channel, Polarity, Pwm};
use tokio::sync::mpsc;

use super::{DigitalOutputs, Edge, HardwareError, InputEdges, Need, Pin, PwmChannel, Wire, Wiring};

fn err(part: &str, e: impl std::fmt::Display) -> HardwareError {
    HardwareError::Backend {
        part: part.to_string(),
        message: format!("{e} (rppal: is this a Raspberry Pi, and is the user in the gpio group?)"),
    }
}

/// The hardware PWM channel of a BCM pin, if it has one.
pub(crate) fn pwm_channel(pin: u32) -> Option<Channel> {
    match pin {
        12 | 18 => Some(Channel::Pwm0),
        13 | 19 => Some(Channel::Pwm1),
        _ => None,
    }
}

/// A hardware PWM channel.
struct HardPwm(Pwm);

impl PwmChannel for HardPwm {
    fn set_duty(&mut self, duty: f64) -> Result<(), HardwareError> {
        self.0.set_duty_cycle(duty).map_err(|e| err("PWM", e))
    }

    fn set_frequency(&mut self, hz: f64, duty: f64) -> Result<(), HardwareError> {
        self.0.set_frequency(hz, duty).map_err(|e| err("PWM", e))
    }
}

/// Software PWM on any output pin.
struct SoftPwm {
    pin: OutputPin,
    frequency: f64,
}

impl PwmChannel for SoftPwm {
    fn set_duty(&mut self, duty: f64) -> Result<(), HardwareError> {
        let r = if duty <= 0.0 {
            self.pin.clear_pwm().map(|()| self.pin.set_low())
        } else if duty >= 1.0 {
            self.pin.clear_pwm().map(|()| self.pin.set_high())
        } else {
            self.pin.set_pwm_frequency(self.frequency, duty)
        };
        r.map_err(|e| err("software PWM", e))
    }

    /// A new period for the running PWM thread (rppal reconfigures it
    /// without stopping it); fully off or on stops it, as `set_duty` does.
    fn set_frequency(&mut self, hz: f64, duty: f64) -> Result<(), HardwareError> {
        if !(hz.is_finite() && hz > 0.0) {
            return Err(HardwareError::Invalid(format!("a frequency of {hz} Hz")));
        }
        self.frequency = hz;
        self.set_duty(duty)
    }
}

/// A digital output driven as a 0/1 duty (an active buzzer).
struct OnOff(OutputPin);

impl PwmChannel for OnOff {
    fn set_duty(&mut self, duty: f64) -> Result<(), HardwareError> {
        self.0
            .write(if duty > 0.0 { Level::High } else { Level::Low });
        Ok(())
    }
}

/// Output pins written as one set.
struct Outputs(Vec<OutputPin>);

impl DigitalOutputs for Outputs {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn write(&mut self, levels: &[bool]) -> Result<(), HardwareError> {
        if levels.len() != self.0.len() {
            return Err(HardwareError::Invalid(format!(
                "{} levels for {} pins",
                levels.len(),
                self.0.len()
            )));
        }
        for (pin, on) in self.0.iter_mut().zip(levels) {
            pin.write(if *on { Level::High } else { Level::Low });
        }
        Ok(())
    }
}

/// The button: an input with pull-up, pressed when low. The interrupt lives
/// as long as this value.
struct Button {
    pin: InputPin,
    started: bool,
}

impl InputEdges for Button {
    fn edges(&mut self) -> Result<mpsc::Receiver<Edge>, HardwareError> {
        if std::mem::replace(&mut self.started, true) {
            return Err(HardwareError::Invalid("edges already taken".into()));
        }
        let (tx, rx) = mpsc::channel(64);
        self.pin
            .set_async_interrupt(Trigger::Both, None, move |event| {
                let active = event.trigger == Trigger::FallingEdge;
                // A full queue means the agent is not keeping up: drop the edge.
                let _ = tx.try_send(Edge {
                    active,
                    at: tokio::time::Instant::now(),
                });
            })
            .map_err(|e| err("button", e))?;
        Ok(rx)
    }
}

/// Builds what each wire needs on a Raspberry Pi.
pub fn build(wiring: &Wiring) -> Result<Vec<(String, Pin)>, HardwareError> {
    let mut rppal = Rppal::default();
    wiring
        .wires
        .iter()
        .map(|w| Ok((w.name.clone(), rppal.pin(w)?)))
        .collect()
}

/// rppal's GPIO, opened on first use, and the hardware PWM channels given out.
#[derive(Default)]
pub(crate) struct Rppal {
    gpio: Option<Gpio>,
    used: Vec<Channel>,
}

impl Rppal {
    fn gpio(&mut self) -> Result<&Gpio, HardwareError> {
        if self.gpio.is_none() {
            self.gpio = Some(Gpio::new().map_err(|e| err("GPIO", e))?);
        }
        self.gpio
            .as_ref()
            .ok_or_else(|| HardwareError::Invalid("GPIO not open".into()))
    }

    /// The output BCM `pin` of `part`, low.
    fn output(&mut self, pin: u32, part: &str) -> Result<OutputPin, HardwareError> {
        let pin = u8::try_from(pin).map_err(|e| err(part, e))?;
        Ok(self
            .gpio()?
            .get(pin)
            .map_err(|e| err(part, e))?
            .into_output_low())
    }

    /// What `wire` needs, on this Pi.
    pub(crate) fn pin(&mut self, wire: &Wire) -> Result<Pin, HardwareError> {
        Ok(match &wire.need {
            &Need::Pwm { pin, hz } => {
                let part = format!("{} {pin}", wire.key);
                let channel = pwm_channel(pin).filter(|c| !self.used.contains(c));
                Pin::Pwm(match channel {
                    Some(c) => {
                        self.used.push(c);
                        let pwm = Pwm::with_frequency(c, hz, 0.0, Polarity::Normal, true).map_err(
                            |e| err(&format!("{part} (hardware PWM: dtoverlay=pwm-2chan?)"), e),
                        )?;
                        Box::new(HardPwm(pwm))
                    }
                    None => Box::new(SoftPwm {
                        pin: self.output(pin, &part)?,
                        frequency: hz,
                    }),
                })
            }
            &Need::Tone { pin, hz } => {
                let out = self.output(pin, &format!("{} {pin}", wire.key))?;
                Pin::Pwm(if hz > 0.0 {
                    Box::new(SoftPwm {
                        pin: out,
                        frequency: hz,
                    })
                } else {
                    Box::new(OnOff(out))
                })
            }
            Need::Outputs { lines, .. } => {
                let pins = lines
                    .iter()
                    .map(|&l| self.output(l, &format!("{} line {l}", wire.key)))
                    .collect::<Result<Vec<_>, _>>()?;
                Pin::Outputs(Box::new(Outputs(pins)))
            }
            &Need::Input { line } => {
                let part = format!("{} {line}", wire.key);
                let n = u8::try_from(line).map_err(|e| err(&part, e))?;
                let pin = self.gpio()?.get(n).map_err(|e| err(&part, e))?;
                Pin::Input(Box::new(Button {
                    pin: pin.into_input_pullup(),
                    started: false,
                }))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwm_channels_of_the_original_pins() {
        assert_eq!(pwm_channel(18), Some(Channel::Pwm0));
        assert_eq!(pwm_channel(5), None, "BCM 5 uses software PWM");
        assert_eq!(pwm_channel(19), Some(Channel::Pwm1));
    }

    #[test]
    fn without_a_pi_the_error_says_so() {
        let mut c = crate::config::Config::default();
        c.matrix.enabled = false;
        match build(&Wiring::of(&c)) {
            Ok(_) => {} // running on a Pi
            Err(e) => assert!(e.to_string().contains("Raspberry Pi"), "{e}"),
        }
    }
}
