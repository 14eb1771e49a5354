//! The engine: runs a plan's steps one at a time, hands every event to the sink it is given
//! (the CLI wires the journal and the reporters behind it) before going on, and on failure
//! rolls back the completed steps in reverse order. Before a step starts, what the plan
//! observed for it must still hold, or the run is refused. It never prints.

mod rollback;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) use rollback::roll_back;

use crate::context::{Lent, Note, StepCx};
use crate::error::Result;
use crate::event::{Event, RunStatus, StoredUndo};
use crate::fingerprint::InputRole;
use crate::plan::{Plan, PlannedStep};
use crate::playbook::{OnFailure, Playbook};
use crate::secrets::Secrets;
use crate::steps::{Done, Rollback, Step, StepError, Undo};

/// The longest wait between two attempts of a step.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where the engine's events go. The CLI wires the consumers behind it: redaction, then the
/// journal and the reporter, and the run-end alert.
pub(crate) trait Sink {
    /// Takes one event; an error (the journal could not be written) stops the run.
    fn emit(&mut self, event: Event) -> Result<()>;

    /// The form an undo record of step `step` is journaled in.
    fn store(&self, run_dir: &Path, step: &str, undo: &Undo) -> Result<StoredUndo>;

    /// The values the sink redacts (the playbook's secrets and those of sealed undo records):
    /// a step redacts them from what it formats before formatting changes how they read.
    fn secrets(&self) -> &Secrets;

    /// The run ends with `status`, stopped by step `failed` if it did not succeed; said before
    /// `RunFinished` is emitted.
    async fn finishing(
        &mut self,
        status: RunStatus,
        failed: Option<&str>,
        lent: &Lent,
    ) -> Result<()>;
}

/// What an earlier attempt of a resumed run left, as its journal says.
pub(crate) struct Resumed {
    pub(crate) succeeded: BTreeSet<String>,
    /// Steps prepared but not finished: their undo records are reused when they run again.
    pub(crate) prepared: BTreeSet<String>,
    /// What the succeeded steps measured, by step id.
    pub(crate) figures: BTreeMap<String, serde_json::Value>,
    /// The undo records not carried out yet, newest first.
    pub(crate) undos: Vec<(String, Undo)>,
}

/// Where and how a run executes: the loaded playbook and the plan made from it, step for step.
pub(crate) struct Run<'a, S> {
    pub(crate) playbook: &'a Playbook,
    pub(crate) plan: &'a Plan,
    pub(crate) dir: &'a Path,
    pub(crate) sink: S,
    /// The clients and the stop signal the steps are lent.
    pub(crate) lent: &'a Lent,
}

/// How a run ended; `drifted`: because what the plan observed no longer held (exit 3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) status: RunStatus,
    pub(crate) drifted: bool,
}

/// Why a step stopped the run.
enum Stop {
    /// It failed: the run follows `on_failure`.
    Failed,
    /// It asks the run to pause (an inconclusive gate).
    Pause,
    /// What the plan observed for it changed before it started.
    Drift,
}

