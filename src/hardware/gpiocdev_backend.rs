//! The Linux GPIO character device through gpiocdev
//! (`hardware.backend = "gpiocdev"`).
//!
//! The matrix's 25 lines are requested together and set in one call, so a
//! frame changes on all LEDs at once. The button is an input with the pull-up
//! on, active low, its edges read by a task on the agent's runtime. The tilt
//! LEDs need PWM, which the character device has not: they use rppal.

use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, Offset, Value, Values};
use gpiocdev::request::Request;
use gpiocdev::tokio::AsyncRequest;
use tokio::sync::mpsc;

use super::rppal_backend::Rppal;
use super::{DigitalOutputs, Edge, HardwareError, InputEdges, Need, Pin, Wiring};

fn err(part: &str, e: impl std::fmt::Display) -> HardwareError {
    HardwareError::Backend {
        part: part.to_string(),
        message: format!("{e} (is the chip right, and is the user in the gpio group?)"),
    }
}

/// Lines of one chip requested together and written in one call.
pub(crate) struct LineSet {
    request: Request,
    offsets: Vec<Offset>,
    /// Who holds the lines (`edge-agent matrix`), for error messages.
    consumer: String,
}

impl LineSet {
    /// Requests `offsets` on `chip` as outputs, all inactive.
    pub(crate) fn request(
        chip: &str,
        offsets: &[u32],
        consumer: &str,
    ) -> Result<Self, HardwareError> {
        let request = Request::builder()
            .on_chip(chip)
            .with_consumer(consumer)
            .with_lines(offsets)
            .as_output(Value::Inactive)
            .request()
            .map_err(|e| err(&format!("{consumer} on {chip}"), e))?;
        Ok(LineSet {
            request,
            offsets: offsets.to_vec(),
            consumer: consumer.to_string(),
        })
    }
}

/// The values to set for `levels` on `offsets`.
pub fn values(offsets: &[Offset], levels: &[bool]) -> Values {
    offsets
        .iter()
        .zip(levels)
        .map(|(o, on)| (*o, if *on { Value::Active } else { Value::Inactive }))
        .collect()
}

impl DigitalOutputs for LineSet {
    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn write(&mut self, levels: &[bool]) -> Result<(), HardwareError> {
        if levels.len() != self.offsets.len() {
            return Err(HardwareError::Invalid(format!(
                "{} levels for {} lines",
                levels.len(),
                self.offsets.len()
            )));
        }
        self.request
            .set_values(&values(&self.offsets, levels))
            .map_err(|e| err(&self.consumer, e))
    }
}

/// The button line.
struct Button {
    request: Option<Request>,
}

impl InputEdges for Button {
    fn edges(&mut self) -> Result<mpsc::Receiver<Edge>, HardwareError> {
        let request = self
            .request
            .take()
            .ok_or_else(|| HardwareError::Invalid("edges already taken".into()))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let req = AsyncRequest::new(request);
            while let Ok(ev) = req.read_edge_event().await {
                // Active low: "rising" is the line becoming active, i.e. pressed.
                let edge = Edge {
                    active: ev.kind == EdgeKind::Rising,
                    at: tokio::time::Instant::now(),
                };
                if tx.send(edge).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// Builds what each wire needs: outputs and inputs on the GPIO character
/// device, PWM and tones through rppal.
pub fn build(wiring: &Wiring) -> Result<Vec<(String, Pin)>, HardwareError> {
    let mut rppal = Rppal::default();
    let mut pins = Vec::new();
    for wire in &wiring.wires {
        let consumer = format!("edge-agent {}", wire.name);
        let pin = match &wire.need {
            Need::Outputs { chip, lines } => {
                Pin::Outputs(Box::new(LineSet::request(chip, lines, &consumer)?))
            }
            &Need::Input { line } => {
                let chip = wiring.chip.as_str();
                let request = Request::builder()
                    .on_chip(chip)
                    .with_consumer(&consumer)
                    .with_line(line)
                    .as_input()
                    .as_active_low()
                    .with_bias(Bias::PullUp)
                    .with_edge_detection(EdgeDetection::BothEdges)
                    .request()
                    .map_err(|e| err(&format!("{} {line} on {chip}", wire.key), e))?;
                Pin::Input(Box::new(Button {
                    request: Some(request),
                }))
            }
            Need::Pwm { .. } | Need::Tone { .. } => rppal.pin(wire)?,
        };
        pins.push((wire.name.clone(), pin));
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_line() {
        let v = values(&[4, 17, 22], &[true, false, true]);
        assert_eq!(v.get(4), Some(Value::Active));
        assert_eq!(v.get(17), Some(Value::Inactive));
        assert_eq!(v.get(22), Some(Value::Active));
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn a_missing_chip_is_a_clear_error() {
        let e = LineSet::request("/dev/gpiochip-none", &[1, 2], "edge-agent test")
            .err()
            .expect("no such chip");
        assert!(e.to_string().contains("/dev/gpiochip-none"), "{e}");
    }
}
