//! `verify`: the runbook's post-deploy checklist, each threshold set in the playbook: a load
//! probe, PostgreSQL's health from its statistics views, the memory and CPU of containers, and
//! the real requests of the load balancer's access log.
//! Every check reports its value, threshold and level; warnings are journaled, a critical one
//! fails the step.

mod containers;
mod load;
mod postgres;
mod traffic;

use serde::Deserialize;
use toml::Spanned;

use super::{Done, Intent, Step, StepCx, StepError};
use crate::check::Checker;
use crate::migrate::check::{Found, MigrationCheck};
use crate::traffic::Verdict;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    load: Option<Spanned<load::Raw>>,
    postgres: Option<postgres::Raw>,
    containers: Option<containers::Raw>,
    migration: Option<crate::migrate::check::Raw>,
    traffic: Option<crate::traffic::Raw>,
}

#[derive(Debug)]
pub(crate) struct Verify {
    load: Option<load::Load>,
    postgres: Option<postgres::PgHealth>,
    containers: Option<containers::Containers>,
    migration: Option<MigrationCheck>,
    traffic: Option<crate::traffic::Traffic>,
}

/// One line of the checklist.
#[derive(Debug)]
pub(crate) struct Check {
    name: String,
    value: String,
    threshold: String,
    verdict: Verdict,
}

impl Check {
    fn new(
        name: &str,
        value: impl Into<String>,
        threshold: impl Into<String>,
        verdict: Verdict,
    ) -> Self {
        Check {
            name: name.to_string(),
            value: value.into(),
            threshold: threshold.into(),
            verdict,
        }
    }

    fn line(&self) -> String {
        let level = match self.verdict {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Critical => "critical",
        };
        format!(
            "{}: {} (threshold: {}) {level}",
            self.name, self.value, self.threshold
        )
    }
}

