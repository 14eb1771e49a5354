//! The step kinds: one module each, one enum to dispatch. Every kind has a pure `plan`
//! (what it will do, given what was observed) and an async `apply`; the file-writing kinds
//! `prepare` a snapshot first, which their default rollback restores; the others return what
//! their rollback needs when they are done.

pub(crate) mod backup;
pub(crate) mod compose;
pub(crate) mod docker_build;
pub(crate) mod docker_prune;
pub(crate) mod env;
pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod http_check;
mod kind;
pub(crate) mod lb_switch;
pub(crate) mod monitor;
pub(crate) mod notify;
mod observed;
pub(crate) mod pg_backup;
pub(crate) mod pg_wait;
pub(crate) mod preflight;
pub(crate) mod redis_backup;
pub(crate) mod sql;
mod step;
pub(crate) mod template;
pub(crate) mod verify;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::context::StepCx;
pub(crate) use kind::Kind;
pub(crate) use observed::Observed;
pub(crate) use step::{Rollback, Step};

/// What a step does, with its kind's fields.
#[derive(Debug)]
pub(crate) enum Action {
    Backup(backup::Backup),
    Template(template::Template),
    Env(env::Env),
    Exec(exec::Exec),
    Sql(sql::Sql),
    PgWait(pg_wait::PgWait),
    PgBackup(pg_backup::PgBackup),
    RedisBackup(redis_backup::RedisBackup),
    Preflight(preflight::Preflight),
    DockerBuild(docker_build::DockerBuild),
    ComposeUp(compose::Compose),
    ComposeDown(compose::Compose),
    LbSwitch(lb_switch::LbSwitch),
    DockerPrune(docker_prune::DockerPrune),
    HttpCheck(http_check::HttpCheck),
    Notify(notify::Notify),
    Monitor(monitor::Monitor),
    Verify(Box<verify::Verify>),
    Migrate(Box<crate::migrate::Migrate>),
}

/// What the plan says a step will do.
pub(crate) struct Intent {
    pub(crate) action: String,
    pub(crate) changes: bool,
    pub(crate) diff: Option<String>,
    /// Why the step must not run as things are (exit 3 at plan time).
    pub(crate) refusal: Option<String>,
    /// The file the step leaves behind, so later steps are planned against it.
    pub(crate) writes: Option<(String, Vec<u8>)>,
    /// A compose step's services as runner will create them (`plan --show-compose`).
    pub(crate) compose: Option<String>,
}

impl Intent {
    pub(crate) fn new(action: String, changes: bool) -> Self {
        Intent {
            action,
            changes,
            diff: None,
            refusal: None,
            writes: None,
            compose: None,
        }
    }

    /// A step that leaves `content` in `path`: it changes something, with a diff, unless the
    /// file already holds it.
    pub(crate) fn writing(action: String, observed: &Observed, path: &str, content: &str) -> Self {
        let current = observed.current(path);
        let changes = current != Some(content.as_bytes());
        Intent {
            action,
            changes,
            diff: changes.then(|| crate::fingerprint::diff(path, current, content.as_bytes())),
            refusal: None,
            writes: Some((path.to_string(), content.as_bytes().to_vec())),
            compose: None,
        }
    }
}

/// What the plan and the engine need to know of a step besides its verbs.
#[derive(Default)]
pub(crate) struct Facts<'a> {
    /// Files whose current content the plan needs (for diffs and the staleness check).
    pub(crate) observes: Vec<&'a str>,
    /// Files the step's content was loaded from (rendered or run as loaded): the plan expects
    /// them unchanged when the step starts.
    pub(crate) reads: Vec<&'a str>,
    /// Whether the kind ends on its own within the step's `timeout`, with its own verdict.
    pub(crate) keeps_time: bool,
}

/// How a kind is undone when the playbook does not say.
pub(crate) enum DefaultRollback {
    /// Described by this text.
    Does(&'static str),
    /// The playbook must decide (exec).
    Required,
}

/// What a step's rollback needs, recorded in the journal so rollback works from it alone.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Undo {
    /// Put these files back as they were.
    Files { files: Vec<files::Snapshot> },
    /// Run this command.
    Command { command: exec::Command },
    /// Run the down files of these applied SQL files, newest first.
    Sql(sql::Applied),
    /// Restore a PostgreSQL dump.
    PgRestore(pg_backup::Dump),
    /// Restore a Redis snapshot.
    RedisRestore(redis_backup::Snapshot),
    /// Point image tags back where they were.
    Retag(docker_build::Tags),
    /// Put services' previous containers back.
    Containers(compose::Containers),
    /// Put a load balancer's upstream file back and make it reload.
    Upstream(lb_switch::Switched),
    /// Remove a migration run's rows and put back what it overwrote.
    Migration(crate::migrate::Written),
}

