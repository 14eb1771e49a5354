//! `monitor`: watch a deployment for a window. Every interval: the state of the named
//! containers, the health URL's status, and the number of log lines matching a pattern since
//! the window began (the runbook's monitor-deployment script); and, every traffic interval,
//! the real requests the load balancer logged in the last traffic window (see `traffic`). A
//! warning threshold sends an alert and goes on; a critical one fails the step at once, which
//! rolls the run back.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::HealthStatusEnum;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::time::Instant;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::docker::describe;
use crate::notify::{self, Alert, Level};
use crate::traffic::{self, Traffic, Verdict, Watch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    window: Spanned<String>,
    interval: Option<Spanned<String>>,
    #[serde(default)]
    containers: Vec<Spanned<String>>,
    health_url: Option<Spanned<String>>,
    log_pattern: Option<Spanned<String>>,
    errors_warning: Option<u64>,
    errors_critical: Option<u64>,
    /// Consecutive failed health probes that are critical (default 3).
    health_failures_critical: Option<u32>,
    traffic: Option<traffic::Raw>,
}

#[derive(Debug)]
pub(crate) struct Monitor {
    window: Duration,
    interval: Duration,
    containers: Vec<String>,
    health_url: Option<String>,
    pattern: regex::Regex,
    errors_warning: Option<u64>,
    errors_critical: u64,
    health_failures_critical: u32,
    traffic: Option<Traffic>,
}

