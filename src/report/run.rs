//! What a run's journal tells, gathered for its report: a timeline of the steps, the gates'
//! samples as series over time, the verification checks, the figures and every warning.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::SystemTime;

use regex::Regex;
use serde::Serialize;

use crate::event::{Event, RunStatus};
use crate::journal::RunState;
use crate::secrets::Secrets;
use crate::traffic::Sample;

/// How a bar of the timeline ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Outcome {
    Ok,
    Failed,
    /// Failed, and tried again.
    Retried,
    RolledBack,
    RollbackFailed,
    /// Still running when the journal ends (a crash, or a run going on).
    Unfinished,
}

impl Outcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Retried => "failed, retried",
            Outcome::RolledBack => "rolled back",
            Outcome::RollbackFailed => "rollback failed",
            Outcome::Unfinished => "unfinished",
        }
    }
}

/// One attempt of a step, or its rollback, on the run's time axis (seconds from the start).
#[derive(Debug)]
pub(super) struct Bar {
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) outcome: Outcome,
    /// A rollback's bar, as opposed to the step's own work.
    pub(super) undo: bool,
}

/// A step as the report shows it: its bars, and its last word.
#[derive(Debug)]
pub(super) struct StepReport {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) outcome: &'static str,
    pub(super) duration_ms: u64,
    pub(super) note: String,
    pub(super) bars: Vec<Bar>,
}

/// Values over time, one line of a chart.
#[derive(Debug, Default)]
pub(super) struct Series {
    pub(super) name: &'static str,
    pub(super) points: Vec<(f64, f64)>,
}

/// A chart of one step's samples.
#[derive(Debug)]
pub(super) struct Chart {
    pub(super) step: String,
    pub(super) title: &'static str,
    pub(super) unit: &'static str,
    pub(super) series: Vec<Series>,
    /// Pass/fail observations (health probes), as marks on the time axis.
    pub(super) marks: Vec<(f64, bool)>,
}

/// A verification check as the verify step journaled it.
#[derive(Debug)]
pub(super) struct Check {
    pub(super) step: String,
    pub(super) name: String,
    pub(super) value: String,
    pub(super) threshold: String,
    pub(super) verdict: String,
}

/// A run's journal, read for its report.
#[derive(Debug)]
pub(super) struct RunReport {
    pub(super) id: String,
    pub(super) playbook: String,
    pub(super) phase: String,
    pub(super) status: &'static str,
    /// From the first record to the last, in seconds.
    pub(super) span: f64,
    pub(super) steps: Vec<StepReport>,
    pub(super) charts: Vec<Chart>,
    pub(super) checks: Vec<Check>,
    /// What succeeded steps measured, flattened to `path = value`, by step.
    pub(super) figures: Vec<(String, Vec<(String, String)>)>,
    pub(super) warnings: Vec<String>,
    /// The rollback: each step undone (or not), with its summary.
    pub(super) rollback: Vec<(String, bool, String)>,
}

static CHECK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?s)([\w.\-]+): (.*) \(threshold: (.*)\) (ok|warning|critical)$")
        .expect("a valid regex")
});
static CHECKPOINT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^checkpoint cursor \d+ scanned (\d+) written (\d+) unchanged (\d+) rejected (\d+)$",
    )
    .expect("a valid regex")
});
static RESUMED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^resumed from the checkpoint: \d+ keys already scanned, (\d+) rows written$")
        .expect("a valid regex")
});
static HEALTH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"; health (\d{3});").expect("a valid regex"));
static PROBE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^#\d+ (pass|wrong|no answer) \((\d+) ms\)").expect("a valid regex")
});

fn seconds(at: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(at).ok()
}

/// The charts of one step, filled sample by sample.
#[derive(Default)]
struct StepCharts {
    error_rate: Series,
    latency: [Series; 3],
    rows: Series,
    probe_ms: Series,
    health: Vec<(f64, bool)>,
    /// The last checkpoint: its time and rows written.
    checkpoint: Option<(f64, u64)>,
}