/// A step that finished: a one-line summary, what its default rollback needs (if anything),
/// and the figures it measured (journaled, for later steps of the run to compare with).
pub(crate) struct Done {
    pub(crate) summary: String,
    pub(crate) undo: Option<Undo>,
    pub(crate) figures: Option<serde_json::Value>,
}

impl From<String> for Done {
    fn from(summary: String) -> Self {
        Done {
            summary,
            undo: None,
            figures: None,
        }
    }
}

/// Why a step (or its rollback) failed, in words for the operator, with what it had already
/// done when that must be undone too.
#[derive(Debug)]
pub(crate) struct StepError {
    pub(crate) message: String,
    pub(crate) partial: Option<Box<Undo>>,
    /// The run should pause (an inconclusive gate) rather than follow `on_failure`.
    pub(crate) pause: bool,
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError {
            message,
            partial: None,
            pause: false,
        }
    }
}

impl From<crate::traffic::Inconclusive> for StepError {
    fn from(gate: crate::traffic::Inconclusive) -> Self {
        StepError {
            message: gate.message,
            partial: None,
            pause: gate.pause,
        }
    }
}

impl StepError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: String) -> impl FnOnce(std::io::Error) -> StepError {
        move |e| StepError::from(format!("{context}: {e}"))
    }
}