impl Monitor {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let window = cx.duration(&raw.window);
        let interval = match &raw.interval {
            Some(i) => cx.duration(i),
            None => Some(Duration::from_secs(10)),
        };
        let containers: Option<Vec<String>> = raw.containers.iter().map(|c| cx.text(c)).collect();
        let health_url = match &raw.health_url {
            Some(u) => Some(cx.text(u)?),
            None => None,
        };
        let pattern = match &raw.log_pattern {
            Some(p) => cx.regex(p),
            None => Some(regex::Regex::new("ERROR").expect("a valid pattern")),
        };
        let traffic = raw
            .traffic
            .map(|t| Traffic::validate(t, "monitor", cx).ok_or(()))
            .transpose();
        if raw.containers.is_empty() && raw.health_url.is_none() && matches!(traffic, Ok(None)) {
            cx.problem(
                raw.window.span(),
                "a monitor needs `containers`, `health_url` or `traffic` to watch",
                "nothing to watch for this window",
            );
            return None;
        }
        Some(Monitor {
            window: window?,
            interval: interval?,
            containers: containers?,
            health_url,
            pattern: pattern?,
            errors_warning: raw.errors_warning,
            errors_critical: raw.errors_critical.unwrap_or(10),
            health_failures_critical: raw.health_failures_critical.unwrap_or(3),
            traffic: traffic.ok()?,
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        let mut watched = Vec::new();
        if !self.containers.is_empty() {
            let warning = self
                .errors_warning
                .map(|w| format!("alert at {w}, "))
                .unwrap_or_default();
            watched.push(format!(
                "the states of {} and their log lines matching /{}/ ({warning}fail at {})",
                self.containers.join(", "),
                self.pattern,
                self.errors_critical
            ));
        }
        if let Some(u) = &self.health_url {
            watched.push(format!(
                "GET {u} (critical after {} failures in a row)",
                self.health_failures_critical
            ));
        }
        if let Some(t) = &self.traffic {
            watched.push(t.describe());
        }
        Intent::new(
            format!(
                "watch for {} every {}: {}",
                humantime::format_duration(self.window),
                humantime::format_duration(self.interval),
                watched.join("; ")
            ),
            false,
        )
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let started = Instant::now();
        let Some(traffic) = &self.traffic else {
            return self.watch(cx, started).await;
        };
        let mut watch = traffic.watch(cx.workdir);
        let mut warned = BTreeSet::new();
        let summary = tokio::select! {
            biased;
            done = self.watch(cx, started) => done?,
            breach = watch_traffic(&mut watch, cx, started, &mut warned) => return Err(breach),
        };
        // The last look, as the window ends.
        look_at_traffic(&mut watch, cx, started, &mut warned).await?;
        if watch.judged == 0 {
            return Err(traffic.inconclusive(watch.too_thin()).into());
        }
        Ok(format!(
            "{summary}; traffic: {} window(s) judged, the busiest had {} request(s)",
            watch.judged, watch.busiest
        ))
    }

    /// The containers, the health URL and the log lines, every interval for the window.
    async fn watch(&self, cx: &StepCx<'_>, started: Instant) -> Result<String, StepError> {
        let docker = match self.containers.is_empty() {
            true => None,
            false => Some(cx.lent.docker().await?),
        };
        let http = cx.lent.http()?;
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i32);
        let mut health_failures = 0;
        let mut alerted = BTreeSet::new();
        let errors = loop {
            let elapsed = started.elapsed().as_secs();
            let mut problems = Vec::new();
            let mut errors = 0;
            if let Some(docker) = &docker {
                for name in &self.containers {
                    if let Some(p) = container_problem(docker, name).await {
                        problems.push(p);
                    }
                }
                for name in &self.containers {
                    errors += self.count_matches(docker, name, since).await?;
                }
            }
            let health = match &self.health_url {
                Some(url) => match http
                    .get(url)
                    .timeout(self.interval.max(Duration::from_secs(1)))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        health_failures = 0;
                        format!("health {}", r.status().as_u16())
                    }
                    Ok(r) => {
                        health_failures += 1;
                        format!("health {}", r.status().as_u16())
                    }
                    Err(e) => {
                        health_failures += 1;
                        format!("health: {}", crate::error::chain(&e.without_url()))
                    }
                },
                None => "no health URL".into(),
            };
            cx.record(format!(
                "t+{elapsed}s: {}; {health}; {errors} line(s) matching /{}/",
                if problems.is_empty() {
                    "containers ok".into()
                } else {
                    problems.join(", ")
                },
                self.pattern
            ));
            if !problems.is_empty() {
                return Err(format!("critical at t+{elapsed}s: {}", problems.join(", ")).into());
            }
            if health_failures >= self.health_failures_critical {
                return Err(format!("critical at t+{elapsed}s: {health_failures} failed health probes in a row ({health})").into());
            }
            if errors >= self.errors_critical {
                return Err(format!(
                    "critical at t+{elapsed}s: {errors} log line(s) matching /{}/ since the window began (critical at {})",
                    self.pattern, self.errors_critical
                )
                .into());
            }
            if let Some(limit) = self.errors_warning
                && errors >= limit
                && alerted.insert("errors")
            {
                let alert = Alert {
                    level: Level::Warning,
                    title: format!(
                        "{errors} error line(s) in the logs of {}",
                        self.containers.join(", ")
                    ),
                    text: format!(
                        "log lines matching /{}/ since the monitoring window began",
                        self.pattern
                    ),
                    service: self.containers.join(", "),
                    metric: "error_log_lines".into(),
                    value: errors.to_string(),
                    threshold: limit.to_string(),
                };
                let said =
                    format!("{errors} error line(s) reached the warning threshold ({limit})");
                send_alert(cx, &alert, said).await;
            }
            // The last look is at the window's end, so the traffic gate beside this loop
            // watches for all of it.
            let left = self.window.saturating_sub(started.elapsed());
            cx.meter(
                started.elapsed().as_secs().min(self.window.as_secs()),
                self.window.as_secs(),
                format!(
                    "watched {elapsed}s of {}",
                    humantime::format_duration(self.window)
                ),
            );
            if left.is_zero() {
                break errors;
            }
            tokio::time::sleep(self.interval.min(left)).await;
        };
        let watched = match self.containers.is_empty() {
            true => "the deployment".to_string(),
            false => self.containers.join(", "),
        };
        Ok(format!(
            "{watched} watched for {}: containers ok, {errors} line(s) matching /{}/",
            humantime::format_duration(self.window),
            self.pattern
        ))
    }

    /// Lines matching the pattern that `container` wrote since `since` (epoch seconds).
    async fn count_matches(
        &self,
        docker: &Docker,
        container: &str,
        since: i32,
    ) -> Result<u64, String> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            since,
            ..Default::default()
        };
        let mut logs = docker.logs(container, Some(options));
        let mut count = 0;
        while let Some(chunk) = logs.next().await {
            let chunk = chunk
                .map_err(|e| format!("cannot read the logs of `{container}`: {}", describe(&e)))?;
            let bytes = chunk.into_bytes();
            count += String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| self.pattern.is_match(l))
                .count() as u64;
        }
        Ok(count)
    }
}

