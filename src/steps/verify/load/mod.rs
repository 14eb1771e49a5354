//! The load probe: requests at a fixed arrival rate (open model) to one or more endpoints for
//! a duration or a number of requests, latencies from each request's due time in HDR
//! histograms, an unexpected status or no answer counted as an error. A probe may repeat an
//! earlier step's load and compare with its figures ("performance no worse than before").

mod compare;
mod probe;
mod shape;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub(crate) use compare::Compare;
pub(crate) use probe::Measured;

use super::{Check, Verdict};
use crate::check::Checker;
use crate::steps::Step;
use crate::steps::http_check::Statuses;
use shape::{Endpoint, RawEndpoint, Shape};

/// Below this share of the target rate, the figures are not what was asked for.
const KEPT_RATE: f64 = 0.9;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<String>>,
    expect_status: Option<Statuses>,
    endpoints: Option<Vec<Spanned<RawEndpoint>>>,
    /// Requests per second, sent on schedule whatever the answers take.
    rate: Option<Spanned<f64>>,
    duration: Option<Spanned<String>>,
    requests: Option<Spanned<u64>>,
    /// The most connections open at once.
    connections: Option<Spanned<u32>>,
    /// The closed model this probe replaced: refused with what to write instead.
    concurrency: Option<Spanned<toml::Value>>,
    /// Critical when the 95th percentile latency is not below this many milliseconds.
    p95_ms: Option<f64>,
    /// Critical when the share of failed requests is not below this (0.001 = 0.1 %).
    error_rate: Option<f64>,
    /// An earlier verify step whose load this one repeats, and compares with.
    same_as: Option<Spanned<String>>,
    p95_ratio_max: Option<Spanned<f64>>,
    error_rate_max_increase: Option<Spanned<f64>>,
    p95_floor_ms: Option<Spanned<f64>>,
}

#[derive(Debug)]
pub(crate) struct Load {
    shape: Shape,
    p95_ms: Option<f64>,
    error_rate: Option<f64>,
    compare: Option<Compare>,
}

impl Load {
    pub(crate) fn validate(
        raw: Raw,
        span: Range<usize>,
        cx: &mut Checker<'_>,
        earlier: &[Step],
    ) -> Option<Self> {
        if let Some(c) = &raw.concurrency {
            cx.problem(
                c.span(),
                "`concurrency` (a closed-model probe, which under-reports a stall) is gone",
                "give `rate` (requests per second, sent on schedule) and, if needed, `connections` (at most this many open, default 64)",
            );
        }
        let compare = Compare::validate(&raw, cx);
        let shape = match &raw.same_as {
            Some(name) => shape::repeated(&raw, name, cx, earlier),
            None => shape::shape(&raw, &span, cx),
        };
        Some(Load {
            shape: shape?,
            p95_ms: raw.p95_ms,
            error_rate: raw.error_rate,
            compare: compare?,
        })
    }

    pub(crate) fn describe(&self) -> String {
        let s = &self.shape;
        let endpoints: Vec<String> = s
            .endpoints
            .iter()
            .map(|e| {
                let statuses: Vec<String> = e.expect.iter().map(u16::to_string).collect();
                let weight = if s.endpoints.len() > 1 {
                    format!(", weight {}", e.weight)
                } else {
                    String::new()
                };
                format!("{} (expect {}{weight})", e.name(), statuses.join("|"))
            })
            .collect();
        let mut limits: Vec<String> = Vec::new();
        if let Some(l) = self.p95_ms {
            limits.push(format!("p95 < {l} ms"));
        }
        if let Some(l) = self.error_rate {
            limits.push(format!("errors < {} %", l * 100.0));
        }
        let mut text = format!(
            "load probe: {} at {} req/s, {} requests ({}), up to {} connections",
            endpoints.join(", "),
            s.rate,
            s.requests,
            humantime::format_duration(Duration::from_secs_f64(
                (s.requests as f64 / s.rate * 1000.0).round() / 1000.0
            )),
            s.connections
        );
        if !limits.is_empty() {
            text.push_str(&format!("; {}", limits.join(", ")));
        }
        if let Some(c) = &self.compare {
            text.push_str(&format!("; {}", c.describe()));
        }
        text
    }

    /// The step whose figures this probe is compared with, if any.
    pub(crate) fn compare(&self) -> Option<&Compare> {
        self.compare.as_ref()
    }

    pub(crate) async fn run(&self) -> Result<Measured, String> {
        let s = &self.shape;
        probe::run(&probe::Schedule {
            endpoints: &s.endpoints,
            rate: s.rate,
            requests: s.requests,
            connections: s.connections,
        })
        .await
    }

    pub(crate) fn checks(&self, m: &Measured) -> Vec<Check> {
        let below = |value: f64, limit: Option<f64>| match limit {
            Some(l) if value >= l => Verdict::Critical,
            _ => Verdict::Ok,
        };
        let rate = |errors: u64, requests: u64| {
            if requests == 0 {
                1.0
            } else {
                errors as f64 / requests as f64
            }
        };
        let error_limit = self
            .error_rate
            .map_or("-".into(), |l| format!("< {} %", l * 100.0));
        let mut checks = vec![
            Check::new(
                "load.rate",
                format!(
                    "{:.1} req/s achieved of {} req/s targeted ({} requests in {:.1}s)",
                    m.achieved_rps, m.target_rps, m.requests, m.seconds
                ),
                format!(">= {:.0} % of the target", KEPT_RATE * 100.0),
                if m.achieved_rps < KEPT_RATE * m.target_rps {
                    // The requests went out late (every connection busy, or the probe starved):
                    // the latencies include that wait, but the load was not the one asked for.
                    Verdict::Warning
                } else {
                    Verdict::Ok
                },
            ),
            Check::new(
                "load.latency",
                format!(
                    "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    m.p50_ms, m.p95_ms, m.p99_ms, m.max_ms
                ),
                self.p95_ms.map_or("-".into(), |l| format!("p95 < {l} ms")),
                below(m.p95_ms, self.p95_ms),
            ),
            Check::new(
                "load.error_rate",
                format!(
                    "{:.3} % ({} of {})",
                    m.error_rate() * 100.0,
                    m.errors,
                    m.requests
                ),
                error_limit.clone(),
                if m.requests == 0 {
                    Verdict::Critical
                } else {
                    below(m.error_rate(), self.error_rate)
                },
            ),
        ];
        // With several endpoints, one that always fails must not hide behind the others.
        if m.endpoints.len() > 1 {
            checks.extend(m.endpoints.iter().map(|e| {
                let failures: Vec<String> = e
                    .failures
                    .iter()
                    .map(|(k, n)| format!("{k} x{n}"))
                    .collect();
                Check::new(
                    &format!("load.endpoint `{}`", e.endpoint),
                    format!(
                        "{} requests, {} errors{}, p95 {:.1} ms",
                        e.requests,
                        e.errors,
                        if failures.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", failures.join(", "))
                        },
                        e.p95_ms
                    ),
                    error_limit.clone(),
                    below(rate(e.errors, e.requests), self.error_rate),
                )
            }));
        }
        checks
    }
}
