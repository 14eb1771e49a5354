//! Text for a terminal: a line per step with status and duration, a spinner while a step runs,
//! and a summary table at the end.

use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Summary, duration};
use crate::engine::Event;
use crate::plan::Plan;

pub(crate) struct Human {
    spinner: Option<ProgressBar>,
    total: usize,
    summary: Summary,
}

impl Human {
    pub(crate) fn new() -> Self {
        Human {
            spinner: None,
            total: 0,
            summary: Summary::default(),
        }
    }

    /// Prints a line above the spinner.
    fn line(&self, text: impl AsRef<str>) {
        match &self.spinner {
            Some(s) => s.suspend(|| outln!("{}", text.as_ref())),
            None => outln!("{}", text.as_ref()),
        }
    }

    fn stop_spinner(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }

    pub(crate) fn event(&mut self, event: &Event) {
        self.summary.event(event);
        match event {
            Event::RunStarted {
                run_id,
                playbook,
                phase,
                steps,
                resumed,
            } => {
                self.total = *steps;
                let verb = if *resumed { "resuming" } else { "applying" };
                self.line(format!(
                    "{verb} `{playbook}` (phase {phase}), run {run_id}, {steps} step(s)"
                ));
            }
            Event::StepStarted {
                step,
                kind,
                index,
                attempt,
            } => {
                self.stop_spinner();
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} [{prefix}] {msg} {elapsed}")
                        .expect("a valid template"),
                );
                spinner.set_prefix(format!("{index}/{}", self.total));
                spinner.set_message(format!("{step} ({kind}){again}"));
                spinner.enable_steady_tick(Duration::from_millis(100));
                self.spinner = Some(spinner);
            }
            Event::StepProgress { step, line } | Event::StepSample { step, sample: line } => {
                if let Some(s) = &self.spinner {
                    let line: String = line.chars().take(80).collect();
                    s.set_message(format!("{step}: {line}"));
                }
            }
            Event::StepSucceeded {
                step,
                duration_ms,
                summary,
                ..
            } => {
                self.stop_spinner();
                self.line(format!(
                    "  ok      {step}  {summary}  ({})",
                    duration(*duration_ms)
                ));
            }
            Event::StepSkipped { step, reason } => self.line(format!("  skip    {step}  {reason}")),
            Event::StepFailed {
                step,
                duration_ms,
                error,
                will_retry,
                ..
            } => {
                self.stop_spinner();
                let then = if *will_retry { ", will retry" } else { "" };
                self.line(format!(
                    "  FAILED  {step}  ({}{then}): {error}",
                    duration(*duration_ms)
                ));
            }
            Event::RollbackStarted { steps } => self.line(format!("rolling back {steps} step(s)")),
            Event::StepRolledBack {
                step,
                duration_ms,
                summary,
            } => self.line(format!(
                "  undone  {step}  {summary}  ({})",
                duration(*duration_ms)
            )),
            Event::StepRollbackFailed { step, error } => {
                self.line(format!("  ROLLBACK FAILED  {step}: {error}"))
            }
            Event::Warning { message } => self.line(format!("  warning: {message}")),
            Event::RunFinished {
                status,
                duration_ms,
            } => {
                self.stop_spinner();
                let mut table = Table::new();
                table
                    .load_preset(UTF8_FULL_CONDENSED)
                    .set_header(["step", "kind", "status", "duration", "note"]);
                for row in &self.summary.rows {
                    let note: String = row.note.chars().take(60).collect();
                    table.add_row([
                        row.step.clone(),
                        row.kind.clone(),
                        row.status.to_string(),
                        duration(row.duration_ms),
                        note,
                    ]);
                }
                self.line(table.to_string());
                self.line(format!(
                    "run {} in {}",
                    status.as_str(),
                    duration(*duration_ms)
                ));
            }
            Event::StepPrepared { .. } | Event::ChildStarted { .. } | Event::ChildExited { .. } => {
            }
        }
    }
}

/// A plan as text.
pub(crate) fn plan(plan: &Plan) -> String {
    let mut out = format!(
        "plan for `{}` (phase {}): {} step(s), {} with changes; on failure: {}\n",
        plan.playbook.name,
        plan.playbook.phase,
        plan.steps.len(),
        plan.changes,
        serde_json::to_value(plan.playbook.on_failure)
            .expect("serializes")
            .as_str()
            .unwrap_or_default(),
    );
    for (i, step) in plan.steps.iter().enumerate() {
        let mark = if step.changes { "~" } else { " " };
        out.push_str(&format!(
            "\n{mark} {}. {} [{}]: {}\n",
            i + 1,
            step.id,
            step.kind,
            step.action
        ));
        let warn = if step.irreversible {
            " (IRREVERSIBLE)"
        } else {
            ""
        };
        out.push_str(&format!("     rollback{warn}: {}\n", step.rollback));
        if let Some(diff) = &step.diff {
            for line in diff.lines() {
                out.push_str(&format!("     {line}\n"));
            }
        }
    }
    out.push_str(&format!("\nplan hash {}\n", plan.hash));
    out
}