impl StepCharts {
    fn sample(&mut self, t: f64, text: &str, started: f64) {
        if let Some(json) = text
            .strip_prefix("traffic t+")
            .and_then(|rest| rest.split_once(": ").map(|(_, json)| json))
            && let Ok(s) = serde_json::from_str::<Sample>(json)
        {
            self.error_rate.points.push((t, s.error_rate * 100.0));
            for (series, v) in self.latency.iter_mut().zip([s.p50_ms, s.p95_ms, s.p99_ms]) {
                series.points.push((t, v));
            }
        } else if let Some(c) = CHECKPOINT.captures(text) {
            let written: u64 = c[2].parse().unwrap_or_default();
            let (t0, w0) = self.checkpoint.unwrap_or((started, 0));
            if t > t0 {
                self.rows
                    .points
                    .push((t, written.saturating_sub(w0) as f64 / (t - t0)));
            }
            self.checkpoint = Some((t, written));
        } else if let Some(c) = PROBE.captures(text) {
            self.health.push((t, &c[1] == "pass"));
            self.probe_ms
                .points
                .push((t, c[2].parse().unwrap_or_default()));
        } else if text.starts_with("t+") {
            let ok = HEALTH.captures(text).is_some_and(|c| c[1].starts_with('2'));
            if text.contains("; health") {
                self.health.push((t, ok));
            }
        } else if let Some(c) = RESUMED.captures(text) {
            // The counts go on from the checkpoint; the rate from now.
            self.checkpoint = Some((t, c[1].parse().unwrap_or_default()));
        }
    }

    fn into_charts(self, step: &str) -> Vec<Chart> {
        let chart = |title, unit, series: Vec<Series>, marks: Vec<(f64, bool)>| Chart {
            step: step.to_string(),
            title,
            unit,
            series,
            marks,
        };
        let [p50, p95, p99] = self.latency;
        let mut out = Vec::new();
        if !self.error_rate.points.is_empty() {
            out.push(chart(
                "real-traffic error rate",
                "% 5xx",
                vec![Series {
                    name: "error rate",
                    ..self.error_rate
                }],
                vec![],
            ));
            out.push(chart(
                "real-traffic latency",
                "ms",
                vec![
                    Series { name: "p50", ..p50 },
                    Series { name: "p95", ..p95 },
                    Series { name: "p99", ..p99 },
                ],
                vec![],
            ));
        }
        if !self.rows.points.is_empty() {
            out.push(chart(
                "migration rate",
                "rows/s",
                vec![Series {
                    name: "rows written/s",
                    ..self.rows
                }],
                vec![],
            ));
        }
        if !self.health.is_empty() {
            let series = if self.probe_ms.points.is_empty() {
                vec![]
            } else {
                vec![Series {
                    name: "answer time",
                    ..self.probe_ms
                }]
            };
            let unit = match series.is_empty() {
                true => "a mark per probe: green healthy, red not",
                false => "answer time in ms; a mark per probe: green healthy, red not",
            };
            out.push(chart("health checks", unit, series, self.health));
        }
        out
    }
}

/// Flattens figures to `a.b = value` lines.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

