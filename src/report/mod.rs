//! Reporters: turn engine events and plans into human text, JSON Lines or Markdown.

mod human;
mod markdown;

use clap::ValueEnum;

use crate::engine::Event;
use crate::journal::Record;
use crate::plan::Plan;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Text for a terminal, with progress spinners.
    #[default]
    Human,
    /// JSON: the plan as one document; a run as JSON Lines events.
    Json,
    /// Markdown, e.g. for a pull-request comment.
    Markdown,
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
            Format::Human => Reporter::Human(human::Human::new()),
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
        Format::Human => human::plan(plan),
        Format::Json => plan.to_json(),
        Format::Markdown => markdown::plan(plan),
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