fn millis(since: Instant) -> u64 {
    since.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// Runs the plan's steps; a resumed run skips those its journal says succeeded.
pub(crate) async fn execute<S: Sink>(
    run: &mut Run<'_, S>,
    before: Option<&Resumed>,
) -> Result<Outcome> {
    let started = Instant::now();
    let playbook = run.playbook;
    let mut undos: Vec<(String, Undo)> = Vec::new();
    // What earlier steps measured: a resumed run takes it back from the journal.
    let mut figures = before.map(|s| s.figures.clone()).unwrap_or_default();
    if let Some(state) = before {
        undos.extend(state.undos.iter().rev().cloned());
    }
    run.sink.emit(Event::RunStarted {
        run_id: run
            .dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        playbook: playbook.name.clone(),
        phase: playbook.phase.clone(),
        steps: playbook.steps.len(),
        resumed: before.is_some(),
    })?;
    debug_assert_eq!(playbook.steps.len(), run.plan.steps.len());
    for (index, (step, planned)) in playbook.steps.iter().zip(&run.plan.steps).enumerate() {
        if before.is_some_and(|s| s.succeeded.contains(&step.id)) {
            run.sink.emit(Event::StepSkipped {
                step: step.id.clone(),
                reason: "succeeded earlier in this run".into(),
            })?;
            continue;
        }
        // Started and never finished (the runner was killed). A playbook's command cannot tell
        // how far it got, so what it did is undone before it runs again; the kinds runner
        // knows go on from their own record (a migration from its checkpoint, SQL from its
        // history, files and containers from the snapshot taken before the first attempt).
        let prepared = before.is_some_and(|s| s.prepared.contains(&step.id));
        let reset = prepared && matches!(step.rollback, Rollback::Command(_));
        if reset {
            let spent: Vec<(String, Undo)> = undos
                .iter()
                .rev()
                .filter(|(id, _)| *id == step.id)
                .cloned()
                .collect();
            undos.retain(|(id, _)| *id != step.id);
            if !roll_back(&mut run.sink, playbook.workdir.as_path(), &spent, run.lent).await? {
                let status = RunStatus::RollbackFailed;
                run.sink.finishing(status, Some(&step.id), run.lent).await?;
                run.sink.emit(Event::RunFinished {
                    status,
                    duration_ms: millis(started),
                })?;
                return Ok(Outcome {
                    status,
                    drifted: false,
                });
            }
        }
        let at = Position {
            index: index + 1,
            prepared: prepared && !reset,
        };
        match run_step(run, step, planned, at, &mut undos, &figures).await? {
            Ok(Some(measured)) => {
                figures.insert(step.id.clone(), measured);
            }
            Ok(None) => {}
            Err(stop) => {
                let status = match playbook.on_failure {
                    _ if matches!(stop, Stop::Pause) => RunStatus::Paused,
                    OnFailure::Pause => RunStatus::Paused,
                    OnFailure::Rollback => {
                        let pending: Vec<_> = undos.iter().rev().cloned().collect();
                        if roll_back(
                            &mut run.sink,
                            playbook.workdir.as_path(),
                            &pending,
                            run.lent,
                        )
                        .await?
                        {
                            RunStatus::RolledBack
                        } else {
                            RunStatus::RollbackFailed
                        }
                    }
                };
                run.sink.finishing(status, Some(&step.id), run.lent).await?;
                run.sink.emit(Event::RunFinished {
                    status,
                    duration_ms: millis(started),
                })?;
                return Ok(Outcome {
                    status,
                    drifted: matches!(stop, Stop::Drift),
                });
            }
        }
    }
    run.sink
        .finishing(RunStatus::Succeeded, None, run.lent)
        .await?;
    run.sink.emit(Event::RunFinished {
        status: RunStatus::Succeeded,
        duration_ms: millis(started),
    })?;
    Ok(Outcome {
        status: RunStatus::Succeeded,
        drifted: false,
    })
}

/// Where a step is in the run: its 1-based index, and whether an earlier attempt of this run
/// already journaled its undo record.
#[derive(Clone, Copy)]
struct Position {
    index: usize,
    prepared: bool,
}

/// What no longer holds of what the plan observed for a step, in words; empty when all does.
async fn drift<S: Sink>(run: &Run<'_, S>, step: &Step, planned: &PlannedStep) -> Vec<String> {
    let mut changed = crate::plan::drifted(&planned.expects, &run.playbook.workdir);
    for expected in planned
        .expects
        .iter()
        .filter(|e| e.role == InputRole::History)
    {
        let crate::steps::Action::Sql(sql) = &step.action else {
            continue;
        };
        // An unreachable database fails the step itself, with its own message.
        if let Ok(rows) = sql.history(run.lent).await {
            let now = sql.expectation(&rows);
            if now.sha256 != expected.sha256 {
                changed.push(format!(
                    "the rows of its files in SQL history {} changed since the plan was made",
                    expected.path
                ));
            }
        }
    }
    changed
}

/// One step with its attempts: on success, what it measured. The outer error is the engine's
/// own (the journal failed); the inner one says why the step stopped the run, after its
/// events were emitted.
async fn run_step<S: Sink>(
    run: &mut Run<'_, S>,
    step: &Step,
    planned: &PlannedStep,
    Position { index, prepared }: Position,
    undos: &mut Vec<(String, Undo)>,
    figures: &BTreeMap<String, serde_json::Value>,
) -> Result<Result<Option<serde_json::Value>, Stop>> {
    let (progress, mut lines) = tokio::sync::mpsc::unbounded_channel();
    // The emitter's own: with the values of sealed undo records, which it also redacts.
    let secrets = run.sink.secrets().clone();
    let run_id = run
        .dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let cx = StepCx {
        workdir: &run.playbook.workdir,
        backup_dir: run.dir.join("backup").join(&step.id),
        progress,
        timeout: step.timeout,
        webhook: run
            .playbook
            .notify
            .as_ref()
            .and_then(|n| n.webhook.as_deref()),
        run_id: &run_id,
        figures,
        secrets: &secrets,
        lent: run.lent,
    };
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        run.sink.emit(Event::StepStarted {
            step: step.id.clone(),
            kind: step.action.kind().name().into(),
            index,
            attempt,
        })?;
        if attempt == 1 {
            let changed = drift(run, step, planned).await;
            if !changed.is_empty() {
                run.sink.emit(Event::StepFailed {
                    step: step.id.clone(),
                    duration_ms: millis(started),
                    error: format!("refused: {}; the step did not run", changed.join("; ")),
                    will_retry: false,
                    undo: None,
                })?;
                return Ok(Err(Stop::Drift));
            }
        }
        let result = if attempt == 1 && !prepared {
            prepare(run, step, &cx, undos).await
        } else {
            Ok(())
        };
        let result = match result {
            Ok(()) => {
                let work = attempt_once(step, &cx);
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        result = &mut work => break result,
                        Some(note) = lines.recv() => run.sink.emit(note_event(step, note))?,
                    }
                }
            }
            Err(e) => Err(e),
        };
        while let Ok(note) = lines.try_recv() {
            run.sink.emit(note_event(step, note))?;
        }
        // Nothing a step set or locked in a lent session outlives it.
        run.lent.settle().await;
        match result {
            Ok(Done {
                summary,
                undo,
                figures,
            }) => {
                let undo = match &step.rollback {
                    Rollback::Default => undo,
                    // Journaled when the step was prepared.
                    Rollback::Command(_) | Rollback::None { .. } => None,
                };
                let undo = keep_undo(run, step, undo, undos)?;
                run.sink.emit(Event::StepSucceeded {
                    step: step.id.clone(),
                    duration_ms: millis(started),
                    summary,
                    undo,
                    figures: figures.clone(),
                })?;
                return Ok(Ok(figures));
            }
            Err(StepError {
                message,
                partial,
                pause,
            }) => {
                let will_retry =
                    attempt <= step.retries && !pause && !message.starts_with(INTERRUPTED);
                // What the failed attempt did is undone with the completed steps.
                let partial = match &step.rollback {
                    Rollback::Default => partial.map(|u| *u),
                    Rollback::Command(_) | Rollback::None { .. } => None,
                };
                let undo = keep_undo(run, step, partial, undos)?;
                run.sink.emit(Event::StepFailed {
                    step: step.id.clone(),
                    duration_ms: millis(started),
                    error: message,
                    will_retry,
                    undo,
                })?;
                if !will_retry {
                    return Ok(Err(if pause { Stop::Pause } else { Stop::Failed }));
                }
                let factor = 2u32.saturating_pow(attempt - 1);
                let backoff = step.backoff.saturating_mul(factor).min(MAX_BACKOFF);
                // A stop requested meanwhile ends the wait; the next attempt reports it.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = run.lent.stop.requested() => {}
                }
                attempt += 1;
            }
        }
    }
}

