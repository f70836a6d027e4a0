//! Patterns saved under a name (`matrix/pattern/<name>/set`): one JSON file
//! each in `<device.state_dir>/patterns/`, read at the start, so that they
//! outlive a restart and join the named patterns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::pattern::{parse, Library, Limits};

/// The most saved patterns.
pub(crate) const MAX_SAVED: usize = 64;

/// The longest name of a saved pattern.
pub(crate) const MAX_NAME: usize = 32;

/// Why `name` cannot name a saved pattern, if it cannot.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !fine {
        return Err(format!(
            "a saved pattern's name is 1 to {MAX_NAME} of a-z, 0-9, '_' and '-'"
        ));
    }
    if name == "on" || name == "off" {
        return Err(format!("{name:?} is a command, not a pattern's name"));
    }
    Ok(())
}

/// The folder of saved patterns.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store below the agent's state directory.
    pub(crate) fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("patterns"),
        }
    }

    /// Where it keeps them.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Adds every saved pattern to `library`, by name; a file that is not a
    /// valid program under a valid name is left out, with a warning. One
    /// may use another by name, whatever their files' order.
    pub(crate) fn load(&self, library: &mut Library) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return; // none saved yet
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        let mut pending = Vec::new();
        for path in files {
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| !n.starts_with('.'))
                .map(String::from)
            else {
                continue;
            };
            let read = check_name(&name).and_then(|()| {
                if library.is_shipped(&name) {
                    return Err("a shipped pattern has that name".to_string());
                }
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| e.to_string())
            });
            match read {
                Ok(v) => pending.push((path, name, v)),
                Err(e) => warn!(file = %path.display(), error = %e, "saved pattern left out"),
            }
        }
        // Until a round takes none: those that name others come after them.
        loop {
            let before = pending.len();
            let mut left = Vec::new();
            for (path, name, v) in pending {
                match parse(&v, Limits::default(), library) {
                    Ok(p) if library.saved() < MAX_SAVED => library.put(&name, Arc::new(p)),
                    Ok(_) => {
                        warn!(file = %path.display(), "saved pattern left out: more than {MAX_SAVED}")
                    }
                    Err(e) => left.push((path, name, v, e)),
                }
            }
            let progress = left.len() < before;
            pending = left.into_iter().map(|(p, n, v, _)| (p, n, v)).collect();
            if pending.is_empty() || !progress {
                break;
            }
        }
        for (path, _, v) in pending {
            let e = parse(&v, Limits::default(), library)
                .err()
                .map(|e| e.to_string());
            warn!(file = %path.display(), error = e.unwrap_or_default(), "saved pattern left out");
        }
    }

    /// Keeps `program` (JSON text) under `name`, replacing what was.
    pub(crate) fn save(&self, name: &str, program: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Written whole, then put in place: a power cut leaves the old or the new.
        let tmp = self.dir.join(format!(".{name}.json.tmp"));
        std::fs::write(&tmp, program)?;
        std::fs::rename(&tmp, self.file(name))
    }

    /// Forgets the pattern `name`.
    pub(crate) fn delete(&self, name: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.file(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_not_commands() {
        for good in ["blinky", "a", "night-light_2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Blinky",
            "a b",
            "x/y",
            "on",
            "off",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn saved_files_come_back_and_bad_ones_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store
            .save("cross", r#"{"frame": "10001/01010/00100/01010/10001"}"#)
            .unwrap();
        store
            .save(
                "blinky",
                r#"{"blink": {"leds": "cross", "interval_ms": 100}}"#,
            )
            .unwrap();
        std::fs::write(store.dir().join("broken.json"), "{").unwrap();
        std::fs::write(
            store.dir().join("smiley.json"),
            r#"{"frame": "00000/00000/00000/00000/00000"}"#,
        )
        .unwrap();
        std::fs::write(
            store.dir().join("Upper.json"),
            r#"{"frame": "00000/00000/00000/00000/00000"}"#,
        )
        .unwrap();
        let mut lib = Library::builtin().unwrap();
        let shipped = lib.names().len();
        store.load(&mut lib);
        // `blinky` uses `cross`, whose file comes after its own.
        assert_eq!(lib.saved(), 2, "{:?}", lib.names());
        assert!(lib.get("blinky").is_some());
        assert!(lib.get("cross").is_some());
        assert!(!lib.is_shipped("cross") && lib.is_shipped("smiley"));
        assert_eq!(lib.names().len(), shipped + 2);
        store.delete("cross").unwrap();
        let mut again = Library::builtin().unwrap();
        store.load(&mut again);
        assert_eq!(again.saved(), 0, "blinky names a pattern that is gone");
    }
}
