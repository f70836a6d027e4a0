//! A Waveshare 2.7" e-paper panel (264×176) on the Raspberry Pi's SPI bus,
//! through epd-waveshare over rppal. Built with the `waveshare` feature.
//!
//! The panel's own orientation is portrait (176 wide, 264 tall); frames are
//! landscape, so they are turned a quarter turn while packing.

use epd_waveshare::epd2in7b::{Epd2in7b, HEIGHT, WIDTH};
use epd_waveshare::prelude::WaveshareDisplay;
use rppal::gpio::{Gpio, InputPin, OutputPin};
use rppal::hal::Delay;
use rppal::spi::{Bus, Mode, SimpleHalSpiDevice, SlaveSelect, Spi};

use super::{BitFrame, Display, HardwareError};
use crate::config::DisplayConfig;

type Panel = Epd2in7b<SimpleHalSpiDevice, InputPin, OutputPin, OutputPin, Delay>;

/// The panel and its SPI device.
pub(crate) struct Waveshare27 {
    spi: SimpleHalSpiDevice,
    epd: Panel,
    delay: Delay,
}

fn err(e: impl std::fmt::Debug) -> HardwareError {
    HardwareError::Backend {
        part: "Waveshare 2.7\" panel".into(),
        message: format!("{e:?}"),
    }
}

impl Waveshare27 {
    /// Opens SPI0 CE0 and the reset, data/command and busy lines of `[display]`.
    pub(crate) fn open(c: &DisplayConfig) -> Result<Self, HardwareError> {
        let gpio = Gpio::new().map_err(err)?;
        let busy = gpio.get(c.busy_pin as u8).map_err(err)?.into_input();
        let dc = gpio.get(c.dc_pin as u8).map_err(err)?.into_output();
        let rst = gpio.get(c.rst_pin as u8).map_err(err)?.into_output();
        let spi = Spi::new(Bus::Spi0, SlaveSelect::Ss0, 4_000_000, Mode::Mode0).map_err(err)?;
        let mut spi = SimpleHalSpiDevice::new(spi);
        let mut delay = Delay::new();
        let epd = Epd2in7b::new(&mut spi, busy, dc, rst, &mut delay, None).map_err(err)?;
        Ok(Waveshare27 { spi, epd, delay })
    }
}

/// Packs a landscape frame for the portrait panel: MSB = leftmost pixel of
/// the panel's row, a set bit white.
pub(crate) fn pack(frame: &BitFrame) -> Vec<u8> {
    let (pw, ph) = (WIDTH as usize, HEIGHT as usize);
    let row = pw / 8;
    let mut out = vec![0xFFu8; row * ph];
    for y in 0..frame.height as usize {
        for x in 0..frame.width as usize {
            if frame.pixels[y * frame.width as usize + x] {
                // Quarter turn: landscape (x, y) -> panel (pw - 1 - y, x).
                let (px, py) = (pw - 1 - y, x);
                out[py * row + px / 8] &= !(0x80 >> (px % 8));
            }
        }
    }
    out
}

impl Display for Waveshare27 {
    fn size(&self) -> (u32, u32) {
        (HEIGHT, WIDTH)
    }

    fn show(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        if (frame.width, frame.height) != (HEIGHT, WIDTH) {
            return Err(HardwareError::Invalid(format!(
                "frame {}x{} for a {}x{} panel",
                frame.width, frame.height, HEIGHT, WIDTH
            )));
        }
        let buffer = pack(frame);
        self.epd
            .update_frame(&mut self.spi, &buffer, &mut self.delay)
            .map_err(err)?;
        self.epd
            .display_frame(&mut self.spi, &mut self.delay)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_turns_the_frame_a_quarter() {
        let mut pixels = vec![false; 264 * 176];
        pixels[0] = true; // landscape top left
        let out = pack(&BitFrame {
            width: 264,
            height: 176,
            pixels,
        });
        assert_eq!(out.len(), 176 / 8 * 264);
        // -> panel (175, 0): last byte of the first row, lowest bit cleared.
        assert_eq!(out[21], 0xFE);
        assert_eq!(out.iter().filter(|&&b| b != 0xFF).count(), 1);
    }
}
