//! A validated step: its id, how it is retried and undone, and what its kind does.

use std::time::Duration;

use super::{Action, DefaultRollback, exec};

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
    pub(crate) fn rollback_text(&self, secrets: &crate::secrets::Secrets) -> String {
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
