//! Rollback: carry out undo records newest first, journaling each; stop at the first failure,
//! since what comes after may depend on it.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::time::Instant;

use super::{Sink, millis};
use crate::context::{Lent, StepCx};
use crate::error::Result;
use crate::event::Event;
use crate::steps::Undo;

/// Rolls back `pending` (newest first). `Ok(false)`: a rollback failed; manual action needed.
pub(crate) async fn roll_back(
    sink: &mut impl Sink,
    workdir: &Path,
    pending: &[(String, Undo)],
    lent: &Lent,
) -> Result<bool> {
    sink.emit(Event::RollbackStarted {
        steps: pending.len(),
    })?;
    let secrets = sink.secrets().clone();
    for (step, undo) in pending {
        let started = Instant::now();
        let (progress, _discarded) = tokio::sync::mpsc::unbounded_channel();
        let cx = StepCx {
            workdir,
            backup_dir: workdir.to_path_buf(),
            progress,
            timeout: None,
            webhook: None,
            run_id: "",
            figures: &BTreeMap::new(),
            secrets: &secrets,
            lent,
        };
        let done = undo.apply(&cx).await;
        lent.settle().await;
        match done {
            Ok(summary) => sink.emit(Event::StepRolledBack {
                step: step.clone(),
                duration_ms: millis(started),
                summary,
            })?,
            Err(e) => {
                sink.emit(Event::StepRollbackFailed {
                    step: step.clone(),
                    error: e.message,
                })?;
                return Ok(false);
            }
        }
    }
    Ok(true)
}
