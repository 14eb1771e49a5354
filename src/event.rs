//! What the engine emits. The journal keeps every event but progress; reporters show them.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        phase: String,
        steps: usize,
        resumed: bool,
    },
    StepStarted {
        step: String,
        kind: String,
        /// 1-based position in the playbook.
        index: usize,
        attempt: u32,
    },
    /// What the step's rollback will need, recorded before the step changes anything.
    StepPrepared {
        step: String,
        undo: StoredUndo,
    },
    /// A line of output from a running step (not journaled).
    StepProgress {
        step: String,
        line: String,
        /// How far the step is, done of total, when it knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meter: Option<(u64, u64)>,
    },
    /// One observation of a polling step (journaled, unlike progress).
    StepSample {
        step: String,
        sample: String,
    },
    /// A step's child process group started: a runner that finds it alive after this one
    /// died stops it before touching anything.
    ChildStarted {
        step: String,
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started: Option<u64>,
    },
    ChildExited {
        step: String,
        pid: u32,
    },
    StepSucceeded {
        step: String,
        duration_ms: u64,
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<StoredUndo>,
        /// What the step measured (a load probe's figures), for later steps to compare with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        figures: Option<serde_json::Value>,
    },
    /// Done in an earlier attempt of this run (resume).
    StepSkipped {
        step: String,
        reason: String,
    },
    StepFailed {
        step: String,
        duration_ms: u64,
        error: String,
        will_retry: bool,
        /// What the failed attempt had already done, to undo with the rest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<StoredUndo>,
    },
    RollbackStarted {
        steps: usize,
    },
    StepRolledBack {
        step: String,
        duration_ms: u64,
        summary: String,
    },
    StepRollbackFailed {
        step: String,
        error: String,
    },
    Warning {
        message: String,
    },
    RunFinished {
        status: RunStatus,
        duration_ms: u64,
    },
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    Succeeded,
    /// A step failed and every completed step was rolled back (or `runner rollback` ran).
    RolledBack,
    /// A rollback failed: someone has to look.
    RollbackFailed,
    /// A step failed and the playbook says to stop and wait.
    Paused,
}

impl RunStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::RolledBack => "rolled back",
            RunStatus::RollbackFailed => "rollback failed",
            RunStatus::Paused => "paused",
        }
    }
}

/// An undo record as journaled: sealed in a private file when it holds a secret, else inline,
/// as the step kind that made it writes it (the journal reads it back as that kind's record;
/// this module knows no step kind).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum StoredUndo {
    // First: an inline record is any object.
    Sealed { sealed: String },
    Inline(serde_json::Value),
}
