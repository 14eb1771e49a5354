//! `preflight`: check, before anything changes, that what the run needs is there: environment
//! variables, files, the Docker engine, PostgreSQL (with the given credentials) and Redis (with
//! AUTH). Every check is listed; all failures are reported together.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::context::Lent;
use crate::db::{postgres, redis};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    /// Environment variables that must be set and not empty.
    env: Option<Vec<String>>,
    files: Option<Vec<Spanned<String>>>,
    docker: Option<bool>,
    postgres: Option<Spanned<String>>,
    redis: Option<Spanned<String>>,
    /// How long to retry each service (default 10s).
    within: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct Preflight {
    env: Vec<String>,
    files: Vec<String>,
    docker: bool,
    postgres: Option<postgres::Target>,
    redis: Option<redis::Target>,
    within: Duration,
}

impl Preflight {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let files: Option<Vec<String>> = raw.files.iter().flatten().map(|f| cx.text(f)).collect();
        let postgres = match &raw.postgres {
            Some(f) => Some(cx.url(f, postgres::Target::parse)?.1),
            None => None,
        };
        let redis = match &raw.redis {
            Some(f) => Some(cx.url(f, redis::Target::parse)?.1),
            None => None,
        };
        let within = match &raw.within {
            Some(w) => cx.duration(w)?,
            None => Duration::from_secs(10),
        };
        Some(Preflight {
            env: raw.env.unwrap_or_default(),
            files: files?,
            docker: raw.docker.unwrap_or(false),
            postgres,
            redis,
            within,
        })
    }

    fn checks(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .env
            .iter()
            .map(|v| format!("environment variable {v}"))
            .collect();
        out.extend(self.files.iter().map(|f| format!("file `{f}`")));
        if self.docker {
            out.push("Docker engine".into());
        }
        if let Some(pg) = &self.postgres {
            out.push(format!("PostgreSQL {}", pg.display));
        }
        if let Some(r) = &self.redis {
            out.push(format!("Redis {}", r.display));
        }
        out
    }

    pub(crate) fn plan(&self) -> Intent {
        Intent::new(format!("check {}", self.checks().join(", ")), false)
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let mut results: Vec<(String, Result<String, String>)> = Vec::new();
        for var in &self.env {
            let found = std::env::var(var).ok().filter(|v| !v.is_empty());
            results.push((
                format!("environment variable {var}"),
                found.map(|_| "set".into()).ok_or_else(|| "not set".into()),
            ));
        }
        for file in &self.files {
            let found = cx.resolve(file).exists();
            results.push((
                format!("file `{file}`"),
                if found {
                    Ok("present".into())
                } else {
                    Err("missing".into())
                },
            ));
        }
        if self.docker {
            results.push(("Docker engine".into(), docker(cx.lent).await));
        }
        if let Some(pg) = &self.postgres {
            let answer = async {
                let client = cx.lent.postgres_utf8(pg, self.within).await?;
                let row = client
                    .query_one("SELECT version()", &[])
                    .await
                    .map_err(|e| postgres::describe(&e))?;
                Ok::<_, String>(
                    row.get::<_, String>(0)
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )
            };
            results.push((format!("PostgreSQL {}", pg.display), answer.await));
        }
        if let Some(r) = &self.redis {
            let answer = async {
                let mut conn = cx.lent.redis(r, self.within).await?;
                let pong: String = ::redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(pong)
            };
            results.push((format!("Redis {}", r.display), answer.await));
        }
        let mut report = Vec::new();
        let mut failed = 0;
        for (what, result) in &results {
            let line = match result {
                Ok(detail) => format!("ok    {what}: {detail}"),
                Err(why) => {
                    failed += 1;
                    format!("FAIL  {what}: {why}")
                }
            };
            cx.say(line.clone());
            report.push(line);
        }
        if failed > 0 {
            return Err(StepError::from(format!(
                "{failed} of {} check(s) failed:\n  {}",
                results.len(),
                report.join("\n  ")
            )));
        }
        Ok(format!(
            "{} check(s) passed: {}",
            results.len(),
            self.checks().join(", ")
        ))
    }
}

async fn docker(lent: &Lent) -> Result<String, String> {
    let docker = lent.docker().await?;
    let version = docker
        .version()
        .await
        .map_err(|e| crate::docker::describe(&e))?;
    Ok(format!("engine {}", version.version.unwrap_or_default()))
}