impl RunReport {
    /// Reads the run's records, each passed through `secrets` first.
    pub(super) fn new(state: &RunState, secrets: &Secrets) -> RunReport {
        let header = &state.header;
        let origin = state
            .records
            .first()
            .and_then(|r| seconds(&r.at))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let at = |text: &str| {
            seconds(text)
                .and_then(|t| t.duration_since(origin).ok())
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let mut report = RunReport {
            id: secrets.redact(&header.run.id),
            playbook: secrets.redact(&header.name),
            phase: secrets.redact(&header.run.phase),
            status: state.status.map_or("unfinished", RunStatus::as_str),
            span: state.records.last().map_or(0.0, |r| at(&r.at)),
            steps: Vec::new(),
            charts: Vec::new(),
            checks: Vec::new(),
            figures: Vec::new(),
            warnings: Vec::new(),
            rollback: Vec::new(),
        };
        let mut charts: Vec<(String, StepCharts)> = Vec::new();
        let mut started: BTreeMap<String, f64> = BTreeMap::new();
        for record in &state.records {
            let mut event = record.event.clone();
            secrets.redact_event(&mut event);
            let t = at(&record.at);
            let step_index = |steps: &mut Vec<StepReport>, id: &str| {
                steps.iter().position(|s| s.id == id).unwrap_or_else(|| {
                    steps.push(StepReport {
                        id: id.to_string(),
                        kind: String::new(),
                        outcome: "not run",
                        duration_ms: 0,
                        note: String::new(),
                        bars: Vec::new(),
                    });
                    steps.len() - 1
                })
            };
            match event {
                Event::StepStarted { step, kind, .. } => {
                    let i = step_index(&mut report.steps, &step);
                    let s = &mut report.steps[i];
                    s.kind = kind;
                    s.outcome = "unfinished";
                    s.bars.push(Bar {
                        start: t,
                        end: report.span,
                        outcome: Outcome::Unfinished,
                        undo: false,
                    });
                    started.insert(step, t);
                }
                Event::StepSucceeded {
                    step,
                    duration_ms,
                    summary,
                    figures,
                    ..
                } => {
                    let i = step_index(&mut report.steps, &step);
                    let s = &mut report.steps[i];
                    s.outcome = "ok";
                    s.duration_ms = duration_ms;
                    s.note = summary;
                    if let Some(bar) = s.bars.last_mut() {
                        bar.end = t;
                        bar.outcome = Outcome::Ok;
                    }
                    if let Some(figures) = figures {
                        let mut lines = Vec::new();
                        flatten("", &figures, &mut lines);
                        report.figures.push((step, lines));
                    }
                }
                Event::StepFailed {
                    step,
                    duration_ms,
                    error,
                    will_retry,
                    ..
                } => {
                    let i = step_index(&mut report.steps, &step);
                    let s = &mut report.steps[i];
                    s.outcome = "failed";
                    s.duration_ms = duration_ms;
                    s.note = error;
                    if let Some(bar) = s.bars.last_mut() {
                        bar.end = t;
                        bar.outcome = if will_retry {
                            Outcome::Retried
                        } else {
                            Outcome::Failed
                        };
                    }
                }
                Event::StepSkipped { step, reason } => {
                    let i = step_index(&mut report.steps, &step);
                    report.steps[i].outcome = "done earlier";
                    report.steps[i].note = reason;
                }
                Event::StepRolledBack {
                    step,
                    duration_ms,
                    summary,
                } => {
                    let i = step_index(&mut report.steps, &step);
                    let s = &mut report.steps[i];
                    s.outcome = "rolled back";
                    s.bars.push(Bar {
                        start: (t - duration_ms as f64 / 1000.0).max(0.0),
                        end: t,
                        outcome: Outcome::RolledBack,
                        undo: true,
                    });
                    report.rollback.push((step, true, summary));
                }
                Event::StepRollbackFailed { step, error } => {
                    let i = step_index(&mut report.steps, &step);
                    let s = &mut report.steps[i];
                    s.outcome = "rollback failed";
                    s.bars.push(Bar {
                        start: t,
                        end: t,
                        outcome: Outcome::RollbackFailed,
                        undo: true,
                    });
                    report.rollback.push((step, false, error));
                }
                Event::StepSample { step, sample } => {
                    if let Some(c) = CHECK.captures(&sample) {
                        report.checks.push(Check {
                            step: step.clone(),
                            name: c[1].to_string(),
                            value: c[2].to_string(),
                            threshold: c[3].to_string(),
                            verdict: c[4].to_string(),
                        });
                        continue;
                    }
                    let from = started.get(&step).copied().unwrap_or_default();
                    let i = charts
                        .iter()
                        .position(|(s, _)| *s == step)
                        .unwrap_or_else(|| {
                            charts.push((step.clone(), StepCharts::default()));
                            charts.len() - 1
                        });
                    charts[i].1.sample(t, &sample, from);
                }
                Event::Warning { message } => report.warnings.push(message),
                _ => {}
            }
        }
        report.charts = charts
            .into_iter()
            .flat_map(|(step, c)| c.into_charts(&step))
            .collect();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_rate_goes_on_from_a_resumed_checkpoint() {
        let mut c = StepCharts::default();
        c.sample(
            2.0,
            "checkpoint cursor 5 scanned 1000 written 900 unchanged 0 rejected 0",
            0.0,
        );
        c.sample(
            10.0,
            "resumed from the checkpoint: 1000 keys already scanned, 900 rows written",
            0.0,
        );
        c.sample(
            12.0,
            "checkpoint cursor 9 scanned 2000 written 1900 unchanged 0 rejected 0",
            0.0,
        );
        assert_eq!(c.rows.points, [(2.0, 450.0), (12.0, 500.0)]);
        c.sample(13.0, "#1 pass (12 ms)", 0.0);
        c.sample(
            14.0,
            "t+1s: containers ok; health 503; 0 line(s) matching /ERROR/",
            0.0,
        );
        c.sample(
            15.0,
            "t+2s: containers ok; health: connection refused; 0 line(s) matching /x/",
            0.0,
        );
        assert_eq!(c.health, [(13.0, true), (14.0, false), (15.0, false)]);
        assert_eq!(c.probe_ms.points, [(13.0, 12.0)]);
    }
}
