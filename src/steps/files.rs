//! File snapshots and atomic writes: what the file-writing steps record before they change a
//! file, and how their rollback puts it back (content, mode and owner), keeping beside it what
//! someone changed since, or removes it (and the folders made for it) if it was absent.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A file as it was before a step changed it, and as the step leaves it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) path: PathBuf,
    /// The previous content's copy, with its mode and owner; `None` if the file did not exist.
    pub(crate) saved: Option<Saved>,
    /// What the step leaves there (`None`: no file). A file that holds anything else at
    /// rollback, and is not back as it was, was changed since: it is kept at `keep_as`.
    pub(crate) left: Option<Stamp>,
    pub(crate) keep_as: PathBuf,
    /// The folders the step's write creates, innermost first: removed on rollback when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) created_dirs: Vec<PathBuf>,
}

/// Where a previous content was saved (a private copy), and how it was.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Saved {
    pub(crate) copy: PathBuf,
    pub(crate) stamp: Stamp,
}

/// A file's content digest, mode and owner (`None` when the step creates the file: whoever
/// runs it owns it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Stamp {
    pub(crate) sha256: String,
    pub(crate) mode: u32,
    pub(crate) owner: Option<(u32, u32)>,
}

impl Stamp {
    /// Whether `actual` (a file as found) is this.
    fn matches(&self, actual: &Stamp) -> bool {
        self.sha256 == actual.sha256
            && self.mode == actual.mode
            && self.owner.is_none_or(|o| Some(o) == actual.owner)
    }
}

/// What a step writes into a file: the content, the mode it asks for, and the mode of a file it
/// creates without one.
pub(crate) struct Write {
    pub(crate) bytes: Vec<u8>,
    pub(crate) mode: Option<u32>,
    pub(crate) new_mode: u32,
}

