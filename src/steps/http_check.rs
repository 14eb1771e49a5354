//! `http_check`: a gate. Polls a URL until its status and JSONPath assertions hold for enough
//! consecutive samples (passed), until too many answers are wrong (failed), or until the time
//! is up without a verdict (inconclusive: pause or roll back, as the playbook says). Every
//! sample is journaled in one line.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use jsonpath_rust::JsonPath;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;

/// How long a check polls when its step has no `timeout`.
const WINDOW: Duration = Duration::from_secs(30);

/// The fields of the kind; `timeout` (how long to poll) is the step's own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<String>>,
    expect_status: Option<Statuses>,
    #[serde(rename = "assert")]
    assertions: Option<Vec<Spanned<RawAssertion>>>,
    interval: Option<Spanned<String>>,
    successes: Option<u32>,
    failure_limit: Option<u32>,
    /// An answer slower than this many milliseconds is a wrong one.
    max_ms: Option<u64>,
    on_inconclusive: Option<Spanned<String>>,
}

/// `expect_status = 200` or `expect_status = [200, 404]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Statuses {
    One(u16),
    Many(Vec<u16>),
}

impl Statuses {
    pub(crate) fn list(&self) -> Vec<u16> {
        match self {
            Statuses::One(s) => vec![*s],
            Statuses::Many(list) => list.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssertion {
    path: String,
    equals: Option<toml::Value>,
    not_equals: Option<toml::Value>,
    exists: Option<bool>,
    gt: Option<f64>,
    lt: Option<f64>,
    matches: Option<String>,
    #[serde(rename = "in")]
    one_of: Option<Vec<toml::Value>>,
}

#[derive(Debug)]
enum Test {
    Equals(Value),
    NotEquals(Value),
    Exists(bool),
    Gt(f64),
    Lt(f64),
    Matches(regex::Regex),
    In(Vec<Value>),
}

#[derive(Debug)]
struct Assertion {
    path: String,
    test: Test,
}

#[derive(Debug)]
pub(crate) struct HttpCheck {
    request: Request,
    expect_status: Vec<u16>,
    assertions: Vec<Assertion>,
    interval: Duration,
    successes: u32,
    failure_limit: Option<u32>,
    max_ms: Option<u64>,
    pause_if_inconclusive: bool,
}

/// What to send: the fields `http_check` and the load probe share.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) url: String,
    pub(crate) method: reqwest::Method,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Option<String>,
}

impl Request {
    /// Renders and checks the request fields, reporting every problem.
    pub(crate) fn validate(
        url: &Spanned<String>,
        method: Option<&Spanned<String>>,
        headers: Option<&BTreeMap<String, Spanned<String>>>,
        body: Option<&Spanned<String>>,
        cx: &mut Checker<'_>,
    ) -> Option<Self> {
        let rendered = cx.text(url);
        let rendered = match rendered.map(|u| (reqwest::Url::parse(&u), u)) {
            Some((Ok(_), u)) => Some(u),
            Some((Err(e), u)) => {
                cx.problem(url.span(), format!("`{u}` is not a URL: {e}"), "this URL");
                None
            }
            None => None,
        };
        let method = match method {
            Some(m) => match reqwest::Method::from_bytes(m.get_ref().to_uppercase().as_bytes()) {
                Ok(method) => Some(method),
                Err(_) => {
                    cx.problem(
                        m.span(),
                        format!("`{}` is not an HTTP method", m.get_ref()),
                        "this method",
                    );
                    None
                }
            },
            None => Some(reqwest::Method::GET),
        };
        let headers: Option<BTreeMap<String, String>> = headers
            .into_iter()
            .flatten()
            .map(|(k, v)| Some((k.clone(), cx.text(v)?)))
            .collect();
        let body = body.map(|b| cx.text(b));
        Some(Request {
            url: rendered?,
            method: method?,
            headers: headers?,
            body: body.map(|b| b.ok_or(())).transpose().ok()?,
        })
    }
}

/// What one sample showed.
enum Sample {
    Pass,
    /// An answer that is wrong, and why.
    Wrong(String),
    /// No answer.
    Silent(String),
}

impl HttpCheck {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let request = Request::validate(
            &raw.url,
            raw.method.as_ref(),
            raw.headers.as_ref(),
            raw.body.as_ref(),
            cx,
        );
        let assertions: Vec<Option<Assertion>> = raw
            .assertions
            .iter()
            .flatten()
            .map(|a| assertion(a, cx))
            .collect();
        let duration = |d: &Option<Spanned<String>>, default, cx: &mut Checker<'_>| match d {
            Some(d) => cx.duration(d),
            None => Some(Duration::from_millis(default)),
        };
        let interval = duration(&raw.interval, 1000, cx);
        let pause_if_inconclusive = cx.pause_or_rollback(&raw.on_inconclusive, false);
        Some(HttpCheck {
            request: request?,
            expect_status: raw.expect_status.as_ref().map_or(vec![200], Statuses::list),
            assertions: assertions.into_iter().collect::<Option<_>>()?,
            interval: interval?,
            successes: raw.successes.unwrap_or(1).max(1),
            failure_limit: raw.failure_limit,
            max_ms: raw.max_ms,
            pause_if_inconclusive: pause_if_inconclusive?,
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        let mut checks = vec![format!(
            "status {}",
            self.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        )];
        checks.extend(self.assertions.iter().map(Assertion::describe));
        checks.extend(self.max_ms.map(|max| format!("an answer within {max} ms")));
        let limit = self
            .failure_limit
            .map(|n| format!(", fail after {n} wrong answers"))
            .unwrap_or_default();
        Intent::new(
            format!(
                "{} {} every {} until {} consecutive pass(es) of: {}; give up at the step's timeout (default {}){limit} ({} if no verdict)",
                self.request.method,
                self.request.url,
                humantime::format_duration(self.interval),
                self.successes,
                checks.join(", "),
                humantime::format_duration(WINDOW),
                if self.pause_if_inconclusive {
                    "pause"
                } else {
                    "roll back"
                }
            ),
            false,
        )
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let client = cx.lent.http()?;
        let window = cx.timeout.unwrap_or(WINDOW);
        let started = Instant::now();
        let deadline = started + window;
        let (mut passes, mut wrong, mut samples) = (0u32, 0u32, 0u32);
        let mut last_wrong: Option<String> = None;
        let mut last = String::new();
        loop {
            samples += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let sent = Instant::now();
            let sample = self.sample(&client, remaining).await;
            let ms = sent.elapsed().as_millis();
            let sample = match (sample, self.max_ms) {
                (Sample::Pass, Some(max)) if ms > u128::from(max) => {
                    Sample::Wrong(format!("answered in {ms} ms, over the {max} ms limit"))
                }
                (sample, _) => sample,
            };
            match &sample {
                Sample::Pass => {
                    passes += 1;
                    cx.record(format!("#{samples} pass ({ms} ms)"));
                }
                Sample::Wrong(why) => {
                    passes = 0;
                    wrong += 1;
                    cx.record(format!("#{samples} wrong ({ms} ms): {why}"));
                    last_wrong = Some(why.clone());
                    last = why.clone();
                }
                Sample::Silent(why) => {
                    passes = 0;
                    cx.record(format!("#{samples} no answer ({ms} ms): {why}"));
                    last = why.clone();
                }
            }
            if passes >= self.successes {
                return Ok(format!(
                    "passed: {passes} consecutive pass(es) after {samples} sample(s) in {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
            }
            if let (Some(limit), Some(why)) = (self.failure_limit, &last_wrong)
                && wrong >= limit
            {
                return Err(format!(
                    "failed: {wrong} wrong answer(s) out of {samples} sample(s); the last: {why}"
                )
                .into());
            }
            if Instant::now() + self.interval >= deadline {
                let verdict = format!(
                    "inconclusive: no verdict within {} ({samples} sample(s), {wrong} wrong); the last: {last}",
                    humantime::format_duration(window)
                );
                return Err(StepError {
                    message: verdict,
                    partial: None,
                    pause: self.pause_if_inconclusive,
                });
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn sample(&self, client: &reqwest::Client, remaining: Duration) -> Sample {
        let mut request = client
            .request(self.request.method.clone(), &self.request.url)
            .timeout(remaining.max(Duration::from_millis(1)));
        for (k, v) in &self.request.headers {
            request = request.header(k, v);
        }
        if let Some(body) = &self.request.body {
            request = request.body(body.clone());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Sample::Silent(crate::error::chain(&e)),
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Sample::Silent(crate::error::chain(&e)),
        };
        let shown: String = text.chars().take(200).collect();
        let answer = format!("{status} {}", shown.trim());
        if !self.expect_status.contains(&status) {
            return Sample::Wrong(format!(
                "status {status} is not the expected one; response: {answer}"
            ));
        }
        if self.assertions.is_empty() {
            return Sample::Pass;
        }
        let json: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                return Sample::Wrong(format!(
                    "the response is not JSON ({e}); response: {answer}"
                ));
            }
        };
        for a in &self.assertions {
            if let Err(why) = a.check(&json) {
                return Sample::Wrong(format!(
                    "assertion `{}` does not hold: {why}; response: {answer}",
                    a.describe()
                ));
            }
        }
        Sample::Pass
    }
}

fn assertion(raw: &Spanned<RawAssertion>, cx: &mut Checker<'_>) -> Option<Assertion> {
    let a = raw.get_ref();
    // A string to compare with may use templates (`equals = "{{vars.canary_name}}"`).
    let mut json = |v: &toml::Value| match v {
        toml::Value::String(s) => cx
            .text(&Spanned::new(raw.span(), s.clone()))
            .map(serde_json::Value::String),
        v => Some(serde_json::to_value(v).expect("a TOML value is JSON")),
    };
    let mut tests = Vec::new();
    if let Some(v) = &a.equals {
        tests.push(Test::Equals(json(v)?));
    }
    if let Some(v) = &a.not_equals {
        tests.push(Test::NotEquals(json(v)?));
    }
    if let Some(v) = a.exists {
        tests.push(Test::Exists(v));
    }
    if let Some(v) = a.gt {
        tests.push(Test::Gt(v));
    }
    if let Some(v) = a.lt {
        tests.push(Test::Lt(v));
    }
    if let Some(v) = &a.one_of {
        tests.push(Test::In(v.iter().map(&mut json).collect::<Option<_>>()?));
    }
    if let Some(pattern) = &a.matches {
        match regex::Regex::new(pattern) {
            Ok(re) => tests.push(Test::Matches(re)),
            Err(e) => {
                cx.problem(
                    raw.span(),
                    format!("`{pattern}` is not a regular expression: {e}"),
                    "this assertion",
                );
                return None;
            }
        }
    }
    if let Err(e) = Value::Null.query(&a.path) {
        cx.problem(
            raw.span(),
            format!("`{}` is not a JSONPath: {e}", a.path),
            "this assertion",
        );
        return None;
    }
    if tests.len() != 1 {
        cx.problem(
            raw.span(),
            "an assertion needs exactly one of equals, not_equals, exists, gt, lt, matches, in",
            "this assertion",
        );
        return None;
    }
    Some(Assertion {
        path: a.path.clone(),
        test: tests.remove(0),
    })
}

impl Assertion {
    fn describe(&self) -> String {
        let p = &self.path;
        match &self.test {
            Test::Equals(v) => format!("{p} equals {v}"),
            Test::NotEquals(v) => format!("{p} not_equals {v}"),
            Test::Exists(true) => format!("{p} exists"),
            Test::Exists(false) => format!("{p} does not exist"),
            Test::Gt(n) => format!("{p} > {n}"),
            Test::Lt(n) => format!("{p} < {n}"),
            Test::Matches(re) => format!("{p} matches /{re}/"),
            Test::In(list) => format!("{p} in {}", Value::Array(list.clone())),
        }
    }

    /// Whether the JSON satisfies the assertion; no value at the path fails it (but `exists`).
    fn check(&self, json: &Value) -> Result<(), String> {
        let found = json.query(&self.path).map_err(|e| e.to_string())?;
        if let Test::Exists(want) = self.test {
            return match (found.is_empty(), want) {
                (false, true) | (true, false) => Ok(()),
                (true, true) => Err("no value at this path".into()),
                (false, false) => Err(format!("found {}", found[0])),
            };
        }
        let Some(value) = found.first() else {
            return Err("no value at this path".into());
        };
        let number = || {
            value
                .as_f64()
                .ok_or_else(|| format!("got {value}, not a number"))
        };
        let holds = match &self.test {
            Test::Equals(want) => *value == want,
            Test::NotEquals(want) => *value != want,
            Test::Gt(n) => number()? > *n,
            Test::Lt(n) => number()? < *n,
            Test::Matches(re) => re.is_match(
                &value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string),
            ),
            Test::In(list) => list.contains(value),
            Test::Exists(_) => unreachable!("handled above"),
        };
        if holds {
            Ok(())
        } else {
            Err(format!("got {value}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::context::testing::{Lender, records};
    use crate::steps::Action;

    /// An HTTP server on 127.0.0.1 in the test's runtime (so its clock is the test's):
    /// `answer(t)` is what a request arriving `t` after the start gets, after how long.
    /// Returns the URL and the count of requests answered.
    async fn serve(
        answer: impl Fn(Duration) -> (Duration, u16, &'static str) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let (answer, count, started) = (Arc::new(answer), Arc::clone(&served), Instant::now());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (answer, count) = (Arc::clone(&answer), Arc::clone(&count));
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    let mut line = String::new();
                    while socket.read_line(&mut line).await.unwrap() > 2 {
                        line.clear();
                    }
                    let (delay, status, body) = answer(started.elapsed());
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let socket = socket.get_mut();
                    socket.write_all(head.as_bytes()).await.unwrap();
                    socket.write_all(body.as_bytes()).await.unwrap();
                    count.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (url, served)
    }

    /// Runs a check of `url` with `fields` within `timeout`: its outcome and its samples.
    async fn check(
        url: &str,
        fields: &str,
        timeout: Duration,
    ) -> (Result<String, StepError>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let step = match crate::steps::only_step(
            dir.path(),
            "http_check",
            &format!("url = \"{url}\"\n{fields}"),
        ) {
            Action::HttpCheck(c) => c,
            other => panic!("{}", other.kind().name()),
        };
        let lender = Lender::default();
        let (mut cx, notes) = lender.cx(dir.path());
        cx.timeout = Some(timeout);
        let outcome = step.apply(&cx).await;
        drop(cx);
        (outcome, records(notes).await)
    }

    const HEALTHY: &str = r#"{"status":"healthy"}"#;

    #[tokio::test(start_paused = true)]
    async fn a_check_waits_on_tokio_time_for_a_service_that_comes_up_late() {
        let (url, served) = serve(|t| match t < Duration::from_secs(90) {
            true => (Duration::ZERO, 503, r#"{"status":"starting"}"#),
            false => (Duration::ZERO, 200, HEALTHY),
        })
        .await;
        let wall = std::time::Instant::now();
        let fields = "interval = \"5s\"\nsuccesses = 3\nassert = [{ path = \"$.status\", equals = \"healthy\" }]";
        let (outcome, samples) = check(&url, fields, Duration::from_secs(300)).await;
        // Samples at 0 s, 5 s, ... 85 s answered 503; 90 s, 95 s and 100 s passed.
        assert_eq!(
            outcome.unwrap(),
            "passed: 3 consecutive pass(es) after 21 sample(s) in 100.0s"
        );
        assert_eq!(served.load(Ordering::SeqCst), 21);
        assert!(
            samples[17].starts_with("#18 wrong (0 ms): status 503"),
            "{samples:#?}"
        );
        assert_eq!(samples[18], "#19 pass (0 ms)");
        assert!(
            wall.elapsed() < Duration::from_secs(30),
            "{:?}",
            wall.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_verdict_within_the_window_is_inconclusive_at_its_end() {
        let (url, _) = serve(|_| (Duration::ZERO, 503, "")).await;
        let (outcome, samples) = check(&url, "interval = \"5s\"", Duration::from_secs(600)).await;
        let error = outcome.unwrap_err();
        // The last sample is the one after which another would come too late: at 595 s.
        assert!(
            error.message.starts_with(
                "inconclusive: no verdict within 10m (120 sample(s), 120 wrong); the last: status 503"
            ),
            "{}",
            error.message
        );
        assert_eq!(samples.len(), 120);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_is_a_wrong_one_and_trips_the_gate() {
        let fields = "interval = \"1s\"\nmax_ms = 200\nfailure_limit = 3";
        let (slow, _) = serve(|_| (Duration::from_millis(300), 200, HEALTHY)).await;
        let (outcome, _) = check(&slow, fields, Duration::from_secs(60)).await;
        assert_eq!(
            outcome.unwrap_err().message,
            "failed: 3 wrong answer(s) out of 3 sample(s); the last: answered in 300 ms, over the 200 ms limit"
        );
        let (quick, _) = serve(|_| (Duration::from_millis(160), 200, HEALTHY)).await;
        let (outcome, _) = check(&quick, fields, Duration::from_secs(60)).await;
        assert_eq!(
            outcome.unwrap(),
            "passed: 1 consecutive pass(es) after 1 sample(s) in 0.2s"
        );
    }

    #[test]
    fn assertions_read_json_and_a_missing_path_fails() {
        let json: Value = serde_json::json!({"status": "healthy", "latency": 12, "mode": "hybrid"});
        let a = |path: &str, test| Assertion {
            path: path.into(),
            test,
        };
        assert!(
            a("$.status", Test::Equals("healthy".into()))
                .check(&json)
                .is_ok()
        );
        assert_eq!(
            a("$.status", Test::NotEquals("healthy".into()))
                .check(&json)
                .unwrap_err(),
            "got \"healthy\""
        );
        assert!(a("$.latency", Test::Lt(200.0)).check(&json).is_ok());
        assert!(a("$.latency", Test::Gt(20.0)).check(&json).is_err());
        assert!(
            a(
                "$.mode",
                Test::In(vec!["hybrid".into(), "postgres_primary".into()])
            )
            .check(&json)
            .is_ok()
        );
        assert!(
            a("$.mode", Test::Matches(regex::Regex::new("^hy").unwrap()))
                .check(&json)
                .is_ok()
        );
        assert_eq!(
            a("$.missing", Test::Equals(1.into()))
                .check(&json)
                .unwrap_err(),
            "no value at this path"
        );
        assert!(a("$.missing", Test::Exists(false)).check(&json).is_ok());
        assert!(
            a("$.status", Test::Gt(1.0))
                .check(&json)
                .unwrap_err()
                .contains("not a number")
        );
    }
}