impl Action {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Action::Backup(_) => Kind::Backup,
            Action::Template(_) => Kind::Template,
            Action::Env(_) => Kind::Env,
            Action::Exec(_) => Kind::Exec,
            Action::Sql(_) => Kind::Sql,
            Action::PgWait(_) => Kind::PgWait,
            Action::PgBackup(_) => Kind::PgBackup,
            Action::RedisBackup(_) => Kind::RedisBackup,
            Action::Preflight(_) => Kind::Preflight,
            Action::DockerBuild(_) => Kind::DockerBuild,
            Action::ComposeUp(_) => Kind::ComposeUp,
            Action::ComposeDown(_) => Kind::ComposeDown,
            Action::LbSwitch(_) => Kind::LbSwitch,
            Action::DockerPrune(_) => Kind::DockerPrune,
            Action::HttpCheck(_) => Kind::HttpCheck,
            Action::Notify(_) => Kind::Notify,
            Action::Monitor(_) => Kind::Monitor,
            Action::Verify(_) => Kind::Verify,
            Action::Migrate(_) => Kind::Migrate,
        }
    }

    /// What the plan and the engine need to know of the step besides its verbs.
    pub(crate) fn facts(&self) -> Facts<'_> {
        let none = Facts::default;
        match self {
            Action::Backup(s) => Facts {
                observes: s.paths.iter().map(String::as_str).collect(),
                ..none()
            },
            Action::Template(s) => Facts {
                observes: vec![s.dest.as_str()],
                reads: vec![s.template.as_str()],
                ..none()
            },
            Action::Env(s) => Facts {
                observes: vec![s.file.as_str()],
                ..none()
            },
            Action::Sql(s) => Facts {
                reads: s.reads(),
                ..none()
            },
            Action::ComposeUp(s) | Action::ComposeDown(s) => Facts {
                observes: s.observes(),
                ..none()
            },
            Action::LbSwitch(s) => Facts {
                observes: vec![s.file.as_str()],
                ..none()
            },
            Action::HttpCheck(_) => Facts {
                keeps_time: true,
                ..none()
            },
            Action::Exec(_)
            | Action::PgWait(_)
            | Action::PgBackup(_)
            | Action::RedisBackup(_)
            | Action::Preflight(_)
            | Action::DockerBuild(_)
            | Action::DockerPrune(_)
            | Action::Notify(_)
            | Action::Monitor(_)
            | Action::Verify(_)
            | Action::Migrate(_) => none(),
        }
    }

    pub(crate) fn plan(
        &self,
        id: &str,
        observed: &Observed,
        workdir: &Path,
        secrets: &crate::secrets::Secrets,
    ) -> Intent {
        match self {
            Action::Backup(s) => s.plan(observed),
            Action::Template(s) => s.plan(observed),
            Action::Env(s) => s.plan(observed, secrets),
            Action::Exec(s) => s.plan(secrets),
            Action::Sql(s) => s.plan(observed.sql_history(id)),
            Action::PgWait(s) => s.plan(),
            Action::PgBackup(s) => s.plan(),
            Action::RedisBackup(s) => s.plan(),
            Action::Preflight(s) => s.plan(),
            Action::DockerBuild(s) => s.plan(),
            Action::ComposeUp(s) => s.plan(observed, observed.compose(id), workdir, false),
            Action::ComposeDown(s) => s.plan(observed, None, workdir, true),
            Action::LbSwitch(s) => s.plan(observed),
            Action::DockerPrune(s) => s.plan(),
            Action::HttpCheck(s) => s.plan(),
            Action::Notify(s) => s.plan(),
            Action::Monitor(s) => s.plan(),
            Action::Verify(s) => s.plan(),
            Action::Migrate(s) => Intent::new(s.describe(), true),
        }
    }

    pub(crate) fn default_rollback(&self) -> DefaultRollback {
        use DefaultRollback::{Does, Required};
        match self {
            Action::Backup(_) => Does("restore the saved files; remove those that did not exist"),
            Action::Template(_) | Action::Env(_) => {
                Does("restore the previous content (remove the file if it did not exist)")
            }
            Action::Exec(_) => Required,
            Action::Sql(_) => Does(
                "run the .down.sql of each applied file, newest first, and remove its history row",
            ),
            Action::PgWait(_)
            | Action::Preflight(_)
            | Action::HttpCheck(_)
            | Action::Monitor(_)
            | Action::Verify(_) => Does("none needed: it only reads"),
            Action::Notify(_) => Does("none: a sent alert stays sent"),
            Action::Migrate(_) => {
                Does("delete the rows this run wrote and put back the rows it overwrote")
            }
            Action::DockerBuild(_) => Does("point each tag back at the image it named before"),
            Action::ComposeUp(_) | Action::ComposeDown(_) => Does(
                "remove the containers the step created and put the previous ones back (kept, stopped, until then)",
            ),
            Action::DockerPrune(_) => Does("none needed: only unused, untagged images go"),
            Action::LbSwitch(_) => {
                Does("write the previous upstream file back and signal the load balancer again")
            }
            Action::PgBackup(_) => Does("restore the dump (pg_restore --clean)"),
            Action::RedisBackup(_) => {
                Does("restore every saved key with its TTL (RESTORE ... REPLACE)")
            }
        }
    }

    /// Records, before any change, what the default rollback will need: the files a
    /// file-writing step changes, the images tags name, the containers services have.
    pub(crate) async fn prepare(&self, cx: &StepCx<'_>) -> Result<Option<Undo>, StepError> {
        match self {
            Action::Backup(_) => self.snapshot(cx, |_| None),
            Action::Template(s) => self.snapshot(cx, |_| {
                Some(files::Write {
                    bytes: s.content.clone().into_bytes(),
                    mode: s.mode,
                    new_mode: s.new_mode,
                })
            }),
            Action::Env(s) => self.snapshot(cx, |current| {
                let text = String::from_utf8_lossy(current.unwrap_or_default());
                Some(files::Write {
                    bytes: env::edit(&text, &s.set).ok()?.into_bytes(),
                    mode: None,
                    new_mode: env::NEW_MODE,
                })
            }),
            Action::DockerBuild(s) => s.prepare(cx).await.map(Some),
            Action::Migrate(s) => Ok(Some(Undo::Migration(s.written(cx.run_id)))),
            Action::Sql(s) => s.prepare(cx).await,
            Action::ComposeUp(s) | Action::ComposeDown(s) => s.prepare(cx).await.map(Some),
            Action::LbSwitch(s) => s.prepare(cx).map(|u| Some(Undo::Upstream(u))),
            Action::Exec(_)
            | Action::PgWait(_)
            | Action::PgBackup(_)
            | Action::RedisBackup(_)
            | Action::Preflight(_)
            | Action::DockerPrune(_)
            | Action::HttpCheck(_)
            | Action::Notify(_)
            | Action::Monitor(_)
            | Action::Verify(_) => Ok(None),
        }
    }

    /// Saves the files a file-writing step observes; `writes` says what the step leaves in a
    /// file, given what it holds now (`None`: it leaves the file as it is).
    fn snapshot(
        &self,
        cx: &StepCx<'_>,
        writes: impl Fn(Option<&[u8]>) -> Option<files::Write>,
    ) -> Result<Option<Undo>, StepError> {
        let files = self
            .facts()
            .observes
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                files::snapshot(&cx.resolve(p), &cx.backup_dir, i, cx.run_id, &writes)
                    .map_err(StepError::io(format!("could not save `{p}`")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Undo::Files { files }))
    }

    /// Does the step's work.
    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<Done, StepError> {
        match self {
            Action::Backup(s) => s.apply(cx).map(Done::from),
            Action::Template(s) => s.apply(cx).map(Done::from),
            Action::Env(s) => s.apply(cx).map(Done::from),
            Action::Exec(s) => s.command.run(cx).await.map(Done::from),
            Action::Sql(s) => s.apply(cx).await,
            Action::PgWait(s) => s.apply(cx).await.map(Done::from),
            Action::PgBackup(s) => s.apply(cx).await,
            Action::RedisBackup(s) => s.apply(cx).await,
            Action::Preflight(s) => s.apply(cx).await.map(Done::from),
            Action::DockerBuild(s) => s.apply(cx).await.map(Done::from),
            Action::ComposeUp(s) => s.up(cx).await.map(Done::from),
            Action::ComposeDown(s) => s.down(cx).await.map(Done::from),
            Action::LbSwitch(s) => s.apply(cx).await.map(Done::from),
            Action::DockerPrune(s) => s.apply(cx).await.map(Done::from),
            Action::HttpCheck(s) => s.apply(cx).await.map(Done::from),
            Action::Notify(s) => s.apply(cx).await.map(Done::from),
            Action::Monitor(s) => s.apply(cx).await.map(Done::from),
            Action::Verify(s) => s.apply(cx).await,
            Action::Migrate(s) => s.apply(cx).await.map(Done::from).map_err(StepError::from),
        }
    }
}

