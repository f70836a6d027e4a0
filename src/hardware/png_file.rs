//! A display that writes each frame to a PNG file, atomically (write a
//! temporary file beside it, then rename), so a person can open it at any time.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{BitFrame, Display, HardwareError};

/// The PNG-file display.
pub struct PngDisplay {
    path: PathBuf,
    size: (u32, u32),
}

impl PngDisplay {
    /// A display of `width` × `height` that writes to `path`.
    pub fn new(path: impl Into<PathBuf>, width: u32, height: u32) -> Self {
        PngDisplay {
            path: path.into(),
            size: (width, height),
        }
    }

    /// Where the frames go.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> HardwareError {
    HardwareError::Backend {
        part: format!("display {}", path.display()),
        message: e.to_string(),
    }
}

/// Encodes a frame as a 1-bit grayscale PNG (black on white).
pub fn encode(frame: &BitFrame) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, frame.width, frame.height);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut w = enc.write_header()?;
        // PNG 1-bit grayscale: leftmost pixel in the most significant bit, 1 = white.
        let row_bytes = frame.width.div_ceil(8) as usize;
        let mut data = vec![0u8; row_bytes * frame.height as usize];
        for y in 0..frame.height as usize {
            for x in 0..frame.width as usize {
                if !frame.pixels[y * frame.width as usize + x] {
                    data[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
                }
            }
        }
        w.write_image_data(&data)?;
    }
    Ok(out)
}

impl Display for PngDisplay {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn show(&mut self, frame: &BitFrame) -> Result<(), HardwareError> {
        let bytes = encode(frame).map_err(|e| err(&self.path, e))?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(&self.path, e)
        })
    }

    fn is_slow(&self) -> bool {
        // It writes and syncs a file (0.5 ms here, far longer on an SD
        // card): not on the thread that also runs MQTT and the matrix.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_that_decodes_to_the_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.png");
        let mut d = PngDisplay::new(&path, 13, 3);
        let mut pixels = vec![false; 39];
        pixels[0] = true; // top left black
        pixels[12] = true; // end of the first row
        pixels[13 + 5] = true;
        d.show(&BitFrame {
            width: 13,
            height: 3,
            pixels: pixels.clone(),
        })
        .unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (13, 3));
        assert_eq!(info.bit_depth, png::BitDepth::One);
        let black = |x: usize, y: usize| buf[y * info.line_size + x / 8] & (0x80 >> (x % 8)) == 0;
        for y in 0..3 {
            for x in 0..13 {
                assert_eq!(black(x, y), pixels[y * 13 + x], "pixel {x},{y}");
            }
        }
        // Nothing left behind but the PNG.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("board.png")]);
    }

    #[test]
    fn an_unwritable_path_is_an_error_not_a_panic() {
        let mut d = PngDisplay::new("/nonexistent-dir/board.png", 8, 1);
        assert!(d
            .show(&BitFrame {
                width: 8,
                height: 1,
                pixels: vec![false; 8]
            })
            .is_err());
    }
}
