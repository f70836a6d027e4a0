//! The Embedded Artists / Pervasive Displays EPD driver's file interface
//! (repaper "gratis" `epd_fuse`, usually mounted at `/dev/epd`).
//!
//! The folder holds `version`, `panel` (e.g. `EPD 2.7 264x176 COG 2 FILM 231`),
//! `display` (the next image) and `command` (`U` = full update). An image in
//! `display` is `width / 8` bytes a row, rows top to bottom, the leftmost
//! pixel of each byte in the least significant bit, and a set bit black.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{BitFrame, Display, HardwareError};

/// The byte written to `command` for a full update.
pub(crate) const UPDATE: &[u8] = b"U";

/// The byte written to `command` for a partial update.
pub(crate) const PARTIAL: &[u8] = b"P";

/// A panel driven through the EPD file interface.
pub(crate) struct EpdFile {
    dir: PathBuf,
    size: (u32, u32),
}

fn err(dir: &Path, e: impl std::fmt::Display) -> HardwareError {
    HardwareError::Backend {
        part: format!("EPD driver at {}", dir.display()),
        message: e.to_string(),
    }
}

/// Reads `WxH` from the `panel` line, e.g. `EPD 2.7 264x176 COG 2 FILM 231`.
pub(crate) fn parse_panel(line: &str) -> Option<(u32, u32)> {
    let mut words = line.split_whitespace();
    if words.next() != Some("EPD") {
        return None;
    }
    words.find_map(|w| {
        let (a, b) = w.split_once('x')?;
        let (w, h) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
        (w > 0 && h > 0 && w % 8 == 0).then_some((w, h))
    })
}

/// Packs a frame in the driver's order: LSB = leftmost pixel, 1 = black.
pub(crate) fn pack(frame: &BitFrame) -> Vec<u8> {
    let row = (frame.width / 8) as usize;
    let mut out = vec![0u8; row * frame.height as usize];
    for y in 0..frame.height as usize {
        for x in 0..frame.width as usize {
            if frame.pixels[y * frame.width as usize + x] {
                out[y * row + x / 8] |= 1 << (x % 8);
            }
        }
    }
    out
}

impl EpdFile {
    /// Opens the driver folder and reads the panel size from `panel`.
    pub(crate) fn open(dir: impl Into<PathBuf>) -> Result<Self, HardwareError> {
        let dir = dir.into();
        let panel = std::fs::read_to_string(dir.join("panel"))
            .map_err(|e| err(&dir, format!("panel: {e}")))?;
        let line = panel.lines().next().unwrap_or_default();
        let size = parse_panel(line).ok_or_else(|| {
            err(
                &dir,
                format!("panel says {line:?}; expected e.g. \"EPD 2.7 264x176 COG 2 FILM 231\""),
            )
        })?;
        for f in ["display", "command"] {
            if !dir.join(f).exists() {
                return Err(err(
                    &dir,
                    format!("no {f} file: is the EPD driver (epd_fuse) running?"),
                ));
            }
        }
        Ok(EpdFile { dir, size })
    }
}

impl EpdFile {
    /// Writes the frame, then the update `command`.
    fn update(&mut self, frame: &BitFrame, command: &[u8]) -> Result<(), HardwareError> {
        if (frame.width, frame.height) != self.size {
            return Err(err(
                &self.dir,
                format!(
                    "frame {}x{} for a {}x{} panel",
                    frame.width, frame.height, self.size.0, self.size.1
                ),
            ));
        }
        let write = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
            // The driver's files exist already and do not truncate.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(self.dir.join(name))?;
            f.write_all(bytes)?;
            f.flush()
        };
        write("display", &pack(frame)).map_err(|e| err(&self.dir, format!("display: {e}")))?;
        write("command", command).map_err(|e| err(&self.dir, format!("command: {e}")))
    }
}

impl Display for EpdFile {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn show(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        self.update(frame, UPDATE)
    }

    fn has_partial_refresh(&self) -> bool {
        true
    }

    fn show_partial(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        self.update(frame, PARTIAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_lines() {
        assert_eq!(
            parse_panel("EPD 2.7 264x176 COG 2 FILM 231"),
            Some((264, 176))
        );
        assert_eq!(parse_panel("EPD 1.44 128x96 COG 1"), Some((128, 96)));
        assert_eq!(parse_panel("EPD 2.7 COG 2"), None);
        assert_eq!(parse_panel("LCD 264x176"), None);
    }
}
