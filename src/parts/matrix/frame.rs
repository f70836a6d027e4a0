//! The matrix's one frame type: which of its 25 LEDs are lit, and the text
//! form (`01110/10001/...`) that commands, state and config use for it.

use std::fmt;
use std::ops::{BitAnd, BitOr};

use crate::quote::clip;

/// Which LEDs of the 5×5 matrix are lit: bit `row * 5 + col`, counted from
/// the top left. Only the low 25 bits are ever set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Frame(u32);

impl Frame {
    /// Number of LEDs in the matrix.
    pub(crate) const LEDS: usize = 25;
    /// No LED lit.
    pub const OFF: Frame = Frame(0);
    /// Every LED lit.
    pub(crate) const ALL: Frame = Frame((1 << Self::LEDS) - 1);

    /// Only LED `i` (row by row from the top left) lit; `OFF` beyond the matrix.
    pub const fn led(i: usize) -> Frame {
        if i < Self::LEDS {
            Frame(1 << i)
        } else {
            Frame(0)
        }
    }

    /// The frame of a bit set (bit `row * 5 + col`); bits beyond the 25th
    /// are dropped.
    pub const fn from_bits(bits: u32) -> Frame {
        Frame(bits & Self::ALL.0)
    }

    /// The frame as a bit set (bit `row * 5 + col`).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The frame whose lit LEDs are the `true` ones of `levels` (row by row).
    pub fn from_leds(levels: &[bool]) -> Frame {
        levels
            .iter()
            .take(Self::LEDS)
            .enumerate()
            .filter(|(_, &on)| on)
            .fold(Frame::OFF, |f, (i, _)| f | Frame::led(i))
    }

    /// Each LED's level, row by row: what a backend is given.
    pub fn leds(self) -> [bool; Self::LEDS] {
        std::array::from_fn(|i| self.is_lit(i))
    }

    /// Whether LED `i` is lit.
    pub(crate) const fn is_lit(self, i: usize) -> bool {
        i < Self::LEDS && self.0 & (1 << i) != 0
    }

    /// Whether no LED is lit.
    pub(crate) const fn is_off(self) -> bool {
        self.0 == 0
    }

    /// The lit LEDs' indexes, in order.
    pub(crate) fn lit(self) -> impl Iterator<Item = usize> {
        (0..Self::LEDS).filter(move |&i| self.is_lit(i))
    }

    /// Parses `01110/10001/10001/10001/01110` (rows top to bottom).
    pub fn parse(text: &str) -> Result<Frame, String> {
        let rows: Vec<&str> = text.trim().split('/').collect();
        if rows.len() != 5 {
            return Err(format!(
                "a frame has 5 rows separated by '/', this has {}",
                rows.len()
            ));
        }
        let mut frame = Frame::OFF;
        for (r, row) in rows.iter().enumerate() {
            if row.chars().count() != 5 || !row.chars().all(|c| c == '0' || c == '1') {
                return Err(format!(
                    "row {} of the frame is {:?}; each row is five of 0 and 1",
                    r + 1,
                    clip(row, 16)
                ));
            }
            for (c, ch) in row.chars().enumerate() {
                if ch == '1' {
                    frame = frame | Frame::led(r * 5 + c);
                }
            }
        }
        Ok(frame)
    }

    /// The frame as `01110/10001/...`, rows top to bottom.
    pub fn to_text(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in 0..5 {
            if r > 0 {
                f.write_str("/")?;
            }
            for c in 0..5 {
                f.write_str(if self.is_lit(r * 5 + c) { "1" } else { "0" })?;
            }
        }
        Ok(())
    }
}

impl BitOr for Frame {
    type Output = Frame;
    fn bitor(self, other: Frame) -> Frame {
        Frame(self.0 | other.0)
    }
}

impl BitAnd for Frame {
    type Output = Frame;
    fn bitand(self, other: Frame) -> Frame {
        Frame(self.0 & other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_bad_rows_are_named() {
        let smiley = "01010/01010/00000/10001/01110";
        let f = Frame::parse(smiley).unwrap();
        assert_eq!(f.to_text(), smiley);
        assert!(f.is_lit(1) && f.is_lit(3) && !f.is_lit(0));
        assert_eq!(Frame::from_leds(&f.leds()), f);
        assert_eq!(Frame::ALL.lit().count(), Frame::LEDS);
        assert!(Frame::OFF.is_off() && Frame::led(25).is_off());
        assert!(Frame::parse("0/0").unwrap_err().contains("5 rows"));
        assert!(Frame::parse("01010/01010/00000/10001/0111x")
            .unwrap_err()
            .contains("row 5"));
    }
}
