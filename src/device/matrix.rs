//! The 5×5 LED matrix: frames written as one set of 25 outputs.

use crate::command::{Frame, MatrixSet};
use crate::hardware::{DigitalOutputs, HardwareError};

/// What the matrix shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixState {
    /// Whether the matrix is on.
    pub on: bool,
    /// The frame on the LEDs now.
    pub shown: Frame,
}

/// The matrix and its state.
pub struct Matrix {
    outputs: Box<dyn DigitalOutputs>,
    shown: Frame,
    /// The last frame with a lit LED, for `ON` after `OFF`.
    last_lit: Option<Frame>,
}

impl Matrix {
    /// Takes the outputs and turns every LED off.
    pub fn new(mut outputs: Box<dyn DigitalOutputs>) -> Result<Self, HardwareError> {
        if outputs.len() != crate::command::MATRIX_LEDS {
            return Err(HardwareError::Invalid(format!(
                "the matrix needs 25 outputs, the backend has {}",
                outputs.len()
            )));
        }
        outputs.write(&Frame::default().0)?;
        Ok(Matrix {
            outputs,
            shown: Frame::default(),
            last_lit: None,
        })
    }

    /// The current state.
    pub fn state(&self) -> MatrixState {
        MatrixState {
            on: self.shown.any_lit(),
            shown: self.shown,
        }
    }

    /// Applies a command; the state changes only if the hardware took it.
    pub fn apply(&mut self, set: &MatrixSet) -> Result<MatrixState, HardwareError> {
        let next = match set {
            MatrixSet::Frame(f) => *f,
            MatrixSet::Off => Frame::default(),
            MatrixSet::On => self.last_lit.unwrap_or(Frame([true; 25])),
        };
        self.show(next)
    }

    /// Turns every LED off.
    pub fn off(&mut self) -> Result<MatrixState, HardwareError> {
        self.show(Frame::default())
    }

    fn show(&mut self, next: Frame) -> Result<MatrixState, HardwareError> {
        if next != self.shown {
            self.outputs.write(&next.0)?;
            self.shown = next;
        }
        if next.any_lit() {
            self.last_lit = Some(next);
        }
        Ok(self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::SimOutputs;

    #[test]
    fn frames_off_and_on_again() {
        let o = SimOutputs::new(25);
        let rec = o.writes.clone();
        let mut m = Matrix::new(Box::new(o)).unwrap();
        let f = Frame::parse("10000/00000/00000/00000/00001").unwrap();
        assert!(m.apply(&MatrixSet::Frame(f)).unwrap().on);
        m.apply(&MatrixSet::Frame(f)).unwrap(); // unchanged: not written again
        assert!(!m.apply(&MatrixSet::Off).unwrap().on);
        assert_eq!(m.apply(&MatrixSet::On).unwrap().shown, f);
        let writes = rec.values();
        assert_eq!(writes.len(), 4);
        assert!(writes[1][0] && writes[1][24] && !writes[1][1]);
    }
}