/// Sends a warning to `[notify]` and journals it, saying whether the alert went out.
async fn send_alert(cx: &StepCx<'_>, alert: &Alert, said: String) {
    let Some(webhook) = cx.webhook else {
        cx.warn(format!("{said}; no [notify] webhook to alert"));
        return;
    };
    match notify::send(cx.lent, webhook, &alert.payload(SystemTime::now())).await {
        Ok(()) => cx.warn(format!("{said}; alert sent")),
        Err(why) => cx.warn(format!("{said}; {why}")),
    }
}

/// Judges the traffic window every traffic interval; returns the first critical breach (or an
/// unreadable log).
async fn watch_traffic(
    watch: &mut Watch<'_>,
    cx: &StepCx<'_>,
    started: Instant,
    warned: &mut BTreeSet<&'static str>,
) -> StepError {
    loop {
        if let Err(breach) = look_at_traffic(watch, cx, started, warned).await {
            return breach;
        }
        tokio::time::sleep(watch.traffic.interval).await;
    }
}

/// Journals the window that ends now and judges it. A warning alerts once per breach (the
/// metrics in `warned`): again only after the metric was ok.
async fn look_at_traffic(
    watch: &mut Watch<'_>,
    cx: &StepCx<'_>,
    started: Instant,
    warned: &mut BTreeSet<&'static str>,
) -> Result<(), StepError> {
    let t = started.elapsed().as_secs_f64();
    let look = watch
        .look_now()
        .map_err(|why| watch.traffic.inconclusive(why))?;
    cx.record(format!(
        "traffic t+{t:.1}s: {}",
        serde_json::to_string(&look.sample).expect("figures serialize")
    ));
    let window = humantime::format_duration(watch.traffic.window);
    for f in look.findings.iter().flatten() {
        match f.verdict {
            Verdict::Critical => {
                return Err(format!(
                    "critical at t+{t:.1}s: {} {} (threshold: {}) in the last {window}",
                    f.metric, f.value, f.threshold
                )
                .into());
            }
            Verdict::Warning if warned.insert(f.metric) => {
                let alert = Alert {
                    level: Level::Warning,
                    title: format!("real traffic: {} {}", f.metric, f.value),
                    text: format!("requests the load balancer logged in the last {window}"),
                    service: "load balancer".into(),
                    metric: f.metric.into(),
                    value: f.value.clone(),
                    threshold: f.threshold.clone(),
                };
                let said = format!(
                    "{} {} reached its warning level ({})",
                    f.metric, f.value, f.threshold
                );
                send_alert(cx, &alert, said).await;
            }
            Verdict::Warning => {}
            Verdict::Ok => {
                warned.remove(f.metric);
            }
        }
    }
    Ok(())
}

