//! Real traffic as a gate: the requests users sent through the load balancer, read from its
//! access log, judged over a sliding window (5xx rate, p95 latency, share of slow requests)
//! against warning and critical levels. A window with fewer requests than the minimum has no
//! verdict; a gate that never saw one is "not enough traffic", which is never a pass.

mod log;
mod window;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use toml::Spanned;

use crate::check::Checker;
use log::{Line, Tail};
pub(crate) use window::Sample;
use window::Window;

/// How much of the log's end `verify` reads for the window before it started.
const RECENT_BYTES: u64 = 64 * 1024 * 1024;

/// Unparseable lines from this share of a window's lines on are a warning.
const UNPARSED_WARNING: f64 = 0.1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    access_log: Spanned<String>,
    window: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    min_requests: Option<u64>,
    error_rate_warning: Option<Spanned<f64>>,
    error_rate_critical: Option<Spanned<f64>>,
    p95_ms_warning: Option<Spanned<f64>>,
    p95_ms_critical: Option<Spanned<f64>>,
    slow_ms: Option<Spanned<f64>>,
    slow_share_warning: Option<Spanned<f64>>,
    slow_share_critical: Option<Spanned<f64>>,
    /// Only requests whose path matches this regular expression count.
    paths: Option<Spanned<String>>,
    on_not_enough: Option<Spanned<String>>,
    /// `verify` only: how long to go on reading when the window before the step is too thin.
    wait: Option<Spanned<String>>,
}

/// How a gate judges a figure (a line of a verify checklist, a traffic window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    Warning,
    Critical,
}

/// A gate that could not judge, for want of traffic.
#[derive(Debug)]
pub(crate) struct Inconclusive {
    pub(crate) message: String,
    /// The run should pause rather than follow `on_failure`.
    pub(crate) pause: bool,
}

/// A value must stay below `warning` to be ok and below `critical` not to fail.
#[derive(Clone, Copy, Debug)]
struct Bound {
    warning: f64,
    critical: f64,
}

impl Bound {
    fn verdict(self, value: f64) -> Verdict {
        if value >= self.critical {
            Verdict::Critical
        } else if value >= self.warning {
            Verdict::Warning
        } else {
            Verdict::Ok
        }
    }
}

#[derive(Debug)]
pub(crate) struct Traffic {
    access_log: String,
    pub(crate) window: Duration,
    pub(crate) interval: Duration,
    min_requests: u64,
    error_rate: Bound,
    p95_ms: Bound,
    slow_ms: f64,
    slow_share: Bound,
    paths: Option<regex::Regex>,
    pause_if_not_enough: bool,
    pub(crate) wait: Option<Duration>,
}

/// One metric of one window against its levels.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) metric: &'static str,
    pub(crate) value: String,
    pub(crate) threshold: String,
    pub(crate) verdict: Verdict,
}

