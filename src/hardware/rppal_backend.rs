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

use super::{
    DigitalOutputs, Edge, Hardware, HardwareError, InputEdges, NamedPwm, PwmChannel, Wiring,
};

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

/// The buzzer: a digital output, or software PWM at its tone frequency.
pub(crate) fn buzzer(wiring: &Wiring) -> Result<Option<Box<dyn PwmChannel>>, HardwareError> {
    let Some((bcm, tone_hz)) = wiring.buzzer else {
        return Ok(None);
    };
    let part = format!("buzzer.pin {bcm}");
    let gpio = Gpio::new().map_err(|e| err("GPIO", e))?;
    let pin = gpio
        .get(bcm as u8)
        .map_err(|e| err(&part, e))?
        .into_output_low();
    Ok(Some(if tone_hz > 0.0 {
        Box::new(SoftPwm {
            pin,
            frequency: tone_hz,
        })
    } else {
        Box::new(OnOff(pin))
    }))
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

/// The tilt LEDs' PWM channels, named `left` and `right` (none if tilt is off).
pub(crate) fn leds(wiring: &Wiring) -> Result<Vec<NamedPwm>, HardwareError> {
    let mut leds: Vec<NamedPwm> = Vec::new();
    let Some((pins, freq)) = wiring.leds else {
        return Ok(leds);
    };
    let gpio = Gpio::new().map_err(|e| err("GPIO", e))?;
    {
        let mut used = Vec::new();
        for (name, pin) in pins {
            let part = format!("tilt.{name}_pin {pin}");
            let channel = pwm_channel(pin).filter(|c| !used.contains(&(*c as u8)));
            let ch: Box<dyn PwmChannel> = match channel {
                Some(c) => {
                    used.push(c as u8);
                    let pwm =
                        Pwm::with_frequency(c, freq, 0.0, Polarity::Normal, true).map_err(|e| {
                            err(&format!("{part} (hardware PWM: dtoverlay=pwm-2chan?)"), e)
                        })?;
                    Box::new(HardPwm(pwm))
                }
                None => {
                    let pin = gpio
                        .get(pin as u8)
                        .map_err(|e| err(&part, e))?
                        .into_output_low();
                    Box::new(SoftPwm {
                        pin,
                        frequency: freq,
                    })
                }
            };
            leds.push((name.to_string(), ch));
        }
    }
    Ok(leds)
}

/// Builds the parts the configuration enables on a Raspberry Pi.
pub fn build(wiring: &Wiring) -> Result<Hardware, HardwareError> {
    let leds = leds(wiring)?;
    let gpio = Gpio::new().map_err(|e| err("GPIO", e))?;
    let matrix = if let Some((_, lines)) = &wiring.matrix {
        let pins = lines
            .iter()
            .map(|&l| {
                gpio.get(l as u8)
                    .map(|p| p.into_output_low())
                    .map_err(|e| err(&format!("matrix line {l}"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(Box::new(Outputs(pins)) as Box<dyn DigitalOutputs>)
    } else {
        None
    };
    let button = if let Some(line) = wiring.button {
        let pin = gpio
            .get(line as u8)
            .map_err(|e| err(&format!("button.pin {line}"), e))?
            .into_input_pullup();
        Some(Box::new(Button {
            pin,
            started: false,
        }) as Box<dyn InputEdges>)
    } else {
        None
    };
    Ok(Hardware {
        leds,
        matrix,
        button,
        display: None,
        buzzer: buzzer(wiring)?,
        sim: None,
    })
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
