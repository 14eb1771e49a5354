//! `notify`: post an alert to the webhook (the step's own, or the playbook's `[notify]`). An
//! alert that cannot be delivered is a warning in the journal; the step still succeeds.

use std::time::SystemTime;

use serde::Deserialize;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::notify::{self, Alert, Level};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    title: Spanned<String>,
    text: Option<Spanned<String>>,
    level: Option<Level>,
    webhook: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
    threshold: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct Notify {
    webhook: Option<String>,
    /// Neither the step nor the playbook has a webhook (an optional secret is not set).
    off: bool,
    alert: Alert,
}

impl Notify {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let mut text = |f: &Option<Spanned<String>>| match f {
            Some(f) => cx.text(f),
            None => Some(String::new()),
        };
        let (title, body, service, metric, value, threshold) = (
            text(&Some(raw.title.clone())),
            text(&raw.text),
            text(&raw.service),
            text(&raw.metric),
            text(&raw.value),
            text(&raw.threshold),
        );
        let webhook = match &raw.webhook {
            Some(w) => notify::webhook(w, cx)?,
            None if cx.notify_service().is_some() => None,
            None => {
                cx.problem(
                    raw.title.span(),
                    "this alert has nowhere to go",
                    "give the step a `webhook`, or the playbook a [notify] section",
                );
                return None;
            }
        };
        let service = service?;
        Some(Notify {
            off: webhook.is_none() && !cx.alerts_on(),
            webhook,
            alert: Alert {
                level: raw.level.unwrap_or(Level::Info),
                title: title?,
                text: body?,
                service: if service.is_empty() {
                    cx.notify_service().unwrap_or("deployment").to_string()
                } else {
                    service
                },
                metric: metric?,
                value: value?,
                threshold: threshold?,
            },
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        if self.off {
            return Intent::new(
                format!(
                    "not post the alert `{}`: no webhook is set",
                    self.alert.title
                ),
                false,
            );
        }
        Intent::new(
            format!(
                "post a {} alert `{}` to the {} webhook",
                self.alert.level.name(),
                self.alert.title,
                if self.webhook.is_some() {
                    "step's"
                } else {
                    "playbook's"
                }
            ),
            false,
        )
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let Some(webhook) = self.webhook.as_deref().or(cx.webhook) else {
            return Ok(format!(
                "`{}` not sent: no webhook is set",
                self.alert.title
            ));
        };
        match notify::send(cx.lent, webhook, &self.alert.payload(SystemTime::now())).await {
            Ok(()) => Ok(format!(
                "sent `{}` ({})",
                self.alert.title,
                self.alert.level.name()
            )),
            Err(why) => {
                cx.warn(why.clone());
                Ok(format!(
                    "`{}` not delivered (not fatal): {why}",
                    self.alert.title
                ))
            }
        }
    }
}
