//! File snapshots and atomic writes: what the file-writing steps record before they change a
//! file, and how their rollback puts it back byte for byte (or removes it if it was absent).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A file as it was before a step changed it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) path: PathBuf,
    /// Where the previous content was saved; `None` if the file did not exist.
    pub(crate) saved: Option<PathBuf>,
}

/// Saves `path` (if it exists) into `dir` under a numbered name, and says how to restore it.
pub(crate) fn snapshot(path: &Path, dir: &Path, index: usize) -> io::Result<Snapshot> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Snapshot {
            path: path.to_path_buf(),
            saved: None,
        }),
        Err(e) => Err(e),
        Ok(meta) if !meta.is_file() => Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        ))),
        Ok(_) => {
            create_private_dir(dir)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let saved = dir.join(format!("{index}-{name}"));
            fs::copy(path, &saved)?;
            fs::File::open(&saved)?.sync_all()?;
            Ok(Snapshot {
                path: path.to_path_buf(),
                saved: Some(saved),
            })
        }
    }
}

/// Puts the file back as the snapshot found it.
pub(crate) fn restore(snapshot: &Snapshot) -> io::Result<()> {
    match &snapshot.saved {
        None => match fs::remove_file(&snapshot.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
        Some(saved) => {
            let bytes = fs::read(saved)?;
            let mode = fs::metadata(saved)?.permissions().mode() & 0o7777;
            write_atomic(&snapshot.path, &bytes, Some(mode), mode)
        }
    }
}

/// Writes through a temporary file in the same directory and renames it into place, so a crash
/// leaves either the old or the new content, never half of one.
/// A file that did not exist is created with `new_mode`; the temporary file is private until
/// it has its mode, so a secret is never readable by others on the way.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    new_mode: u32,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mode = match mode {
        Some(m) => m,
        None => fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(new_mode),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.runner-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` (atomically) unless it already holds them and no `mode` is asked
/// for; returns whether it wrote.
pub(crate) fn replace(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    new_mode: u32,
) -> io::Result<bool> {
    if mode.is_none() && read_optional(path)?.as_deref() == Some(bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes, mode, new_mode)?;
    Ok(true)
}

/// Creates a directory only its owner can read: backups may hold secrets.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Reads a file, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a path holds when it is not a regular file ("a directory", "a FIFO", ...).
pub(crate) fn kind(file_type: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_block_device() || file_type.is_char_device() {
        Some("a device")
    } else {
        Some("a special file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_restore_round_trip_present_and_absent_files() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("a.txt");
        let absent = dir.path().join("b.txt");
        fs::write(&present, "before").unwrap();
        fs::set_permissions(&present, fs::Permissions::from_mode(0o600)).unwrap();
        let backups = dir.path().join("backup");
        let s1 = snapshot(&present, &backups, 0).unwrap();
        let s2 = snapshot(&absent, &backups, 1).unwrap();
        write_atomic(&present, b"after", Some(0o644), 0o644).unwrap();
        write_atomic(&absent, b"new", None, 0o644).unwrap();
        restore(&s1).unwrap();
        restore(&s2).unwrap();
        assert_eq!(fs::read_to_string(&present).unwrap(), "before");
        assert_eq!(
            fs::metadata(&present).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!absent.exists());
    }
}
