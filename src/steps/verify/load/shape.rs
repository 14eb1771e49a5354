//! The load a probe sends, from its fields: endpoints, rate, amount, connections; or the
//! load of an earlier step, repeated exactly (`same_as`).

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Raw;
use crate::check::Checker;
use crate::steps::http_check::{Request, Statuses};
use crate::steps::{Action, Step};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<String>>,
    expect_status: Option<Statuses>,
    weight: Option<Spanned<u32>>,
}

/// One endpoint the probe sends to, with the statuses that count as an answer.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(super) request: Request,
    pub(super) expect: Vec<u16>,
    /// Its share of the requests against the other endpoints' weights.
    pub(super) weight: u32,
}

impl Endpoint {
    pub(super) fn name(&self) -> String {
        format!("{} {}", self.request.method, self.request.url)
    }
}

/// The load itself: what is sent, how fast, how much.
#[derive(Clone, Debug)]
pub(super) struct Shape {
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) rate: f64,
    pub(super) requests: u64,
    pub(super) connections: u32,
}

/// The load of the earlier step `name`, which this one repeats exactly.
pub(super) fn repeated(
    raw: &Raw,
    name: &Spanned<String>,
    cx: &mut Checker<'_>,
    earlier: &[Step],
) -> Option<Shape> {
    let given: Vec<&str> = [
        ("url", raw.url.is_some()),
        ("method", raw.method.is_some()),
        ("headers", raw.headers.is_some()),
        ("body", raw.body.is_some()),
        ("expect_status", raw.expect_status.is_some()),
        ("endpoints", raw.endpoints.is_some()),
        ("rate", raw.rate.is_some()),
        ("duration", raw.duration.is_some()),
        ("requests", raw.requests.is_some()),
        ("connections", raw.connections.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
    if !given.is_empty() {
        cx.problem(
            name.span(),
            format!(
                "`same_as` repeats the load of step `{}` exactly, so `{}` cannot be given here",
                name.get_ref(),
                given.join("`, `")
            ),
            "the load comes from that step",
        );
    }
    let id = name.get_ref();
    let found = match earlier.iter().find(|s| s.id == *id).map(|s| &s.action) {
        Some(Action::Verify(v)) => v
            .load()
            .map(|l| l.shape.clone())
            .ok_or(format!("step `{id}` has no `load` to repeat")),
        Some(other) => Err(format!(
            "step `{id}` is a `{}` step, not a verify step with `load`",
            other.kind().name()
        )),
        None => Err(format!("there is no valid step `{id}` before this one")),
    };
    if let Err(why) = &found {
        cx.problem(
            name.span(),
            why.clone(),
            "a verify step with `load`, before this one",
        );
    }
    found.ok().filter(|_| given.is_empty())
}

/// The load as this step's fields give it.
pub(super) fn shape(raw: &Raw, span: &Range<usize>, cx: &mut Checker<'_>) -> Option<Shape> {
    let endpoints = match (&raw.url, &raw.endpoints) {
        (Some(url), None) => {
            let request = Request::validate(
                url,
                raw.method.as_ref(),
                raw.headers.as_ref(),
                raw.body.as_ref(),
                cx,
            );
            let expect = statuses(raw.expect_status.as_ref(), url, cx);
            Some(vec![Endpoint {
                request: request?,
                expect: expect?,
                weight: 1,
            }])
        }
        (None, Some(list)) if !list.is_empty() => {
            let shorthand = raw.method.is_some()
                || raw.headers.is_some()
                || raw.body.is_some()
                || raw.expect_status.is_some();
            if shorthand {
                cx.problem(
                    span.clone(),
                    "`method`, `headers`, `body` and `expect_status` go in each of `endpoints`",
                    "this load",
                );
            }
            // Every endpoint is checked, so that all their problems are reported at once.
            let endpoints: Vec<Option<Endpoint>> = list.iter().map(|e| endpoint(e, cx)).collect();
            endpoints
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .filter(|_| !shorthand)
        }
        _ => {
            cx.problem(
                span.clone(),
                "a load probe needs `url` or a non-empty `endpoints` list (not both)",
                "what to probe",
            );
            None
        }
    };
    let rate = match &raw.rate {
        Some(r) => bounded(r, 0.1..=1_000_000.0, "rate", cx),
        None => {
            cx.problem(
                span.clone(),
                "a load probe needs `rate` (requests per second, sent on schedule)",
                "this load",
            );
            None
        }
    };
    let requests = amount(raw, rate, span, cx);
    let connections = raw
        .connections
        .as_ref()
        .map_or(Some(64), |c| bounded(c, 1..=10_000, "connections", cx));
    Some(Shape {
        endpoints: endpoints?,
        rate: rate?,
        requests: requests?,
        connections: connections?,
    })
}

/// How many requests: given, or the rate times the duration (10 s when neither is given).
fn amount(raw: &Raw, rate: Option<f64>, span: &Range<usize>, cx: &mut Checker<'_>) -> Option<u64> {
    match (&raw.requests, &raw.duration) {
        (Some(_), Some(_)) => {
            cx.problem(
                span.clone(),
                "give `duration` or `requests`, not both",
                "this load",
            );
            None
        }
        (Some(n), None) if *n.get_ref() == 0 => {
            cx.problem(n.span(), "`requests` must be at least 1", "here");
            None
        }
        (Some(n), None) => Some(*n.get_ref()),
        (None, d) => {
            let duration = match d {
                Some(d) => cx.duration(d)?,
                None => Duration::from_secs(10),
            };
            Some(((duration.as_secs_f64() * rate?).round() as u64).max(1))
        }
    }
}

fn endpoint(raw: &Spanned<RawEndpoint>, cx: &mut Checker<'_>) -> Option<Endpoint> {
    let e = raw.get_ref();
    let request = Request::validate(
        &e.url,
        e.method.as_ref(),
        e.headers.as_ref(),
        e.body.as_ref(),
        cx,
    );
    let expect = statuses(e.expect_status.as_ref(), &e.url, cx);
    let weight = e
        .weight
        .as_ref()
        .map_or(Some(1), |w| bounded(w, 1..=1000, "weight", cx));
    Some(Endpoint {
        request: request?,
        expect: expect?,
        weight: weight?,
    })
}

/// A number field within `range` (NaN and infinities are not).
fn bounded<T: Copy + PartialOrd + std::fmt::Display>(
    field: &Spanned<T>,
    range: RangeInclusive<T>,
    name: &str,
    cx: &mut Checker<'_>,
) -> Option<T> {
    let value = *field.get_ref();
    if range.contains(&value) {
        return Some(value);
    }
    cx.problem(
        field.span(),
        format!(
            "`{name}` must be from {} to {}, not {value}",
            range.start(),
            range.end()
        ),
        "here",
    );
    None
}

/// The statuses that count as an answer (200 when not given).
fn statuses(
    given: Option<&Statuses>,
    url: &Spanned<String>,
    cx: &mut Checker<'_>,
) -> Option<Vec<u16>> {
    let list = given.map_or(vec![200], Statuses::list);
    if list.is_empty() || list.iter().any(|s| !(100..=599).contains(s)) {
        cx.problem(
            url.span(),
            "`expect_status` must list HTTP statuses (100 to 599)",
            "this endpoint",
        );
        return None;
    }
    Some(list)
}