fn note_event(step: &Step, note: Note) -> Event {
    match note {
        Note::Line(line) => Event::StepProgress {
            step: step.id.clone(),
            line,
            meter: None,
        },
        Note::Meter { done, total, line } => Event::StepProgress {
            step: step.id.clone(),
            line,
            meter: Some((done, total)),
        },
        Note::Warning(message) => Event::Warning {
            message: format!("step `{}`: {message}", step.id),
        },
        Note::Record(sample) => Event::StepSample {
            step: step.id.clone(),
            sample,
        },
        Note::Child { pid, started } => Event::ChildStarted {
            step: step.id.clone(),
            pid,
            started,
        },
        Note::ChildExited { pid } => Event::ChildExited {
            step: step.id.clone(),
            pid,
        },
    }
}

/// Adds an undo record to the run's list and returns the form the journal keeps.
fn keep_undo<S: Sink>(
    run: &Run<'_, S>,
    step: &Step,
    undo: Option<Undo>,
    undos: &mut Vec<(String, Undo)>,
) -> Result<Option<StoredUndo>> {
    let Some(undo) = undo else { return Ok(None) };
    let stored = run.sink.store(run.dir, &step.id, &undo)?;
    undos.push((step.id.clone(), undo));
    Ok(Some(stored))
}

/// Takes the snapshot the default rollback needs, and journals it before anything changes.
async fn prepare<S: Sink>(
    run: &mut Run<'_, S>,
    step: &Step,
    cx: &StepCx<'_>,
    undos: &mut Vec<(String, Undo)>,
) -> Result<(), StepError> {
    // A playbook's rollback command is journaled before the step runs, so that a step killed
    // half way is undone too.
    let snapshot = match &step.rollback {
        Rollback::Default => step.action.prepare(cx).await?,
        Rollback::Command(command) => Some(Undo::Command {
            command: command.clone(),
        }),
        Rollback::None { .. } => None,
    };
    if let Some(undo) = snapshot {
        let engine = |e: crate::error::Error| StepError::from(e.to_string());
        let stored = keep_undo(run, step, Some(undo), undos).map_err(engine)?;
        if let Some(undo) = stored {
            run.sink
                .emit(Event::StepPrepared {
                    step: step.id.clone(),
                    undo,
                })
                .map_err(engine)?;
        }
    }
    Ok(())
}

const INTERRUPTED: &str = "interrupted";

/// One attempt, bounded by the step's timeout and by a stop request.
async fn attempt_once(step: &Step, cx: &StepCx<'_>) -> Result<Done, StepError> {
    let work = async {
        // A kind that keeps its own time within the step's timeout gets a moment to report.
        let grace = if step.action.facts().keeps_time {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        match step.timeout {
            Some(limit) => tokio::time::timeout(limit + grace, step.action.apply(cx))
                .await
                .unwrap_or_else(|_| {
                    Err(StepError::from(format!(
                        "timed out after {}",
                        humantime::format_duration(limit)
                    )))
                }),
            None => step.action.apply(cx).await,
        }
    };
    // A stop request (the CLI makes one on SIGINT or SIGTERM) ends the step, or keeps it from
    // starting; dropping it kills its child process groups, before the run rolls back or pauses.
    tokio::select! {
        biased;
        why = cx.lent.stop.requested() => Err(StepError::from(format!("{INTERRUPTED} by {why}"))),
        result = work => result,
    }
}
