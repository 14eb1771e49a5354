//! Text for a terminal: a line per step with status and duration, a spinner while a step runs
//! (a progress bar once it says how far it is), and a summary table at the end. Without a
//! terminal, or with `NO_COLOR`, plain lines only: a long step's progress every tenth of it.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Row, Summary, Verbosity, duration, verbosity};
use crate::event::Event;
use crate::plan::Plan;

/// The summary table's width when the terminal's is unknown (a pipe, a file).
const PLAIN_WIDTH: u16 = 120;
/// A terminal narrower than this is taken as one whose width is unknown.
const MIN_WIDTH: u16 = 40;

pub(crate) struct Human {
    /// Spinners and bars are drawn (on a terminal, without `NO_COLOR`, not `--quiet`).
    live: bool,
    verbosity: Verbosity,
    spinner: Option<ProgressBar>,
    /// The last tenth of the running step's progress shown as a plain line.
    tenth: Option<u64>,
    total: usize,
    summary: Summary,
}

impl Human {
    pub(crate) fn new() -> Self {
        let verbosity = verbosity();
        Human {
            live: std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && verbosity != Verbosity::Quiet,
            verbosity,
            spinner: None,
            tenth: None,
            total: 0,
            summary: Summary::default(),
        }
    }

    fn quiet(&self) -> bool {
        self.verbosity == Verbosity::Quiet
    }

    /// A step says how far it is: the bar moves, or, in plain lines, each new tenth is shown.
    fn meter(&mut self, step: &str, line: &str, done: u64, total: u64) {
        if let Some(bar) = &self.spinner {
            // The step's own words say the rate, the ETA, the bytes.
            if bar.length().is_none() {
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{prefix}] [{bar:30}] {msg} {elapsed}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
            }
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{step}: {line}"));
            return;
        }
        let tenth = done.saturating_mul(10) / total.max(1);
        if !self.quiet() && self.verbosity != Verbosity::Verbose && self.tenth < Some(tenth) {
            self.tenth = Some(tenth);
            self.line(format!("  {step}: {line}"));
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
                if self.quiet() {
                    return;
                }
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
                self.tenth = None;
                if !self.live {
                    return;
                }
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
            Event::StepProgress {
                step,
                line,
                meter: Some((done, total)),
            } => {
                if self.verbosity == Verbosity::Verbose {
                    self.line(format!("  {step}: {line}"));
                }
                self.meter(step, line, *done, *total);
            }
            Event::StepProgress { step, line, .. } | Event::StepSample { step, sample: line } => {
                if self.verbosity == Verbosity::Verbose {
                    self.line(format!("  {step}: {line}"));
                }
                if let Some(s) = self.spinner.as_ref().filter(|s| s.length().is_none()) {
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
                if self.quiet() {
                    return;
                }
                self.line(format!(
                    "  ok      {step}  {summary}  ({})",
                    duration(*duration_ms)
                ));
            }
            Event::StepSkipped { step, reason } if !self.quiet() => {
                self.line(format!("  skip    {step}  {reason}"))
            }
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
                if !self.quiet() {
                    self.line(table(&self.summary.rows, None));
                }
                self.line(format!(
                    "run {} in {}",
                    status.as_str(),
                    duration(*duration_ms)
                ));
            }
            Event::StepSkipped { .. }
            | Event::StepPrepared { .. }
            | Event::ChildStarted { .. }
            | Event::ChildExited { .. } => {}
        }
    }
}

/// The summary of a run: long notes are wrapped to the terminal's width (or `width`), never cut.
fn table(rows: &[Row], width: Option<u16>) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["step", "kind", "status", "duration", "note"]);
    // A pseudo-terminal without a size (`script` under a pipe) says it is 0 columns wide.
    let width = width
        .or(table.width().filter(|w| *w >= MIN_WIDTH))
        .unwrap_or(PLAIN_WIDTH);
    table.set_width(width);
    for row in rows {
        table.add_row([
            row.step.clone(),
            row.kind.clone(),
            row.status.to_string(),
            duration(row.duration_ms),
            row.note.clone(),
        ]);
    }
    table.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_wrapped_whole_in_the_summary() {
        let note = "runner.app_password is not set: give it in the sql step's settings; the role gets no password — ünïcödé 🚀 too";
        let rows = [Row {
            step: "app-role".into(),
            kind: "sql".into(),
            status: "ok",
            duration_ms: 1200,
            note: note.into(),
        }];
        for width in [60, 100] {
            let text = table(&rows, Some(width));
            assert!(
                text.lines()
                    .all(|l| l.chars().count() <= usize::from(width)),
                "fits in {width}:\n{text}"
            );
            // The note, read back from its column line by line (a word longer than the column
            // is split), is all there.
            let column: String = text
                .lines()
                .filter(|l| l.contains('┆'))
                .filter_map(|l| l.rsplit('┆').next())
                .skip(1)
                .collect::<String>()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '│')
                .collect();
            let whole: String = note.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(column, whole, "{text}");
        }
    }
}
