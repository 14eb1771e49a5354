//! File helpers every layer uses: atomic writes (fsync'd, mode and owner kept), private
//! directories and files for what may hold secrets, and reads that take absence for an answer.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes through a temporary file in the same directory and renames it into place, so a crash
/// leaves either the old or the new content, never half of one. A file that exists keeps its
/// owner and group, and its mode unless `mode` is given; one that did not is created with
/// `new_mode`. The temporary file is private until it has its mode, so a secret is never
/// readable by others on the way.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    new_mode: u32,
) -> io::Result<()> {
    let (current_mode, owner) = match fs::metadata(path) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (new_mode, None),
        Err(e) => return Err(e),
    };
    write_with(path, bytes, mode.unwrap_or(current_mode), owner)
}

pub(crate) fn write_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
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
        if let Some((uid, gid)) = owner {
            let made = file.metadata()?;
            if (made.uid(), made.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
        }
        // After the owner: chown clears the set-id bits.
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

/// Creates a directory (and its missing parents) only its owner can read: backups may hold
/// secrets.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Creates (or empties) a file only its owner can read, for a backup that may hold secrets.
pub(crate) fn create_private_file(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Reads a file, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `path` holds when something is there that is not a regular file ("a FIFO", ...):
/// reading a FIFO would wait forever.
pub(crate) fn special(path: &Path) -> Option<&'static str> {
    kind(&fs::metadata(path).ok()?.file_type())
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
