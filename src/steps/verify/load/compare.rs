//! "Performance no worse than before" as a gate: a probe that repeats an earlier step's load
//! (`same_as`) compares its figures with that step's, taken from this run's journal so that a
//! resumed run still compares. A regression is critical: the step fails and the run rolls back.

use toml::Spanned;

use super::probe::Measured;
use super::{Check, Raw, Verdict};
use crate::check::Checker;
use crate::traffic::Sample;

/// Under this p95 (ms) the baseline is loopback noise: a ratio of it is not called a regression.
const FLOOR_MS: f64 = 5.0;

/// What a comparison reads of a probe's or of real traffic's figures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Figures {
    p95_ms: f64,
    p99_ms: f64,
    error_rate: f64,
}

impl From<&Measured> for Figures {
    fn from(m: &Measured) -> Self {
        Figures {
            p95_ms: m.p95_ms,
            p99_ms: m.p99_ms,
            error_rate: m.error_rate(),
        }
    }
}

impl From<&Sample> for Figures {
    fn from(s: &Sample) -> Self {
        Figures {
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            error_rate: s.error_rate,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Compare {
    /// The earlier step measured before the change.
    pub(crate) with: String,
    p95_ratio_max: f64,
    error_rate_max_increase: f64,
    p95_floor_ms: f64,
}

impl Compare {
    /// `None` (with problems reported) when a field is wrong; `Some(None)` without `same_as`.
    pub(super) fn validate(raw: &Raw, cx: &mut Checker<'_>) -> Option<Option<Self>> {
        let Some(with) = &raw.same_as else {
            let given = [
                raw.p95_ratio_max.as_ref(),
                raw.error_rate_max_increase.as_ref(),
                raw.p95_floor_ms.as_ref(),
            ];
            for field in given.into_iter().flatten() {
                cx.problem(
                    field.span(),
                    "a comparison needs `same_as`, the earlier verify step to compare with",
                    "compared with what?",
                );
            }
            return given.iter().all(Option::is_none).then_some(None);
        };
        let mut number = |field: Option<&Spanned<f64>>, default: f64, least: f64| match field {
            None => Some(default),
            Some(v) if v.get_ref().is_finite() && *v.get_ref() >= least => Some(*v.get_ref()),
            Some(v) => {
                cx.problem(
                    v.span(),
                    format!("{} is out of range", v.get_ref()),
                    format!("at least {least}"),
                );
                None
            }
        };
        let ratio = number(raw.p95_ratio_max.as_ref(), 1.2, 1.0);
        let increase = number(raw.error_rate_max_increase.as_ref(), 0.0, 0.0);
        let floor = number(raw.p95_floor_ms.as_ref(), FLOOR_MS, 0.0);
        Some(Some(Compare {
            with: with.get_ref().clone(),
            p95_ratio_max: ratio?,
            error_rate_max_increase: increase?,
            p95_floor_ms: floor?,
        }))
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "compared with step `{}`: p95 <= {}x before (not called under {} ms), error rate <= before + {} %",
            self.with,
            self.p95_ratio_max,
            self.p95_floor_ms,
            self.error_rate_max_increase * 100.0
        )
    }

    /// The before and after figures side by side, as the step's summary shows them.
    pub(crate) fn side_by_side(what: &str, before: Figures, after: Figures) -> String {
        format!(
            "{what}: p95 {:.1} ms before, {:.1} ms after; errors {:.3} % before, {:.3} % after",
            before.p95_ms,
            after.p95_ms,
            before.error_rate * 100.0,
            after.error_rate * 100.0
        )
    }

    /// p95 and error rate after against before; `what` names the figures (`load`, `traffic`).
    pub(crate) fn checks(&self, what: &str, before: Figures, after: Figures) -> Vec<Check> {
        let limit = self.p95_ratio_max * before.p95_ms.max(self.p95_floor_ms);
        let ratio = if before.p95_ms > 0.0 {
            format!("{:.2}x", after.p95_ms / before.p95_ms)
        } else {
            "-".into()
        };
        vec![
            Check::new(
                &format!("{what}.compare.p95"),
                format!(
                    "p95 {:.1} ms before (`{}`), {:.1} ms after ({ratio}); p99 {:.1} ms before, {:.1} ms after",
                    before.p95_ms, self.with, after.p95_ms, before.p99_ms, after.p99_ms
                ),
                format!(
                    "<= {}x before, not called under {} ms: <= {limit:.1} ms",
                    self.p95_ratio_max, self.p95_floor_ms
                ),
                if after.p95_ms > limit {
                    Verdict::Critical
                } else {
                    Verdict::Ok
                },
            ),
            Check::new(
                &format!("{what}.compare.error_rate"),
                format!(
                    "{:.3} % before, {:.3} % after",
                    before.error_rate * 100.0,
                    after.error_rate * 100.0
                ),
                format!("<= before + {} %", self.error_rate_max_increase * 100.0),
                // A hair of tolerance: equal rates computed from the same counts must pass.
                if after.error_rate > before.error_rate + self.error_rate_max_increase + 1e-12 {
                    Verdict::Critical
                } else {
                    Verdict::Ok
                },
            ),
        ]
    }

    /// A warning when the baseline probe did not keep its rate (it was measured under less load).
    pub(crate) fn baseline_check(before: &Measured) -> Option<Check> {
        (before.achieved_rps < super::KEPT_RATE * before.target_rps).then(|| {
            Check::new(
                "load.compare.baseline",
                format!(
                    "the baseline kept {:.1} of {} req/s: it was measured under less load",
                    before.achieved_rps, before.target_rps
                ),
                format!(">= {:.0} % of the target", super::KEPT_RATE * 100.0),
                Verdict::Warning,
            )
        })
    }
}