impl Undo {
    /// The file snapshots this record restores.
    pub(crate) fn snapshots(&self) -> Vec<&files::Snapshot> {
        match self {
            Undo::Files { files } => files.iter().collect(),
            Undo::Upstream(switched) => vec![&switched.file],
            Undo::Command { .. }
            | Undo::Sql(_)
            | Undo::PgRestore(_)
            | Undo::RedisRestore(_)
            | Undo::Retag(_)
            | Undo::Containers(_)
            | Undo::Migration(_) => Vec::new(),
        }
    }

    /// Carries out the rollback this record describes; returns a one-line summary.
    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        match self {
            Undo::Files { files } => {
                let mut kept = String::new();
                for snapshot in files {
                    if let Some(at) = files::restore(snapshot).map_err(StepError::io(format!(
                        "could not restore `{}`",
                        snapshot.path.display()
                    )))? {
                        kept += &files::kept_note(snapshot, &at);
                    }
                }
                Ok(format!("restored {} file(s){kept}", files.len()))
            }
            Undo::Command { command } => command.run(cx).await,
            Undo::Sql(applied) => applied.roll_back(cx).await,
            Undo::PgRestore(dump) => dump.restore(cx).await,
            Undo::RedisRestore(snapshot) => snapshot.restore(cx).await,
            Undo::Retag(tags) => tags.restore(cx).await,
            Undo::Containers(containers) => containers.restore(cx).await,
            Undo::Upstream(switched) => switched.restore(cx).await,
            Undo::Migration(written) => written.restore().await.map_err(StepError::from),
        }
    }
}

/// The action of a playbook in `dir` whose only step is of `kind` with `fields` (TOML lines).
#[cfg(test)]
pub(crate) fn only_step(dir: &std::path::Path, kind: &str, fields: &str) -> Action {
    let path = dir.join("only.toml");
    std::fs::write(
        &path,
        format!(
            "[playbook]\nname = \"only\"\n\n[[steps]]\nid = \"only\"\nkind = \"{kind}\"\n{fields}\n"
        ),
    )
    .unwrap();
    let playbook = crate::playbook::load(&path, &std::collections::BTreeMap::new(), None).unwrap();
    playbook.steps.into_iter().next().unwrap().action
}