impl Traffic {
    /// Validates the table; `step` is the kind it sits in (`wait` belongs to verify only).
    pub(crate) fn validate(raw: Raw, step: &str, cx: &mut Checker<'_>) -> Option<Self> {
        // A FIFO there would block the gate's reads for good.
        let access_log = cx.file_path(&raw.access_log);
        let duration = |d: &Option<Spanned<String>>, default, cx: &mut Checker<'_>| match d {
            Some(d) => match cx.duration(d)? {
                Duration::ZERO => {
                    cx.problem(
                        d.span(),
                        "a traffic window or interval must be longer than 0s",
                        "this duration",
                    );
                    None
                }
                positive => Some(positive),
            },
            None => Some(Duration::from_secs(default)),
        };
        let window = duration(&raw.window, 10, cx);
        let interval = duration(&raw.interval, 1, cx);
        let wait = match (&raw.wait, step) {
            (None, _) => Some(None),
            (Some(w), "verify") => cx.duration(w).map(Some),
            (Some(w), _) => {
                cx.problem(
                    w.span(),
                    format!("`wait` is for verify; {step} watches for its whole window"),
                    "not here",
                );
                None
            }
        };
        let error_rate = bound(
            &raw.error_rate_warning,
            &raw.error_rate_critical,
            (0.0005, 0.001),
            true,
            cx,
        );
        let p95_ms = bound(
            &raw.p95_ms_warning,
            &raw.p95_ms_critical,
            (150.0, 200.0),
            false,
            cx,
        );
        let slow_share = bound(
            &raw.slow_share_warning,
            &raw.slow_share_critical,
            (0.005, 0.01),
            true,
            cx,
        );
        let slow_ms = match &raw.slow_ms {
            Some(s) if s.get_ref().is_nan() || *s.get_ref() <= 0.0 => {
                cx.problem(s.span(), "the slow bound must be above 0 ms", "this bound");
                None
            }
            Some(s) => Some(*s.get_ref()),
            None => Some(1000.0),
        };
        let paths = match &raw.paths {
            Some(p) => cx.regex(p).map(Some),
            None => Some(None),
        };
        let pause_if_not_enough = cx.pause_or_rollback(&raw.on_not_enough, true);
        Some(Traffic {
            access_log: access_log?,
            window: window?,
            interval: interval?,
            min_requests: raw.min_requests.unwrap_or(20).max(1),
            error_rate: error_rate?,
            p95_ms: p95_ms?,
            slow_ms: slow_ms?,
            slow_share: slow_share?,
            paths: paths?,
            pause_if_not_enough: pause_if_not_enough?,
            wait: wait?,
        })
    }

    /// What is watched and at which thresholds, for the plan.
    pub(crate) fn describe(&self) -> String {
        let paths = self
            .paths
            .as_ref()
            .map(|p| format!(" matching /{p}/"))
            .unwrap_or_default();
        format!(
            "requests{paths} in `{}`, the last {} every {} (at least {} requests, else not enough traffic: {}): 5xx < {} % / {} %, p95 < {} / {} ms, over {} ms < {} % / {} % (warning / critical)",
            self.access_log,
            humantime::format_duration(self.window),
            humantime::format_duration(self.interval),
            self.min_requests,
            if self.pause_if_not_enough {
                "pause"
            } else {
                "rollback"
            },
            percent(self.error_rate.warning),
            percent(self.error_rate.critical),
            self.p95_ms.warning,
            self.p95_ms.critical,
            self.slow_ms,
            percent(self.slow_share.warning),
            percent(self.slow_share.critical),
        )
    }

    /// Watches the log from its end: only requests from now on count.
    pub(crate) fn watch(&self, workdir: &Path) -> Watch<'_> {
        self.watcher(Tail::at_end(workdir.join(&self.access_log)))
    }

    /// Watches the log from the requests of the last window on.
    pub(crate) fn watch_recent(&self, workdir: &Path) -> Watch<'_> {
        self.watcher(Tail::back(workdir.join(&self.access_log), RECENT_BYTES))
    }

    fn watcher(&self, tail: Tail) -> Watch<'_> {
        Watch {
            traffic: self,
            tail,
            window: Window::new(self.window.as_secs_f64()),
            judged: 0,
            busiest: 0,
        }
    }

    /// The gate could not judge: the run pauses or fails, as the playbook says; never a pass.
    pub(crate) fn inconclusive(&self, why: String) -> Inconclusive {
        Inconclusive {
            message: format!("not enough traffic: {why}"),
            pause: self.pause_if_not_enough,
        }
    }

    fn judge(&self, s: &Sample) -> Vec<Finding> {
        let both = |b: Bound, unit: &dyn Fn(f64) -> String| {
            format!(
                "< {} warning, < {} critical",
                unit(b.warning),
                unit(b.critical)
            )
        };
        let pct = |v: f64| format!("{} %", percent(v));
        let ms = |v: f64| format!("{v} ms");
        let mut findings = vec![
            Finding {
                metric: "traffic.error_rate",
                value: format!(
                    "{} % ({} of {} requests answered 5xx)",
                    percent(s.error_rate),
                    s.errors,
                    s.requests
                ),
                threshold: both(self.error_rate, &pct),
                verdict: self.error_rate.verdict(s.error_rate),
            },
            Finding {
                metric: "traffic.latency",
                value: format!(
                    "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                    s.p50_ms, s.p95_ms, s.p99_ms
                ),
                threshold: format!("p95 {}", both(self.p95_ms, &ms)),
                verdict: self.p95_ms.verdict(s.p95_ms),
            },
            Finding {
                metric: "traffic.slow",
                value: format!(
                    "{} % of requests over {} ms ({})",
                    percent(s.slow_share),
                    self.slow_ms,
                    s.slow
                ),
                threshold: both(self.slow_share, &pct),
                verdict: self.slow_share.verdict(s.slow_share),
            },
        ];
        let lines = s.requests + s.unparsed;
        if s.unparsed > 0 && s.unparsed as f64 >= UNPARSED_WARNING * lines as f64 {
            findings.push(Finding {
                metric: "traffic.unparsed",
                value: format!(
                    "{} of {lines} line(s) are not in the `runner` log format",
                    s.unparsed
                ),
                threshold: format!("< {} % of lines", percent(UNPARSED_WARNING)),
                verdict: Verdict::Warning,
            });
        }
        findings
    }
}

