//! Alerts to a webhook: a Slack-compatible JSON payload (title, text, colour by level, fields
//! service, metric, value, threshold, time), retried with backoff. A webhook that cannot be
//! reached is reported, never a reason to fail a deployment.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use crate::check::Checker;
use crate::context::Lent;

/// Attempts per alert, waiting 250 ms, then twice as long each time.
const ATTEMPTS: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The playbook's `[notify]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSection {
    webhook: Spanned<String>,
    on: Option<Vec<Spanned<String>>>,
    service: Option<Spanned<String>>,
}

/// Where alerts go, and on which run outcomes one is sent by itself.
#[derive(Debug)]
pub(crate) struct Notify {
    /// `None` when the webhook is empty (an optional secret that is not set): no delivery.
    pub(crate) webhook: Option<String>,
    pub(crate) on: BTreeSet<When>,
    pub(crate) service: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum When {
    Failure,
    Rollback,
    Success,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Level {
    Critical,
    Warning,
    Info,
}

impl Level {
    fn colour(self) -> &'static str {
        match self {
            Level::Critical => "#ff0000",
            Level::Warning => "#ffaa00",
            Level::Info => "#0099ff",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Critical => "critical",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

/// One alert.
#[derive(Clone, Debug)]
pub(crate) struct Alert {
    pub(crate) level: Level,
    pub(crate) title: String,
    pub(crate) text: String,
    pub(crate) service: String,
    pub(crate) metric: String,
    pub(crate) value: String,
    pub(crate) threshold: String,
}

impl Notify {
    pub(crate) fn validate(raw: RawSection, cx: &mut Checker<'_>) -> Option<Self> {
        let webhook = webhook(&raw.webhook, cx)?;
        let mut on = BTreeSet::new();
        for word in raw.on.iter().flatten() {
            match word.get_ref().as_str() {
                "failure" => on.insert(When::Failure),
                "rollback" => on.insert(When::Rollback),
                "success" => on.insert(When::Success),
                other => {
                    cx.problem(
                        word.span(),
                        format!("`{other}` is not failure, rollback or success"),
                        "this outcome",
                    );
                    return None;
                }
            };
        }
        if raw.on.is_none() {
            on.extend([When::Failure, When::Rollback]);
        }
        let service = match &raw.service {
            Some(s) => cx.text(s)?,
            None => "deployment".into(),
        };
        Some(Notify {
            webhook,
            on,
            service,
        })
    }
}

/// A webhook field: a URL, or empty for none (its optional secret is not set).
pub(crate) fn webhook(field: &Spanned<String>, cx: &mut Checker<'_>) -> Option<Option<String>> {
    let webhook = cx.text(field)?;
    if webhook.is_empty() {
        return Some(None);
    }
    if let Err(e) = reqwest::Url::parse(&webhook) {
        cx.problem(
            field.span(),
            format!("the webhook is not a URL: {e}"),
            "this webhook",
        );
        return None;
    }
    Some(Some(webhook))
}

impl Notify {
    /// Said once by the commands that read the playbook when no alert can be delivered.
    pub(crate) const OFF: &str = "note: alerts are off: the [notify] webhook is empty (is its secret set?); runner sends none";
}

impl Alert {
    /// The Slack-compatible payload.
    pub(crate) fn payload(&self, now: SystemTime) -> Value {
        let field = |title: &str, value: &str, short: bool| json!({"title": title, "value": value, "short": short});
        json!({
            "text": format!("[{}] {}", self.level.name().to_uppercase(), self.title),
            "attachments": [{
                "color": self.level.colour(),
                "title": self.title,
                "text": self.text,
                "fields": [
                    field("service", &self.service, true),
                    field("metric", &self.metric, true),
                    field("value", &self.value, true),
                    field("threshold", &self.threshold, true),
                    field("time", &humantime::format_rfc3339_seconds(now).to_string(), false),
                ],
                "ts": now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            }]
        })
    }
}

/// Posts `payload`, retrying with backoff; the error says why the last attempt failed.
pub(crate) async fn send(lent: &Lent, webhook: &str, payload: &Value) -> Result<(), String> {
    let client = lent.http()?;
    let mut wait = FIRST_WAIT;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match client
            .post(webhook)
            .json(payload)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("the webhook answered {}", r.status()),
            Err(e) => last = crate::error::chain(&e.without_url()),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(format!(
        "the alert was not delivered after {ATTEMPTS} attempts: {last}"
    ))
}
