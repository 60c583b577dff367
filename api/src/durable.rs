//! Crash-safe writes of the files payrail keeps outside RocksDB (the local
//! gateway secret, the files that go with a backup).
//!
//! A file is written whole or not at all, whatever the moment of a crash or
//! power cut: the contents go to a temporary file in the same directory,
//! which is fsynced, renamed over the target, and then the directory is
//! fsynced so that the rename itself is on disk. A reader sees the old file
//! (or none) or the new one, never an empty or half-written one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The owner only (mode 0600 from the moment the file exists): secrets.
    Private,
    /// Everyone may read it (mode 0644, less the umask).
    Readable,
}

/// The temporary file `write_atomically` uses for `path`: same directory, so
/// the rename never crosses a file system.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `contents` to `path` crash-safely: temporary file, fsync, rename,
/// fsync of the directory. Replaces `path` if it exists.
///
/// A temporary file left by an earlier crash is removed first; the
/// temporary file is created new with the final mode, so a private file is
/// never readable by others, not even for a moment.
pub fn write_atomically(path: &Path, contents: &[u8], access: Access) -> io::Result<()> {
    let temporary = temporary_path(path);
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(match access {
            Access::Private => 0o600,
            Access::Readable => 0o644,
        });
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        // Best effort: a leftover is removed by the next write anyway.
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    sync_parent(path)
}

/// Fsyncs the directory holding `path`, so that a file created, renamed or
/// removed in it stays so after a power cut.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_directory(parent)
}

/// Fsyncs a directory (its entries: names created, renamed or removed).
pub fn sync_directory(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; renames are durable
        // once the call returns on the file systems these platforms use.
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.toml");
        write_atomically(&path, b"first", Access::Private).unwrap();
        write_atomically(&path, b"second", Access::Private).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!temporary_path(&path).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_leftover_temporary_does_not_block_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.toml");
        std::fs::write(temporary_path(&path), b"torn").unwrap();
        write_atomically(&path, b"whole", Access::Readable).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("file");
        assert!(write_atomically(&path, b"x", Access::Private).is_err());
    }
}
