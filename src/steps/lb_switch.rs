//! `lb_switch`: point a load balancer at another upstream without dropping a request. The
//! upstream file it reads is written, its container is told to reload (a signal: nginx
//! reloads gracefully on SIGHUP), and the step waits while the old upstream drains. A load
//! balancer that is not running yet reads the file when it starts (the first deployment).
//! Rollback writes the previous file back and signals again.

use std::time::Duration;

use bollard::query_parameters::KillContainerOptions;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::files::{self, Snapshot};
use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::context::Lent;
use crate::docker::{self, describe};
use crate::steps::Observed;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    /// The upstream file the load balancer includes, relative to the workdir.
    file: Spanned<String>,
    /// Its new content (handlebars allowed).
    content: Spanned<String>,
    /// The load balancer's container.
    container: Spanned<String>,
    /// The signal that makes it reload (default HUP).
    signal: Option<Spanned<String>>,
    /// How long the old upstream keeps its in-flight requests (default 5s).
    drain: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct LbSwitch {
    pub(crate) file: String,
    content: String,
    container: String,
    signal: String,
    drain: Duration,
}

/// The mode of an upstream file the step creates.
const NEW_MODE: u32 = 0o644;

/// What rollback needs: the file as it was, whom to tell, and how long to let drain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Switched {
    pub(crate) file: Box<Snapshot>,
    container: String,
    signal: String,
    drain_ms: u64,
}

impl LbSwitch {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let file = cx.file_path(&raw.file);
        let content = cx.text(&raw.content);
        let container = cx.text(&raw.container);
        let signal = match &raw.signal {
            Some(s) => cx.text(s)?.trim_start_matches("SIG").to_ascii_uppercase(),
            None => "HUP".into(),
        };
        let drain = match &raw.drain {
            Some(d) => cx.duration(d)?,
            None => Duration::from_secs(5),
        };
        Some(LbSwitch {
            file: file?,
            content: content?,
            container: container?,
            signal,
            drain,
        })
    }

    pub(crate) fn plan(&self, observed: &Observed) -> Intent {
        Intent::writing(
            format!(
                "write `{}`, send SIG{} to `{}` so that it reloads, then let the old upstream drain for {}",
                self.file,
                self.signal,
                self.container,
                humantime::format_duration(self.drain)
            ),
            observed,
            &self.file,
            &self.content,
        )
    }

    /// Saves the current upstream file before any change.
    pub(crate) fn prepare(&self, cx: &StepCx<'_>) -> Result<Switched, StepError> {
        Ok(Switched {
            file: Box::new(
                files::snapshot(
                    &cx.resolve(&self.file),
                    &cx.backup_dir,
                    0,
                    cx.run_id,
                    |_| {
                        Some(files::Write {
                            bytes: self.content.clone().into_bytes(),
                            mode: None,
                            new_mode: NEW_MODE,
                        })
                    },
                )
                .map_err(StepError::io(format!("could not save `{}`", self.file)))?,
            ),
            container: self.container.clone(),
            signal: self.signal.clone(),
            drain_ms: self.drain.as_millis() as u64,
        })
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let wrote = crate::fs::replace(
            &cx.resolve(&self.file),
            self.content.as_bytes(),
            None,
            NEW_MODE,
        )
        .map_err(StepError::io(format!("could not write `{}`", self.file)))?;
        if !wrote {
            return Ok(format!("`{}` already points there", self.file));
        }
        if !reload(cx.lent, &self.container, &self.signal).await? {
            return Ok(format!(
                "wrote `{}`; `{}` is not running and reads it when it starts",
                self.file, self.container
            ));
        }
        cx.say(format!(
            "`{}` reloaded; draining the old upstream for {}",
            self.container,
            humantime::format_duration(self.drain)
        ));
        tokio::time::sleep(self.drain).await;
        Ok(format!(
            "`{}` now serves from the upstream in `{}` (old one drained {})",
            self.container,
            self.file,
            humantime::format_duration(self.drain)
        ))
    }
}

impl Switched {
    pub(crate) async fn restore(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let kept = files::restore(&self.file).map_err(StepError::io(format!(
            "could not restore `{}`",
            self.file.path.display()
        )))?;
        let reloaded = reload(cx.lent, &self.container, &self.signal).await?;
        if reloaded {
            // Let the upstream switched away from finish what the reload left in flight.
            tokio::time::sleep(Duration::from_millis(self.drain_ms)).await;
        }
        Ok(format!(
            "restored `{}`{}{}",
            self.file.path.display(),
            if reloaded {
                format!(" and reloaded `{}`", self.container)
            } else {
                format!(" (`{}` is not running)", self.container)
            },
            kept.map(|at| files::kept_note(&self.file, &at))
                .unwrap_or_default()
        ))
    }
}

/// Sends the reload signal to a running container; false if it does not run.
async fn reload(lent: &Lent, container: &str, signal: &str) -> Result<bool, String> {
    let docker = lent.docker().await?;
    let running = match docker
        .inspect_container(
            container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
        Err(e) if docker::is_not_found(&e) => false,
        Err(e) => return Err(format!("load balancer `{container}`: {}", describe(&e))),
    };
    if !running {
        return Ok(false);
    }
    docker
        .kill_container(
            container,
            Some(KillContainerOptions {
                signal: signal.to_string(),
            }),
        )
        .await
        .map_err(|e| format!("cannot send SIG{signal} to `{container}`: {}", describe(&e)))?;
    Ok(true)
}
