//! A display that writes each frame to a PNG file, atomically (write a
//! temporary file beside it, then rename), so a person can open it at any time.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
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

/// The mode of the PNG file: the agent's choice, whatever the umask.
const MODE: u32 = 0o644;

/// Replaces the file at `path` with `bytes`, so that a reader sees the old
/// file or the new one, never part of one; a symlink at `path` is replaced,
/// not written through.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A fresh name, created exclusively (O_EXCL: an existing file or symlink
    // there is an error, and another name is tried); removed when dropped.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // On the handle (fchmod), so the umask does not apply.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(MODE))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // rename(2): the entry at `path` is replaced, whatever it is. On failure
    // the temporary file is dropped, which removes it.
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// Encodes a frame as a 1-bit grayscale PNG (black on white).
pub(crate) fn encode(frame: &BitFrame) -> Result<Vec<u8>, png::EncodingError> {
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
        replace(&self.path, &bytes).map_err(|e| err(&self.path, e))
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

    fn blank() -> BitFrame {
        BitFrame {
            width: 8,
            height: 1,
            pixels: vec![false; 8],
        }
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let path = dir.path().join("board.png");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        PngDisplay::new(&path, 8, 1).show(&blank()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
        assert_eq!(names_in(dir.path()), ["board.png", "victim"]);
    }

    #[test]
    fn symlinks_at_temporary_names_are_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        // The names a guessable scheme would use: the process id, or nothing.
        for planted in [
            format!(".board.png.{}.tmp", std::process::id()),
            ".board.png.tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(planted)).unwrap();
        }
        let path = dir.path().join("board.png");
        PngDisplay::new(&path, 8, 1).show(&blank()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn the_file_is_0644_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.png");
        // The umask is the process's: other tests running meanwhile only get
        // files private to this user, which they can still read and write.
        // SAFETY: umask(2) cannot fail and only sets the process's mask.
        let old = unsafe { libc::umask(0o077) };
        let shown = PngDisplay::new(&path, 8, 1).show(&blank());
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        shown.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        // And again over an existing file.
        PngDisplay::new(&path, 8, 1).show(&blank()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        assert_eq!(names_in(dir.path()), ["board.png"]);
    }

    #[test]
    fn a_failed_replace_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory at the target: rename(2) over it fails.
        let path = dir.path().join("board.png");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(PngDisplay::new(&path, 8, 1).show(&blank()).is_err());
        assert_eq!(names_in(dir.path()), ["board.png"]);
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
