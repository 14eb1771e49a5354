//! The consumers of the engine's events, as the CLI wires them: each event is redacted of
//! secrets, then journaled (all but progress) and reported; when the run ends, the playbook's
//! `[notify]` webhook gets the alert it asks for.

use std::path::Path;

use crate::context::Lent;
use crate::engine::Sink;
use crate::error::Result;
use crate::event::{Event, RunStatus, StoredUndo};
use crate::journal::{self, Journal};
use crate::notify::{Alert, Level, Notify, When};
use crate::playbook::Playbook;
use crate::report::Reporter;
use crate::secrets::Secrets;
use crate::steps::Undo;

/// Sends each event, secrets redacted, to the journal (all but progress) and the reporter.
pub(crate) struct Emitter<'r> {
    journal: Journal,
    reporter: &'r mut Reporter,
    secrets: Secrets,
    /// The playbook whose `[notify]` section says which run outcomes are alerted.
    alerts: Option<&'r Playbook>,
}

impl<'r> Emitter<'r> {
    pub(crate) fn new(journal: Journal, reporter: &'r mut Reporter, secrets: Secrets) -> Self {
        Emitter {
            journal,
            reporter,
            secrets,
            alerts: None,
        }
    }

    /// Sends the run's outcome to `playbook`'s `[notify]` webhook when it asks for it.
    pub(crate) fn alerting(self, playbook: &'r Playbook) -> Self {
        Emitter {
            alerts: Some(playbook),
            ..self
        }
    }

    /// Adds values to redact (secrets found in sealed undo records).
    pub(crate) fn also_redact(&mut self, values: &[String]) {
        for v in values {
            self.secrets
                .insert(format!("sealed-{}", self.secrets.values().len()), v.clone());
        }
    }

    fn redacted(&self, mut event: Event) -> Event {
        self.secrets.redact_event(&mut event);
        event
    }
}

impl Sink for Emitter<'_> {
    fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    fn emit(&mut self, event: Event) -> Result<()> {
        let event = self.redacted(event);
        if let Event::StepProgress { .. } = event {
            self.reporter.progress(&event);
            return Ok(());
        }
        let record = self.journal.append(&event)?;
        self.reporter.record(&record);
        Ok(())
    }

    /// Sealed in a private file if the record holds a secret, else inline.
    fn store(&self, run_dir: &Path, step: &str, undo: &Undo) -> Result<StoredUndo> {
        let text = serde_json::to_string(undo).expect("an undo record serializes");
        if !self.secrets.contains_secret(&text) {
            return Ok(StoredUndo::Inline(inline(undo)));
        }
        let redact = self.secrets.held_in(&text);
        let sealed = journal::seal(
            run_dir,
            step,
            &journal::Sealed {
                undo: undo.clone(),
                redact,
            },
        )?;
        Ok(StoredUndo::Sealed { sealed })
    }

    /// A webhook that cannot be reached is a warning, never a failure.
    async fn finishing(
        &mut self,
        status: RunStatus,
        failed: Option<&str>,
        lent: &Lent,
    ) -> Result<()> {
        let Some(playbook) = self.alerts else {
            return Ok(());
        };
        let Some((notify, webhook)) = playbook
            .notify
            .as_ref()
            .and_then(|n| Some((n, n.webhook.as_deref()?)))
        else {
            return Ok(());
        };
        let name = format!("`{}` ({})", playbook.name, playbook.phase);
        let Some(alert) = on_finish(notify, &name, status, failed) else {
            return Ok(());
        };
        let mut payload = alert.payload(std::time::SystemTime::now());
        self.secrets.redact_json(&mut payload);
        if let Err(why) = crate::notify::send(lent, webhook, &payload).await {
            self.emit(Event::Warning {
                message: format!("the {} alert: {why}", alert.level.name()),
            })?;
        }
        Ok(())
    }
}

/// An undo record as the journal keeps it inline.
fn inline(undo: &Undo) -> serde_json::Value {
    serde_json::to_value(undo).expect("an undo record serializes")
}

/// The alert a finished run sends by itself, if `on` asks for one.
fn on_finish(notify: &Notify, run: &str, status: RunStatus, failed: Option<&str>) -> Option<Alert> {
    let (wanted, level, what) = match status {
        RunStatus::Succeeded => (notify.on.contains(&When::Success), Level::Info, "succeeded"),
        RunStatus::RolledBack => (
            notify.on.contains(&When::Rollback) || notify.on.contains(&When::Failure),
            Level::Critical,
            "failed and was rolled back",
        ),
        RunStatus::RollbackFailed => (
            notify.on.contains(&When::Rollback) || notify.on.contains(&When::Failure),
            Level::Critical,
            "failed, and its rollback failed too: manual action needed",
        ),
        RunStatus::Paused => (
            notify.on.contains(&When::Failure),
            Level::Warning,
            "failed and is paused",
        ),
    };
    wanted.then(|| Alert {
        level,
        title: format!("{run} {what}"),
        text: failed
            .map(|s| format!("step `{s}` failed; `runner status` shows the journal"))
            .unwrap_or_default(),
        service: notify.service.clone(),
        metric: "run".into(),
        value: format!("{status:?}").to_lowercase(),
        threshold: String::new(),
    })
}
