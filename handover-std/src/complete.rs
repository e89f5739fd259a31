//! Writing the supervisor's hand-over-complete file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `path` atomically: a temporary file in the same directory, then a rename, so
/// the supervisor (which polls every 100 ms) never sees a half-written file. Creates
/// the directory if needed.
pub fn write_complete_file(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp)?;
    // No fsync: the file signals a process on this host, which the rename alone makes
    // atomic; surviving a power cut does not matter (and an fsync costs ~100 ms on
    // slow storage, delaying the supervisor's kill of this container).
    file.write_all(b"handover complete\n")?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_directory_and_file() {
        let dir = std::env::temp_dir().join(format!("handover-complete-{}", std::process::id()));
        let path = dir.join("nested/handover-complete");
        write_complete_file(&path).unwrap();
        assert!(path.is_file());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_is_an_error_not_a_panic() {
        // A regular file where a directory should be.
        let file = std::env::temp_dir().join(format!("handover-notadir-{}", std::process::id()));
        fs::write(&file, b"x").unwrap();
        assert!(write_complete_file(&file.join("handover-complete")).is_err());
        fs::remove_file(&file).unwrap();
    }
}
