//! The step kinds: one module each, one enum to dispatch. Every kind has a pure `plan`
//! (what it will do, given what was observed) and an async `apply`; the file-writing kinds
//! `prepare` a snapshot first, which their default rollback restores.

pub(crate) mod backup;
pub(crate) mod env;
pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod template;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Observed;

/// The kind names a playbook may use.
pub(crate) const KINDS: &[&str] = &["backup", "template", "env", "exec"];

/// What a step does, with its kind's fields.
#[derive(Debug)]
pub(crate) enum Action {
    Backup(backup::Backup),
    Template(template::Template),
    Env(env::Env),
    Exec(exec::Exec),
}

/// What the plan says a step will do.
pub(crate) struct Intent {
    pub(crate) action: String,
    pub(crate) changes: bool,
    pub(crate) diff: Option<String>,
}

/// What a step's rollback needs, recorded in the journal so rollback works from it alone.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Undo {
    /// Put these files back as they were.
    Files { files: Vec<files::Snapshot> },
    /// Run this command.
    Command { command: exec::Command },
}

/// Lines of output a running step reports (shown as progress, never journaled).
pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<String>;

/// What a step needs from the engine while it runs.
pub(crate) struct StepCx<'a> {
    pub(crate) workdir: &'a Path,
    /// This step's own folder in the run's backup dir.
    pub(crate) backup_dir: PathBuf,
    pub(crate) progress: Progress,
}

impl StepCx<'_> {
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        self.workdir.join(path)
    }
}

/// Why a step (or its rollback) failed, in words for the operator.
#[derive(Debug)]
pub(crate) struct StepError(pub(crate) String);

impl StepError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: String) -> impl FnOnce(std::io::Error) -> StepError {
        move |e| StepError(format!("{context}: {e}"))
    }
}

impl Action {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Action::Backup(_) => "backup",
            Action::Template(_) => "template",
            Action::Env(_) => "env",
            Action::Exec(_) => "exec",
        }
    }

    /// Files whose current content the plan needs (for diffs and the staleness check).
    pub(crate) fn observes(&self) -> Vec<&str> {
        match self {
            Action::Backup(s) => s.paths.iter().map(String::as_str).collect(),
            Action::Template(s) => vec![s.dest.as_str()],
            Action::Env(s) => vec![s.file.as_str()],
            Action::Exec(_) => Vec::new(),
        }
    }

    pub(crate) fn plan(&self, observed: &Observed) -> Intent {
        match self {
            Action::Backup(s) => s.plan(observed),
            Action::Template(s) => s.plan(observed),
            Action::Env(s) => s.plan(observed),
            Action::Exec(s) => s.plan(),
        }
    }

    /// The rollback a step gets when the playbook states none; `None` if it must state one.
    pub(crate) fn default_rollback(&self) -> Option<&'static str> {
        match self {
            Action::Backup(_) => Some("restore the saved files; remove those that did not exist"),
            Action::Template(_) | Action::Env(_) => {
                Some("restore the previous content (remove the file if it did not exist)")
            }
            Action::Exec(_) => None,
        }
    }

    /// Records, before any change, what the default rollback will need.
    pub(crate) fn prepare(&self, cx: &StepCx<'_>) -> Result<Option<Undo>, StepError> {
        let paths: Vec<&str> = match self {
            Action::Backup(s) => s.paths.iter().map(String::as_str).collect(),
            Action::Template(s) => vec![s.dest.as_str()],
            Action::Env(s) => vec![s.file.as_str()],
            Action::Exec(_) => return Ok(None),
        };
        let files = paths
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                files::snapshot(&cx.resolve(p), &cx.backup_dir, i)
                    .map_err(StepError::io(format!("could not save `{p}`")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Undo::Files { files }))
    }

    /// Does the step's work; returns a one-line summary.
    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        match self {
            Action::Backup(s) => s.apply(cx),
            Action::Template(s) => s.apply(cx),
            Action::Env(s) => s.apply(cx),
            Action::Exec(s) => s.command.run(cx).await,
        }
    }
}

impl Undo {
    /// Carries out the rollback this record describes; returns a one-line summary.
    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        match self {
            Undo::Files { files } => {
                for snapshot in files {
                    files::restore(snapshot).map_err(StepError::io(format!(
                        "could not restore `{}`",
                        snapshot.path.display()
                    )))?;
                }
                Ok(format!("restored {} file(s)", files.len()))
            }
            Undo::Command { command } => command.run(cx).await,
        }
    }
}
