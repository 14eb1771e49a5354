//! One run at a time per state dir: an exclusive `flock` on `<state>/lock`, which records who
//! holds it. The kernel drops the lock when its holder dies, so a crash never leaves it stuck;
//! `--force-unlock` is for a holder that is alive but hung.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who holds (or last held) the lock.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    started_at: String,
    command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {} (`{}`)",
            self.pid, self.host, self.started_at, self.command
        )
    }
}

/// The held lock; dropping it releases it.
pub(crate) struct Lock {
    file: File,
}

impl Lock {
    /// Takes the lock for `command`, or refuses naming the holder. Returns a warning when a
    /// dead holder's record was found or a live one was forced out.
    pub(crate) fn acquire(
        state_dir: &Path,
        command: &str,
        force: bool,
    ) -> Result<(Lock, Option<String>)> {
        // Backups and undo records in it may hold secrets: only its owner may read it.
        crate::fs::create_private_dir(state_dir).map_err(Error::io(format!(
            "cannot create state dir `{}`",
            state_dir.display()
        )))?;
        let path = state_dir.join("lock");
        let mut file = open(&path)?;
        let mut warning = None;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file)
                    .map_or("an unknown process".to_string(), |h| h.to_string());
                if !force {
                    return Err(Error::refused(
                        format!("another run holds the lock on `{}`: {holder}", state_dir.display()),
                        Some("wait for it to finish; if that process hangs, stop it or pass --force-unlock".to_string()),
                    ));
                }
                fs::remove_file(&path)
                    .map_err(Error::io(format!("cannot remove `{}`", path.display())))?;
                file = open(&path)?;
                file.try_lock().map_err(|e| {
                    Error::refused(format!("cannot take the lock after forcing it: {e}"), None)
                })?;
                warning = Some(format!("forced the lock held by {holder}"));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock `{}`", path.display()))(e));
            }
        }
        if let Some(dead) = read_holder(&mut file) {
            warning.get_or_insert(format!(
                "the previous holder of the lock, {dead}, is gone; lock taken over"
            ));
        }
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            command: command.to_string(),
        };
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| {
                file.write_all(&serde_json::to_vec(&holder).expect("a holder serializes"))
            })
            .and_then(|()| file.sync_data())
            .map_err(Error::io(format!("cannot write `{}`", path.display())))?;
        Ok((Lock { file }, warning))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // An empty file tells the next holder that this one left cleanly.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn open(path: &PathBuf) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::io(format!(
            "cannot open lock file `{}`",
            path.display()
        )))
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".to_string())
}