/// A warning and a critical level read from the playbook, with their defaults.
fn bound(
    warning: &Option<Spanned<f64>>,
    critical: &Option<Spanned<f64>>,
    defaults: (f64, f64),
    share: bool,
    cx: &mut Checker<'_>,
) -> Option<Bound> {
    let mut level = |field: &Option<Spanned<f64>>, default: f64| {
        let Some(f) = field else { return Some(default) };
        let v = *f.get_ref();
        let fits = v > 0.0 && (!share || v <= 1.0);
        if !fits {
            let want = if share {
                "a share above 0 and at most 1 (0.001 = 0.1 %)"
            } else {
                "above 0"
            };
            cx.problem(f.span(), format!("`{v}` is not {want}"), "this level");
        }
        fits.then_some(v)
    };
    let b = Bound {
        warning: level(warning, defaults.0)?,
        critical: level(critical, defaults.1)?,
    };
    if b.warning > b.critical {
        let span = warning
            .as_ref()
            .or(critical.as_ref())
            .map(Spanned::span)
            .unwrap_or(0..0);
        cx.problem(
            span,
            format!(
                "the {}warning level {} is above the critical one {}",
                if warning.is_none() { "default " } else { "" },
                b.warning,
                b.critical
            ),
            "warning must not exceed critical",
        );
        return None;
    }
    Some(b)
}

/// A share as a percentage, without trailing zeros: 0.0005 -> "0.05".
fn percent(share: f64) -> String {
    let text = format!("{:.4}", share * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The access log as it is read, and the window over it.
pub(crate) struct Watch<'t> {
    pub(crate) traffic: &'t Traffic,
    tail: Tail,
    window: Window,
    /// Windows that had enough requests for a verdict.
    pub(crate) judged: u64,
    /// The most requests a window had.
    pub(crate) busiest: u64,
}

/// One look at the window that ends now.
pub(crate) struct Look {
    pub(crate) sample: Sample,
    /// The verdicts, or `None` when the window had too few requests to judge.
    pub(crate) findings: Option<Vec<Finding>>,
}

impl Watch<'_> {
    /// Reads what the log gained and judges the window that ends at `now` (epoch seconds).
    pub(crate) fn look(&mut self, now: f64) -> Result<Look, String> {
        let (window, paths) = (&mut self.window, &self.traffic.paths);
        self.tail
            .read(&mut |line| match line {
                Line::Complete(bytes) => match log::parse(bytes, now) {
                    Some(e) if !e.ours && paths.as_ref().is_none_or(|p| p.is_match(&e.path)) => {
                        window.push(e.time, e.status, e.ms)
                    }
                    Some(_) => {}
                    None => window.push_unparsed(now),
                },
                Line::Overlong => window.push_unparsed(now),
            })
            .map_err(|e| {
                format!(
                    "cannot read the access log `{}`: {e}",
                    self.traffic.access_log
                )
            })?;
        let sample = self.window.sample(now, self.traffic.slow_ms);
        self.busiest = self.busiest.max(sample.requests);
        let enough = sample.requests >= self.traffic.min_requests;
        self.judged += u64::from(enough);
        let findings = enough.then(|| self.traffic.judge(&sample));
        Ok(Look { sample, findings })
    }

    /// Looks at the window that ends now.
    pub(crate) fn look_now(&mut self) -> Result<Look, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.look(now)
    }

    /// Why no window was judged, for [`Traffic::inconclusive`].
    pub(crate) fn too_thin(&self) -> String {
        format!(
            "no {} window of `{}` had {} request(s) (the busiest had {})",
            humantime::format_duration(self.traffic.window),
            self.traffic.access_log,
            self.traffic.min_requests,
            self.busiest
        )
    }
}

#[cfg(test)]
mod tests;
