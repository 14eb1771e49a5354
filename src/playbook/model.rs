//! The validated playbook: typed steps with every field rendered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::Input;
use crate::secrets::Secrets;
use crate::steps::{Action, DefaultRollback, exec};

#[derive(Debug)]
pub(crate) struct Playbook {
    /// The path as the user gave it.
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) phase: String,
    /// The run identity its templates were rendered with (stand-ins when planning alone).
    pub(crate) run: crate::template::RunIdentity,
    pub(crate) description: Option<String>,
    pub(crate) on_failure: OnFailure,
    /// Where relative paths in steps are resolved.
    pub(crate) workdir: PathBuf,
    /// `--var` values that replaced `[vars]` entries.
    pub(crate) overrides: BTreeMap<String, String>,
    pub(crate) secrets: Secrets,
    /// The playbook file and the template files it read, with their checksums.
    pub(crate) inputs: Vec<Input>,
    /// Where alerts go (`[notify]`).
    pub(crate) notify: Option<crate::notify::Notify>,
    pub(crate) steps: Vec<Step>,
    /// What validation found worth saying that is not a problem.
    pub(crate) warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnFailure {
    /// Roll back the completed steps in reverse order.
    #[default]
    Rollback,
    /// Stop and keep the state for `runner resume` or `runner rollback`.
    Pause,
}

#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) id: String,
    pub(crate) description: Option<String>,
    pub(crate) timeout: Option<Duration>,
    /// Extra attempts after a failure, waiting `backoff`, then twice as long each time.
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) rollback: Rollback,
    pub(crate) action: Action,
}

/// How a step is undone.
#[derive(Debug)]
pub(crate) enum Rollback {
    /// The kind's own rollback.
    Default,
    /// Irreversible, and the playbook says why.
    None { reason: String },
    /// Run this command.
    Command(exec::Command),
}

impl Step {
    /// What undoing the step does, in words, secrets redacted.
    pub(crate) fn rollback_text(&self, secrets: &Secrets) -> String {
        match &self.rollback {
            Rollback::Default => match self.action.default_rollback() {
                DefaultRollback::Does(text) => text.to_string(),
                DefaultRollback::Required => "none".to_string(),
            },
            Rollback::None { reason } => format!("none: {reason}"),
            Rollback::Command(c) => format!("run {}", c.describe(secrets)),
        }
    }
}