/// The file at `path` as it is now, `None` if there is none.
fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match fs::read(path) {
        Ok(bytes) => {
            let meta = fs::metadata(path)?;
            Ok(Some(Stamp {
                sha256: crate::plan::sha256(&bytes),
                mode: meta.permissions().mode() & 0o7777,
                owner: Some((meta.uid(), meta.gid())),
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Saves `path` (if it exists) into `dir` under a numbered name, and records what `writes`
/// (given the current content; `None`: the step leaves the file as it is) will leave there.
/// A content someone else changes after the step is kept at `<path>.runner-kept-<run_id>`.
pub(crate) fn snapshot(
    path: &Path,
    dir: &Path,
    index: usize,
    run_id: &str,
    writes: impl FnOnce(Option<&[u8]>) -> Option<Write>,
) -> io::Result<Snapshot> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let keep_as = path.with_file_name(format!("{name}.runner-kept-{run_id}"));
    let (current, saved) = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_file() => {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(meta) => {
            let bytes = fs::read(path)?;
            create_private_dir(dir)?;
            let copy = dir.join(format!("{index}-{name}"));
            // The copy is private whatever the file's mode: it may hold a secret.
            let mut file = create_private_file(&copy)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            let stamp = Stamp {
                sha256: crate::plan::sha256(&bytes),
                mode: meta.permissions().mode() & 0o7777,
                owner: Some((meta.uid(), meta.gid())),
            };
            (Some(bytes), Some(Saved { copy, stamp }))
        }
    };
    let before = saved.as_ref().map(|s| &s.stamp);
    let left = match writes(current.as_deref()) {
        None => before.cloned(),
        Some(w) => Some(Stamp {
            sha256: crate::plan::sha256(&w.bytes),
            mode: w.mode.or(before.map(|b| b.mode)).unwrap_or(w.new_mode),
            owner: before.and_then(|b| b.owner),
        }),
    };
    let created_dirs = match (&saved, &left) {
        (None, Some(_)) => path
            .ancestors()
            .skip(1)
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Snapshot {
        path: path.to_path_buf(),
        saved,
        left,
        keep_as,
        created_dirs,
    })
}

impl Snapshot {
    /// Whether the file, found as `current`, was changed since the step: it is neither what
    /// the step left nor back as it was.
    fn changed(&self, current: Option<&Stamp>) -> bool {
        let Some(current) = current else {
            return false;
        };
        let is = |s: Option<&Stamp>| s.is_some_and(|s| s.matches(current));
        !is(self.left.as_ref()) && !is(self.saved.as_ref().map(|s| &s.stamp))
    }
}

/// Puts the file back as the snapshot found it, with its mode and owner. A file changed since
/// the step is first kept (hard-linked, so its content, mode and owner stay) at `keep_as` (or a
/// numbered name beside it if that is taken); returns where.
pub(crate) fn restore(snapshot: &Snapshot) -> io::Result<Option<PathBuf>> {
    let path = &snapshot.path;
    let kept = if snapshot.changed(stamp(path)?.as_ref()) {
        let mut keep = snapshot.keep_as.clone();
        let mut n = 1;
        while fs::symlink_metadata(&keep).is_ok() {
            n += 1;
            keep = PathBuf::from(format!("{}-{n}", snapshot.keep_as.display()));
        }
        fs::hard_link(path, &keep)?;
        Some(keep)
    } else {
        None
    };
    match &snapshot.saved {
        None => {
            match fs::remove_file(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
            for dir in &snapshot.created_dirs {
                // Only an empty folder goes: anything else in it is someone's.
                if fs::remove_dir(dir).is_err() {
                    break;
                }
            }
        }
        Some(saved) => {
            let bytes = fs::read(&saved.copy)?;
            write_with(path, &bytes, saved.stamp.mode, saved.stamp.owner)?;
        }
    }
    Ok(kept)
}

/// How a rollback summary tells that a file changed since its step was kept.
pub(crate) fn kept_note(snapshot: &Snapshot, at: &Path) -> String {
    format!(
        "; `{}` was changed since the run: its content is kept as `{}`",
        snapshot.path.display(),
        at.display()
    )
}

/// The files a rollback of `snapshots` (in the order it restores them) will find changed
/// since their step, as things are now.
pub(crate) fn changed_since<'a>(
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
) -> io::Result<Vec<&'a Snapshot>> {
    // A file two steps wrote is, once the later one is undone, as that one found it.
    let mut now: HashMap<&Path, Option<Stamp>> = HashMap::new();
    let mut changed = Vec::new();
    for snapshot in snapshots {
        let current = match now.remove(snapshot.path.as_path()) {
            Some(current) => current,
            None => stamp(&snapshot.path)?,
        };
        if snapshot.changed(current.as_ref()) {
            changed.push(snapshot);
        }
        now.insert(
            &snapshot.path,
            snapshot.saved.as_ref().map(|s| s.stamp.clone()),
        );
    }
    Ok(changed)
}

/// What the rollback prompt says of each file a rollback of `undos` (in its order) will find
/// changed since the run.
pub(crate) fn changed_notes<'a>(
    undos: impl IntoIterator<Item = &'a super::Undo>,
) -> io::Result<Vec<String>> {
    let snapshots: Vec<&Snapshot> = undos.into_iter().flat_map(|u| u.snapshots()).collect();
    Ok(changed_since(snapshots)?
        .into_iter()
        .map(|s| {
            format!(
                "`{}` was changed since the run: it is restored, and its current content kept as `{}`",
                s.path.display(),
                s.keep_as.display()
            )
        })
        .collect())
}

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

fn write_with(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(bytes: &[u8], mode: Option<u32>) -> impl FnOnce(Option<&[u8]>) -> Option<Write> {
        let bytes = bytes.to_vec();
        move |_| {
            Some(Write {
                bytes,
                mode,
                new_mode: 0o644,
            })
        }
    }

    #[test]
    fn snapshot_and_restore_round_trip_present_and_absent_files() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("a.txt");
        let absent = dir.path().join("new/sub/b.txt");
        fs::write(&present, "before").unwrap();
        fs::set_permissions(&present, fs::Permissions::from_mode(0o640)).unwrap();
        let backups = dir.path().join("backup");
        let s1 = snapshot(&present, &backups, 0, "r1", writes(b"after", Some(0o644))).unwrap();
        let s2 = snapshot(&absent, &backups, 1, "r1", writes(b"new", None)).unwrap();
        let copy = &s1.saved.as_ref().unwrap().copy;
        assert_eq!(
            fs::metadata(copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&present, b"after", Some(0o644), 0o644).unwrap();
        write_atomic(&absent, b"new", None, 0o644).unwrap();
        assert!(changed_since([&s2, &s1]).unwrap().is_empty());
        assert_eq!(restore(&s1).unwrap(), None);
        assert_eq!(restore(&s2).unwrap(), None);
        assert_eq!(fs::read_to_string(&present).unwrap(), "before");
        assert_eq!(
            fs::metadata(&present).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!absent.exists());
        assert!(
            !dir.path().join("new").exists(),
            "the folders made for it go"
        );
    }

    #[test]
    fn a_file_changed_since_is_kept_beside_the_restored_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.conf");
        fs::write(&path, "v1\r\n").unwrap();
        let backups = dir.path().join("backup");
        // Two steps write the file; the second is undone first.
        let first = snapshot(&path, &backups, 0, "r1", writes(b"v2\r\n", None)).unwrap();
        write_atomic(&path, b"v2\r\n", None, 0o644).unwrap();
        let second = snapshot(&path, &backups, 1, "r1", writes(b"v3\r\n", None)).unwrap();
        write_atomic(&path, b"v3\r\n", None, 0o644).unwrap();
        assert!(changed_since([&second, &first]).unwrap().is_empty());
        fs::write(&path, "hotfix\r\n").unwrap();
        let changed = changed_since([&second, &first]).unwrap();
        assert_eq!(
            changed,
            vec![&second],
            "only the later step finds the hotfix"
        );
        let kept = restore(&second).unwrap().expect("kept");
        assert_eq!(kept, dir.path().join("app.conf.runner-kept-r1"));
        assert_eq!(fs::read_to_string(&kept).unwrap(), "hotfix\r\n");
        assert_eq!(restore(&first).unwrap(), None);
        assert_eq!(fs::read_to_string(&path).unwrap(), "v1\r\n");
    }
}