impl Verify {
    /// `earlier`: the valid steps before this one, for a load that repeats one of theirs.
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>, earlier: &[Step]) -> Option<Self> {
        let load = raw.load.map(|l| {
            let span = l.span();
            load::Load::validate(l.into_inner(), span, cx, earlier)
        });
        let postgres = raw.postgres.map(|p| postgres::PgHealth::validate(p, cx));
        let containers = raw
            .containers
            .map(|c| containers::Containers::validate(c, cx));
        let migration = raw.migration.map(|m| MigrationCheck::validate(m, cx));
        let traffic = raw
            .traffic
            .map(|t| crate::traffic::Traffic::validate(t, "verify", cx));
        if load.is_none()
            && postgres.is_none()
            && containers.is_none()
            && migration.is_none()
            && traffic.is_none()
        {
            cx.problem(
                0..0,
                "a verify step needs `load`, `postgres`, `containers`, `migration` or `traffic`",
                "nothing to verify",
            );
            return None;
        }
        Some(Verify {
            load: load.map(|l| l.ok_or(())).transpose().ok()?,
            postgres: postgres.map(|p| p.ok_or(())).transpose().ok()?,
            containers: containers.map(|c| c.ok_or(())).transpose().ok()?,
            migration: migration.map(|m| m.ok_or(())).transpose().ok()?,
            traffic: traffic.map(|t| t.ok_or(())).transpose().ok()?,
        })
    }

    /// The load probe, which a later verify step may repeat and compare with.
    pub(crate) fn load(&self) -> Option<&load::Load> {
        self.load.as_ref()
    }

    pub(crate) fn plan(&self) -> Intent {
        let parts: Vec<String> = [
            self.load.as_ref().map(load::Load::describe),
            self.postgres.as_ref().map(postgres::PgHealth::describe),
            self.containers
                .as_ref()
                .map(containers::Containers::describe),
            self.migration.as_ref().map(MigrationCheck::describe),
            self.traffic.as_ref().map(traffic::describe),
        ]
        .into_iter()
        .flatten()
        .collect();
        Intent::new(format!("check {}", parts.join("; ")), false)
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<Done, StepError> {
        let mut checks = Vec::new();
        let mut figures = serde_json::Map::new();
        let mut side_by_side = Vec::new();
        let compare = self.load.as_ref().and_then(load::Load::compare);
        let baseline = compare.map(|c| baseline(c, cx)).transpose()?;
        if let Some(load) = &self.load {
            cx.say(load.describe());
            let measured = load.run().await?;
            cx.record(format!(
                "load measured: {}",
                serde_json::to_string(&measured).expect("figures serialize")
            ));
            checks.extend(load.checks(&measured));
            if let (Some(compare), Some(before)) = (compare, &baseline) {
                let before = &before.load;
                checks.extend(compare.checks("load", before.into(), (&measured).into()));
                checks.extend(load::Compare::baseline_check(before));
                side_by_side.push(load::Compare::side_by_side(
                    "load",
                    before.into(),
                    (&measured).into(),
                ));
            }
            figures.insert("load".into(), serde_json::json!(measured));
        }
        // Real traffic after the probe: its window then holds what users sent while the probe
        // loaded the service (the probe's own requests are not counted), before as after a
        // switch, so the two compare under the same load.
        if let Some(t) = &self.traffic {
            cx.say(traffic::describe(t));
            let (found, sample) = traffic::run(t, cx).await?;
            checks.extend(found);
            if let (Some(compare), Some(before)) = (compare, &baseline) {
                let before = before.traffic.as_ref().ok_or_else(|| {
                    StepError::from(format!(
                        "step `{}` measured no real traffic to compare with: give it the same `traffic` check",
                        compare.with
                    ))
                })?;
                checks.extend(compare.checks("traffic", before.into(), (&sample).into()));
                side_by_side.push(load::Compare::side_by_side(
                    "real traffic",
                    before.into(),
                    (&sample).into(),
                ));
            }
            figures.insert("traffic".into(), serde_json::json!(sample));
        }
        if let (Some(compare), Some(_)) = (compare, &baseline) {
            figures.insert(
                "baseline".into(),
                serde_json::json!({ "step": compare.with, "figures": baseline }),
            );
        }
        if let Some(pg) = &self.postgres {
            cx.say(pg.describe());
            checks.extend(pg.run(cx.lent).await?);
        }
        if let Some(containers) = &self.containers {
            cx.say(containers.describe());
            checks.extend(containers.run(cx.lent).await?);
        }
        if let Some(migration) = &self.migration {
            cx.say(migration.describe());
            checks.extend(migration_checks(migration.run(cx.lent).await?, cx));
        }
        for check in &checks {
            cx.record(check.line());
            if check.verdict == Verdict::Warning {
                cx.warn(check.line());
            }
        }
        let critical: Vec<String> = checks
            .iter()
            .filter(|c| c.verdict == Verdict::Critical)
            .map(Check::line)
            .collect();
        let warnings = checks
            .iter()
            .filter(|c| c.verdict == Verdict::Warning)
            .count();
        if !critical.is_empty() {
            return Err(format!(
                "{} critical check(s): {}",
                critical.len(),
                critical.join("; ")
            )
            .into());
        }
        let mut summary = format!(
            "{} check(s): {} ok, {warnings} warning(s)",
            checks.len(),
            checks.len() - warnings
        );
        for both in side_by_side {
            summary.push_str(&format!("; {both}"));
        }
        Ok(Done {
            summary,
            undo: None,
            figures: (!figures.is_empty()).then_some(serde_json::Value::Object(figures)),
        })
    }
}

/// What an earlier step measured, as this run journaled it.
#[derive(serde::Deserialize, serde::Serialize)]
struct Baseline {
    load: load::Measured,
    traffic: Option<crate::traffic::Sample>,
}

/// The figures of the earlier step a probe compares with, as this run journaled them.
fn baseline(compare: &load::Compare, cx: &StepCx<'_>) -> Result<Baseline, StepError> {
    cx.figures
        .get(&compare.with)
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .ok_or_else(|| {
            StepError::from(format!(
                "this run has no load figures of step `{}` to compare with: it must succeed earlier in the same run",
                compare.with
            ))
        })
}

/// The counts per entity and the content comparison as checks; every mismatch is journaled.
fn migration_checks(found: Found, cx: &StepCx<'_>) -> Vec<Check> {
    let mut checks: Vec<Check> = found
        .counts
        .iter()
        .map(|(entity, keys, rows)| {
            Check::new(
                &format!("migration.{entity}"),
                format!("{keys} key(s) in Redis, {rows} row(s) in PostgreSQL"),
                "equal",
                if keys == rows {
                    Verdict::Ok
                } else {
                    Verdict::Critical
                },
            )
        })
        .collect();
    for mismatch in &found.mismatches {
        cx.record(format!("mismatch: {mismatch}"));
    }
    let shown: Vec<&str> = found
        .mismatches
        .iter()
        .take(10)
        .map(String::as_str)
        .collect();
    checks.push(Check::new(
        "migration.content",
        format!(
            "{} key(s) compared, {} mismatch(es){}{}",
            found.compared,
            found.mismatches.len(),
            if shown.is_empty() { "" } else { ": " },
            shown.join("; ")
        ),
        "0 mismatches",
        if found.mismatches.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Critical
        },
    ));
    checks
}
