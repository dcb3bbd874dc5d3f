//! Crash-safe file writes, and the one JSON reader: every file attnscope writes for a user (checkpoints, exported
//! models, cards, configs) goes to a temporary file beside its destination, is flushed to
//! disk, and is renamed over the destination. A kill at any moment leaves either the
//! previous good file or the new one, never a torn one.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The temporary name beside `path` that a write goes to first.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes the file `path` through `write`, which is given a temporary path to create, then
/// flushes it and renames it over `path`.
pub fn write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| {
        let f = std::fs::File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // The rename itself reaches the disk with the folder.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` crash-safely.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_with(path, |tmp| {
        std::fs::write(tmp, bytes.as_ref()).map_err(|e| Error::io(tmp, e))
    })
}

/// Copies `from` to `to` crash-safely.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    write_with(to, |tmp| {
        std::fs::copy(from, tmp)
            .map(|_| ())
            .map_err(|e| Error::io(from, e))
    })
}

/// Reads and parses a JSON file; a file that is not valid JSON of type `T` is that file's
/// fault ([`Error::BadFile`]).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, "one").unwrap();
        write(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        copy(&p, &dir.path().join("b.json")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.json")).unwrap(),
            "two"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, "good").unwrap();
        let failed = write_with(&p, |tmp| {
            std::fs::write(tmp, "half").unwrap();
            Err(Error::Invalid("killed here".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "good");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