/// Why a container is not well, if it is not.
async fn container_problem(docker: &Docker, name: &str) -> Option<String> {
    let c = match docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return Some(format!("`{name}`: {}", describe(&e))),
    };
    let state = c.state.unwrap_or_default();
    if !state.running.unwrap_or(false) {
        return Some(format!(
            "`{name}` is not running (exit code {})",
            state.exit_code.unwrap_or_default()
        ));
    }
    match state.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::UNHEALTHY) => Some(format!("`{name}` is unhealthy")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::context::testing::{Lender, records};
    use crate::steps::Action;

    /// The monitor of a playbook whose only step watches `access.log` beside it.
    fn monitor(dir: &std::path::Path, fields: &str) -> Monitor {
        match crate::steps::only_step(dir, "monitor", fields) {
            Action::Monitor(m) => m,
            other => panic!("{}", other.kind().name()),
        }
    }

    async fn apply(dir: &std::path::Path, m: &Monitor) -> (Result<String, StepError>, Vec<String>) {
        let lender = Lender::default();
        let (cx, notes) = lender.cx(dir);
        let outcome = m.apply(&cx).await;
        drop(cx);
        (outcome, records(notes).await)
    }

    /// Requests logged a second ago (a window ending now takes them in at once): the wall clock
    /// stands almost still while tokio's paused clock runs the monitor's window in no time.
    fn requests(dir: &std::path::Path, n: usize, status: u16) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - 1.0;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("access.log"))
            .unwrap();
        for _ in 0..n {
            writeln!(
                file,
                r#"{{"time":{now:.3},"status":{status},"request_time":0.002,"path":"/api/keys/k"}}"#
            )
            .unwrap();
        }
    }

    const TRAFFIC: &str = "window = \"60s\"\ninterval = \"10s\"\ntraffic = { access_log = \"access.log\", window = \"1h\", interval = \"2s\" }";

    #[tokio::test(start_paused = true)]
    async fn traffic_is_judged_every_traffic_interval_until_the_window_ends() {
        let dir = tempfile::tempdir().unwrap();
        requests(dir.path(), 5, 500);
        let m = monitor(dir.path(), TRAFFIC);
        let task = apply(dir.path(), &m);
        tokio::pin!(task);
        // The monitor starts at the log's end: the 5xx before it are not its business.
        tokio::select! {
            _ = &mut task => panic!("the window is a minute"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => requests(dir.path(), 40, 200),
        }
        let (outcome, records) = task.await;
        let summary = outcome.unwrap();
        let samples = records
            .iter()
            .filter(|r| r.starts_with("traffic t+"))
            .count();
        assert_eq!(samples, 31, "t+0s, 2s, ... 60s:\n{records:#?}");
        assert!(
            summary.ends_with("traffic: 30 window(s) judged, the busiest had 40 request(s)"),
            "{summary}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_critical_window_fails_the_step_at_once_and_a_thin_one_is_no_pass() {
        let dir = tempfile::tempdir().unwrap();
        requests(dir.path(), 0, 200);
        let m = monitor(dir.path(), TRAFFIC);
        let task = apply(dir.path(), &m);
        tokio::pin!(task);
        tokio::select! {
            _ = &mut task => panic!("the window is a minute"),
            _ = tokio::time::sleep(Duration::from_secs(7)) => requests(dir.path(), 20, 502),
        }
        let (outcome, records) = task.await;
        let error = outcome.unwrap_err();
        assert!(!error.pause, "{records:#?}");
        assert!(
            error.message.starts_with(
                "critical at t+8.0s: traffic.error_rate 100 % (20 of 20 requests answered 5xx)"
            ),
            "{}",
            error.message
        );

        let thin = tempfile::tempdir().unwrap();
        requests(thin.path(), 19, 200);
        let m = monitor(thin.path(), TRAFFIC);
        let (outcome, _) = apply(thin.path(), &m).await;
        let error = outcome.unwrap_err();
        assert!(error.pause, "not enough traffic pauses by default");
        assert_eq!(
            error.message,
            "not enough traffic: no 1h window of `access.log` had 20 request(s) (the busiest had 0)"
        );
    }
}
