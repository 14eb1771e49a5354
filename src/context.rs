//! What a step is lent by the engine while it runs: where it works, where it reports, and what
//! the steps before it measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a running step reports while it works.
pub(crate) enum Note {
    /// A line of progress (shown, never journaled).
    Line(String),
    /// How far a long piece of work is, `done` of `total` (a progress bar), and the same in
    /// words (shown, never journaled).
    Meter { done: u64, total: u64, line: String },
    /// Something the operator must know (journaled).
    Warning(String),
    /// One observation of a polling step (journaled).
    Record(String),
    /// A child process group started (journaled, so that a later runner can stop it if this
    /// one dies), with its leader's start time.
    Child { pid: u32, started: Option<u64> },
    /// That group is gone.
    ChildExited { pid: u32 },
}

pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<Note>;

/// What a step needs from the engine while it runs.
pub(crate) struct StepCx<'a> {
    pub(crate) workdir: &'a Path,
    /// This step's own folder in the run's backup dir.
    pub(crate) backup_dir: PathBuf,
    pub(crate) progress: Progress,
    /// The step's `timeout`, for kinds that keep their own time within it.
    pub(crate) timeout: Option<std::time::Duration>,
    /// The playbook's `[notify]` webhook.
    pub(crate) webhook: Option<&'a str>,
    /// The run this step belongs to.
    pub(crate) run_id: &'a str,
    /// The figures of the steps of this run that succeeded before this one, by step id.
    pub(crate) figures: &'a BTreeMap<String, serde_json::Value>,
    /// The values to redact from what the step shows before it is formatted (a command line).
    pub(crate) secrets: &'a crate::secrets::Secrets,
}

impl StepCx<'_> {
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        self.workdir.join(path)
    }

    pub(crate) fn say(&self, line: impl Into<String>) {
        let _ = self.progress.send(Note::Line(line.into()));
    }

    pub(crate) fn meter(&self, done: u64, total: u64, line: String) {
        let _ = self.progress.send(Note::Meter { done, total, line });
    }

    pub(crate) fn warn(&self, message: String) {
        let _ = self.progress.send(Note::Warning(message));
    }

    pub(crate) fn record(&self, sample: String) {
        let _ = self.progress.send(Note::Record(sample));
    }

    pub(crate) fn child(&self, pid: u32, started: Option<u64>) {
        let _ = self.progress.send(Note::Child { pid, started });
    }

    pub(crate) fn child_exited(&self, pid: u32) {
        let _ = self.progress.send(Note::ChildExited { pid });
    }
}
