//! The load probe: concurrent clients against one endpoint for a duration or a number of
//! requests (the runbook used autocannon: 100 connections for 60 s), latencies in an HDR
//! histogram, an answer other than 2xx or no answer counted as an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Check, Verdict};
use crate::playbook::Checker;
use crate::steps::http_check::Request;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<String>>,
    concurrency: Option<u32>,
    duration: Option<Spanned<String>>,
    requests: Option<u64>,
    /// Critical when the 95th percentile latency is not below this many milliseconds.
    p95_ms: Option<f64>,
    /// Critical when the share of failed requests is not below this (0.001 = 0.1 %).
    error_rate: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct Load {
    request: Request,
    concurrency: u32,
    duration: Duration,
    requests: Option<u64>,
    p95_ms: Option<f64>,
    error_rate: Option<f64>,
}

/// One endpoint, as each probe connection sends to it: like autocannon and wrk, every
/// client keeps one HTTP/1.1 connection open (and opens a new one when the server closes it).
#[derive(Clone)]
struct Target {
    address: String,
    request: http::request::Parts,
    body: Bytes,
}

impl Target {
    fn new(load: &Load) -> Result<Self, String> {
        let url = reqwest::Url::parse(&load.request.url).map_err(|e| e.to_string())?;
        if url.scheme() != "http" {
            return Err(format!(
                "the load probe speaks plain HTTP, not `{}`: probe the service where it listens without TLS",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("the probe URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let path = &url[url::Position::BeforePath..];
        let mut builder = http::Request::builder()
            .method(load.request.method.clone())
            .uri(path)
            .header(http::header::HOST, format!("{host}:{port}"));
        for (k, v) in &load.request.headers {
            builder = builder.header(k, v);
        }
        let (request, ()) = builder
            .body(())
            .map_err(|e| format!("cannot build the probe's request: {e}"))?
            .into_parts();
        Ok(Target {
            address: format!("{host}:{port}"),
            request,
            body: Bytes::from(load.request.body.clone().unwrap_or_default()),
        })
    }

    /// Sends one request on `connection` (opened first if needed); true if it answered 2xx.
    async fn send(&self, connection: &mut Option<SendRequest<Full<Bytes>>>) -> bool {
        if let Some(c) = connection.as_mut()
            && c.ready().await.is_err()
        {
            *connection = None;
        }
        if connection.is_none() {
            match self.connect().await {
                Some(c) => *connection = Some(c),
                None => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return false;
                }
            }
        }
        let sender = connection.as_mut().expect("connected above");
        let request = http::Request::from_parts(self.request.clone(), Full::new(self.body.clone()));
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            let response = sender.send_request(request).await.ok()?;
            let ok = response.status().is_success();
            response.into_body().collect().await.ok()?;
            Some(ok)
        })
        .await;
        match answer {
            Ok(Some(ok)) => ok,
            _ => {
                *connection = None;
                false
            }
        }
    }

    async fn connect(&self) -> Option<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.address).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(driver);
        Some(sender)
    }
}

/// What the probe measured.
#[derive(Debug, Serialize)]
pub(crate) struct Measured {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) throughput: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Load {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let request = Request::validate(
            &raw.url,
            raw.method.as_ref(),
            raw.headers.as_ref(),
            raw.body.as_ref(),
            cx,
        );
        let duration = match &raw.duration {
            Some(d) => cx.duration(d)?,
            None => Duration::from_secs(10),
        };
        Some(Load {
            request: request?,
            concurrency: raw.concurrency.unwrap_or(10).max(1),
            duration,
            requests: raw.requests,
            p95_ms: raw.p95_ms,
            error_rate: raw.error_rate,
        })
    }

    pub(crate) fn describe(&self) -> String {
        let amount = match self.requests {
            Some(n) => format!("{n} requests"),
            None => format!("{}", humantime::format_duration(self.duration)),
        };
        format!(
            "load probe: {} {} with {} connections for {amount}",
            self.request.method, self.request.url, self.concurrency
        )
    }

    pub(crate) async fn run(&self) -> Result<(Measured, Vec<Check>), String> {
        let target = Target::new(self)?;
        let started = Instant::now();
        let deadline = started + self.duration;
        let budget = Arc::new(AtomicU64::new(self.requests.unwrap_or(u64::MAX)));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.concurrency {
            let (target, budget) = (target.clone(), budget.clone());
            let timed = self.requests.is_none();
            workers.spawn(async move {
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let mut errors = 0u64;
                let mut connection: Option<SendRequest<Full<Bytes>>> = None;
                loop {
                    if timed && Instant::now() >= deadline {
                        break;
                    }
                    if budget
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_err()
                    {
                        break;
                    }
                    let sent = Instant::now();
                    let ok = target.send(&mut connection).await;
                    histogram.saturating_record(sent.elapsed().as_micros() as u64);
                    if !ok {
                        errors += 1;
                    }
                }
                (histogram, errors)
            });
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut errors = 0;
        while let Some(done) = workers.join_next().await {
            let (h, e) = done.map_err(|e| format!("a probe client failed: {e}"))?;
            all.add(h)
                .map_err(|e| format!("cannot merge latencies: {e}"))?;
            errors += e;
        }
        let seconds = started.elapsed().as_secs_f64();
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        let measured = Measured {
            requests: all.len(),
            errors,
            seconds,
            throughput: all.len() as f64 / seconds,
            p50_ms: ms(0.5),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: all.max() as f64 / 1000.0,
        };
        let checks = self.checks(&measured);
        Ok((measured, checks))
    }

    fn checks(&self, m: &Measured) -> Vec<Check> {
        let rate = if m.requests == 0 {
            1.0
        } else {
            m.errors as f64 / m.requests as f64
        };
        let below = |value: f64, limit: Option<f64>| match limit {
            Some(l) if value >= l => Verdict::Critical,
            _ => Verdict::Ok,
        };
        vec![
            Check::new(
                "load.throughput",
                format!(
                    "{:.0} req/s ({} requests in {:.1}s)",
                    m.throughput, m.requests, m.seconds
                ),
                "-",
                Verdict::Ok,
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
                format!("{:.3} % ({} of {})", rate * 100.0, m.errors, m.requests),
                self.error_rate
                    .map_or("-".into(), |l| format!("< {} %", l * 100.0)),
                if m.requests == 0 {
                    Verdict::Critical
                } else {
                    below(rate, self.error_rate)
                },
            ),
        ]
    }
}
