//! `pg_wait`: wait until PostgreSQL accepts a query, retrying with backoff for a while.

use std::time::Duration;

use tokio::time::Instant;

use serde::Deserialize;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::db::postgres::{Target, describe};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
    /// How long to keep trying (default 60s).
    within: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct PgWait {
    target: Target,
    within: Duration,
}

impl PgWait {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let within = match &raw.within {
            Some(w) => cx.duration(w),
            None => Some(Duration::from_secs(60)),
        };
        let (_, target) = cx.url(&raw.url, Target::parse)?;
        Some(PgWait {
            target,
            within: within?,
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        Intent::new(
            format!(
                "wait up to {} for PostgreSQL at {} to answer",
                humantime::format_duration(self.within),
                self.target.display
            ),
            false,
        )
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let started = Instant::now();
        cx.say(format!("waiting for {}", self.target.display));
        let client = cx.lent.postgres(&self.target, self.within).await?;
        client.simple_query("SELECT 1").await.map_err(|e| {
            StepError::from(format!(
                "PostgreSQL at {} does not answer: {}",
                self.target.display,
                describe(&e)
            ))
        })?;
        Ok(format!(
            "PostgreSQL at {} answered after {:.1}s",
            self.target.display,
            started.elapsed().as_secs_f64()
        ))
    }
}
