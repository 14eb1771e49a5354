//! Reporters: turn engine events and plans into human text, JSON Lines or Markdown.

mod html;
mod human;
mod markdown;
mod run;

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::journal::{Record, RunState};
use crate::plan::Plan;
use crate::secrets::Secrets;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Text for a terminal, with progress spinners.
    #[default]
    Human,
    /// JSON: the plan as one document; a run as JSON Lines events.
    Json,
    /// Markdown, e.g. for a pull-request comment.
    Markdown,
    /// A self-contained HTML page (`runner report` only).
    Html,
}

/// How much of a run a terminal shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Verbosity {
    /// Warnings, failures, the rollback and the outcome.
    Quiet,
    #[default]
    Normal,
    /// Also every line of progress and every sample.
    Verbose,
}

static VERBOSITY: std::sync::OnceLock<Verbosity> = std::sync::OnceLock::new();

/// Sets, once for the process (from `--quiet` / `-v`), how much a run shows.
pub(crate) fn set_verbosity(verbosity: Verbosity) {
    let _ = VERBOSITY.set(verbosity);
}

fn verbosity() -> Verbosity {
    VERBOSITY.get().copied().unwrap_or_default()
}

/// The version of the JSON Lines event stream (`--format json`): every line carries it as
/// `"version"`, beside its `"event"`.
pub(crate) const EVENTS_VERSION: u32 = 1;

/// One line of the JSON event stream: the value with the stream's version added.
fn json_line(value: impl serde::Serialize) -> String {
    let mut value = serde_json::to_value(value).expect("an event serializes");
    if let Some(fields) = value.as_object_mut() {
        fields.insert("version".into(), EVENTS_VERSION.into());
    }
    value.to_string()
}

/// Where a run's events go for the operator to see.
pub(crate) enum Reporter {
    Human(human::Human),
    Json,
    Markdown(markdown::Markdown),
}

impl Reporter {
    pub(crate) fn new(format: Format) -> Self {
        match format {
            Format::Human | Format::Html => Reporter::Human(human::Human::new()),
            Format::Json => Reporter::Json,
            Format::Markdown => Reporter::Markdown(markdown::Markdown::default()),
        }
    }

    pub(crate) fn record(&mut self, record: &Record) {
        match self {
            Reporter::Human(h) => h.event(&record.event),
            Reporter::Json => outln!("{}", json_line(record)),
            Reporter::Markdown(m) => m.event(&record.event),
        }
    }

    pub(crate) fn progress(&mut self, event: &Event) {
        match self {
            Reporter::Human(h) => h.event(event),
            Reporter::Json => outln!("{}", json_line(event)),
            Reporter::Markdown(_) => {}
        }
    }

    /// A message outside any run (a lock taken over, a plan shown before apply).
    pub(crate) fn note(&mut self, message: &str) {
        match self {
            Reporter::Json => outln!(
                "{}",
                json_line(serde_json::json!({ "event": "note", "message": message }))
            ),
            Reporter::Human(_) | Reporter::Markdown(_) => errln!("note: {message}"),
        }
    }
}

/// A plan in the given format.
pub(crate) fn plan(plan: &Plan, format: Format) -> String {
    match format {
        Format::Human | Format::Html => human::plan(plan),
        Format::Json => plan.to_json(),
        Format::Markdown => markdown::plan(plan),
    }
}

/// A run's report from its journal, each record passed through `secrets` (the journal is
/// redacted already; this also hides secrets a later run knows of): an HTML page, or Markdown
/// (which reads well in a terminal too).
pub(crate) fn run_report(state: &RunState, secrets: &Secrets, format: Format) -> Result<String> {
    let report = run::RunReport::new(state, secrets);
    match format {
        Format::Html => Ok(html::run(&report)),
        Format::Markdown | Format::Human => Ok(markdown::run(&report)),
        Format::Json => Err(Error::Usage(
            "a report is html or markdown: the journal itself is the JSON".into(),
        )),
    }
}

/// The file where each run leaves its HTML report.
pub(crate) const REPORT_FILE: &str = "report.html";

/// Writes the HTML report of the run in `dir` as `dir/report.html`, once the run is over, and
/// says where it is. A report that cannot be written is a warning: the run's outcome stands.
pub(crate) fn leave_report(dir: &Path, secrets: &Secrets, format: Format) {
    let written = RunState::read(dir).and_then(|state| {
        let path: PathBuf = dir.join(REPORT_FILE);
        let page = run_report(&state, secrets, Format::Html)?;
        crate::fs::write_atomic(&path, page.as_bytes(), Some(0o600), 0o600)
            .map_err(Error::io(format!("cannot write `{}`", path.display())))?;
        Ok(path)
    });
    match (written, format) {
        (Ok(path), Format::Json) => {
            outln!(
                "{}",
                serde_json::json!({ "event": "report", "version": EVENTS_VERSION, "path": path })
            )
        }
        (Ok(path), _) => errln!("report: {}", path.display()),
        (Err(e), _) => errln!("warning: no report for this run: {e}"),
    }
}

/// Milliseconds, the way people read them.
fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// One row of the summary that closes a run.
struct Row {
    step: String,
    kind: String,
    status: &'static str,
    duration_ms: u64,
    note: String,
}

/// Keeps the summary rows up to date from the events of a run.
#[derive(Default)]
struct Summary {
    rows: Vec<Row>,
}

impl Summary {
    fn event(&mut self, event: &Event) {
        match event {
            Event::StepStarted { step, kind, .. } => {
                if let Some(row) = self.rows.iter_mut().find(|r| &r.step == step) {
                    row.status = "running";
                } else {
                    self.rows.push(Row {
                        step: step.clone(),
                        kind: kind.clone(),
                        status: "running",
                        duration_ms: 0,
                        note: String::new(),
                    });
                }
            }
            Event::StepSkipped { step, .. } => self.rows.push(Row {
                step: step.clone(),
                kind: String::new(),
                status: "done earlier",
                duration_ms: 0,
                note: String::new(),
            }),
            Event::StepSucceeded {
                step,
                duration_ms,
                summary,
                ..
            } => self.set(step, "ok", *duration_ms, summary),
            Event::StepFailed {
                step,
                duration_ms,
                error,
                ..
            } => self.set(
                step,
                "failed",
                *duration_ms,
                error.lines().next().unwrap_or_default(),
            ),
            Event::StepRolledBack { step, summary, .. } => {
                self.set_status(step, "rolled back", summary)
            }
            Event::StepRollbackFailed { step, error } => {
                self.set_status(step, "rollback failed", error)
            }
            _ => {}
        }
    }

    fn set(&mut self, step: &str, status: &'static str, duration_ms: u64, note: &str) {
        if let Some(row) = self.rows.iter_mut().find(|r| r.step == step) {
            row.status = status;
            row.duration_ms = duration_ms;
            row.note = note.to_string();
        }
    }

    fn set_status(&mut self, step: &str, status: &'static str, note: &str) {
        if let Some(row) = self.rows.iter_mut().find(|r| r.step == step) {
            row.status = status;
            row.note = note.lines().next().unwrap_or_default().to_string();
        } else {
            self.rows.push(Row {
                step: step.to_string(),
                kind: String::new(),
                status,
                duration_ms: 0,
                note: note.to_string(),
            });
        }
    }
}
