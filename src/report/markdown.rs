//! Markdown: the plan as a pull-request comment, and a run's summary as a table.

use super::run::RunReport;
use super::{Summary, duration};
use crate::event::Event;
use crate::plan::Plan;

#[derive(Default)]
pub(crate) struct Markdown {
    summary: Summary,
}

impl Markdown {
    pub(crate) fn event(&mut self, event: &Event) {
        self.summary.event(event);
        if let Event::RunFinished {
            status,
            duration_ms,
        } = event
        {
            let mut out = format!(
                "### runner: run {} in {}\n\n",
                status.as_str(),
                duration(*duration_ms)
            );
            out.push_str("| step | kind | status | duration | note |\n|---|---|---|---|---|\n");
            for row in &self.summary.rows {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} |\n",
                    row.step,
                    row.kind,
                    row.status,
                    duration(row.duration_ms),
                    cell(&row.note)
                ));
            }
            outln!("{out}");
        }
    }
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A plan as a pull-request comment.
pub(crate) fn plan(plan: &Plan) -> String {
    let p = &plan.playbook;
    let mut out = format!("### runner plan: `{}` (phase `{}`)\n\n", p.name, p.phase);
    if let Some(description) = &p.description {
        out.push_str(&format!("> {}\n\n", cell(description)));
    }
    let on_failure = serde_json::to_value(p.on_failure).expect("serializes");
    out.push_str(&format!(
        "**{} step(s), {} with changes.** Playbook `{}`; on failure: {}.\n\n",
        plan.steps.len(),
        plan.changes,
        p.path,
        on_failure.as_str().unwrap_or_default()
    ));
    out.push_str("| # | step | kind | what it will do | rollback |\n|---|---|---|---|---|\n");
    for (i, s) in plan.steps.iter().enumerate() {
        let change = if s.changes { " (changes)" } else { "" };
        let rollback = if s.irreversible {
            format!("**irreversible**: {}", cell(&s.rollback))
        } else {
            cell(&s.rollback)
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {}{change} | {rollback} |\n",
            i + 1,
            s.id,
            s.kind,
            cell(&s.action)
        ));
    }
    let irreversible: Vec<_> = plan.steps.iter().filter(|s| s.irreversible).collect();
    if !irreversible.is_empty() {
        out.push_str("\n> [!WARNING]\n> These steps cannot be rolled back:\n");
        for s in irreversible {
            out.push_str(&format!("> - `{}`: {}\n", s.id, cell(&s.rollback)));
        }
    }
    for s in plan.steps.iter().filter(|s| s.diff.is_some()) {
        out.push_str(&format!(
            "\n<details><summary>diff for step <code>{}</code></summary>\n\n```diff\n{}```\n\n</details>\n",
            s.id,
            s.diff.as_deref().unwrap_or_default()
        ));
    }
    out.push_str(&format!("\nPlan hash: `{}`\n", plan.hash));
    out
}

/// A run's report for a pull request or an incident: the steps, the rollback, the checks, the
/// figures and every warning.
pub(super) fn run(report: &RunReport) -> String {
    let mut out = format!(
        "### runner report: `{}` (phase `{}`), run {}: {} in {}\n\n",
        cell(&report.playbook),
        cell(&report.phase),
        report.id,
        report.status,
        duration((report.span * 1000.0) as u64)
    );
    out.push_str("| step | kind | outcome | duration | note |\n|---|---|---|---|---|\n");
    for s in &report.steps {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            s.id,
            s.kind,
            s.outcome,
            duration(s.duration_ms),
            cell(&s.note)
        ));
    }
    if !report.rollback.is_empty() {
        out.push_str("\n#### Rollback\n\n");
        for (step, ok, summary) in &report.rollback {
            let how = if *ok { "undone" } else { "**rollback failed**" };
            out.push_str(&format!("- `{step}`: {how}: {}\n", cell(summary)));
        }
    }
    if !report.checks.is_empty() {
        out.push_str("\n#### Checks\n\n| step | check | value | threshold | verdict |\n|---|---|---|---|---|\n");
        for c in &report.checks {
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {} | {} |\n",
                c.step,
                c.name,
                cell(&c.value),
                cell(&c.threshold),
                c.verdict
            ));
        }
    }
    if !report.figures.is_empty() {
        out.push_str("\n#### Figures\n");
        for (step, lines) in &report.figures {
            out.push_str(&format!("\n`{step}`:\n\n"));
            for (name, value) in lines {
                out.push_str(&format!("- `{name}`: {}\n", cell(value)));
            }
        }
    }
    if !report.warnings.is_empty() {
        out.push_str("\n#### Warnings\n\n");
        for w in &report.warnings {
            out.push_str(&format!("- {}\n", cell(w)));
        }
    }
    out
}
