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
pub(crate) mod lb_switch;
pub(crate) mod monitor;
pub(crate) mod notify;
pub(crate) mod pg_backup;
pub(crate) mod pg_wait;
pub(crate) mod preflight;
pub(crate) mod redis_backup;
pub(crate) mod sql;
pub(crate) mod template;
pub(crate) mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Observed;
use crate::secrets::Secrets;

/// The kind names a playbook may use.
pub(crate) const KINDS: &[&str] = &[
    "backup",
    "template",
    "env",
    "exec",
    "sql",
    "pg_wait",
    "pg_backup",
    "redis_backup",
    "preflight",
    "docker_build",
    "compose_up",
    "compose_down",
    "lb_switch",
    "docker_prune",
    "http_check",
    "notify",
    "monitor",
    "verify",
    "migrate",
];

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
            diff: changes.then(|| crate::plan::diff(path, current, content.as_bytes())),
            refusal: None,
            writes: Some((path.to_string(), content.as_bytes().to_vec())),
            compose: None,
        }
    }
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

/// What a running step reports while it works.
pub(crate) enum Note {
    /// A line of progress (shown, never journaled).
    Line(String),
    /// How far a long piece of work is, `done` of `total` (a progress bar), and the same in
    /// words (shown, never journaled).
    Meter { done: u64, total: u64, line: String },
    /// Something the operator must know (journaled).
    Warning(String),
    /// One observation of a polling step (journaled).
    Record(String),
    /// A child process group started (journaled, so that a later runner can stop it if this
    /// one dies), with its leader's start time.
    Child { pid: u32, started: Option<u64> },
    /// That group is gone.
    ChildExited { pid: u32 },
}

pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<Note>;

/// What a step needs from the engine while it runs.
pub(crate) struct StepCx<'a> {
    pub(crate) workdir: &'a Path,
    /// This step's own folder in the run's backup dir.
    pub(crate) backup_dir: PathBuf,
    pub(crate) progress: Progress,
    /// The step's `timeout`, for kinds that keep their own time within it.
    pub(crate) timeout: Option<std::time::Duration>,
    /// The playbook's `[notify]` webhook.
    pub(crate) webhook: Option<&'a str>,
    /// The run this step belongs to.
    pub(crate) run_id: &'a str,
    /// The figures of the steps of this run that succeeded before this one, by step id.
    pub(crate) figures: &'a BTreeMap<String, serde_json::Value>,
    /// The values to redact from what the step shows before it is formatted (a command line).
    pub(crate) secrets: &'a Secrets,
}

impl StepCx<'_> {
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        self.workdir.join(path)
    }

    pub(crate) fn say(&self, line: impl Into<String>) {
        let _ = self.progress.send(Note::Line(line.into()));
    }

    pub(crate) fn meter(&self, done: u64, total: u64, line: String) {
        let _ = self.progress.send(Note::Meter { done, total, line });
    }

    pub(crate) fn warn(&self, message: String) {
        let _ = self.progress.send(Note::Warning(message));
    }

    pub(crate) fn record(&self, sample: String) {
        let _ = self.progress.send(Note::Record(sample));
    }

    pub(crate) fn child(&self, pid: u32, started: Option<u64>) {
        let _ = self.progress.send(Note::Child { pid, started });
    }

    pub(crate) fn child_exited(&self, pid: u32) {
        let _ = self.progress.send(Note::ChildExited { pid });
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

impl StepError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: String) -> impl FnOnce(std::io::Error) -> StepError {
        move |e| StepError::from(format!("{context}: {e}"))
    }
}

impl Action {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Action::Backup(_) => "backup",
            Action::Template(_) => "template",
            Action::Env(_) => "env",
            Action::Exec(_) => "exec",
            Action::Sql(_) => "sql",
            Action::PgWait(_) => "pg_wait",
            Action::PgBackup(_) => "pg_backup",
            Action::RedisBackup(_) => "redis_backup",
            Action::Preflight(_) => "preflight",
            Action::DockerBuild(_) => "docker_build",
            Action::ComposeUp(_) => "compose_up",
            Action::ComposeDown(_) => "compose_down",
            Action::LbSwitch(_) => "lb_switch",
            Action::DockerPrune(_) => "docker_prune",
            Action::HttpCheck(_) => "http_check",
            Action::Notify(_) => "notify",
            Action::Monitor(_) => "monitor",
            Action::Verify(_) => "verify",
            Action::Migrate(_) => "migrate",
        }
    }

    /// Whether the kind ends on its own within the step's `timeout`, with its own verdict.
    pub(crate) fn keeps_time(&self) -> bool {
        matches!(self, Action::HttpCheck(_))
    }

    /// Files whose current content the plan needs (for diffs and the staleness check).
    pub(crate) fn observes(&self) -> Vec<&str> {
        match self {
            Action::Backup(s) => s.paths.iter().map(String::as_str).collect(),
            Action::Template(s) => vec![s.dest.as_str()],
            Action::Env(s) => vec![s.file.as_str()],
            Action::ComposeUp(s) | Action::ComposeDown(s) => s.observes(),
            Action::LbSwitch(s) => vec![s.file.as_str()],
            _ => Vec::new(),
        }
    }

    /// Files the step's content was loaded from (rendered or run as loaded): the plan expects
    /// them unchanged when the step starts.
    pub(crate) fn reads(&self) -> Vec<&str> {
        match self {
            Action::Template(s) => vec![s.template.as_str()],
            Action::Sql(s) => s.reads(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn plan(
        &self,
        id: &str,
        observed: &Observed,
        workdir: &Path,
        secrets: &Secrets,
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
            Action::ComposeUp(s) => s.plan(observed, workdir, false),
            Action::ComposeDown(s) => s.plan(observed, workdir, true),
            Action::LbSwitch(s) => s.plan(observed),
            Action::DockerPrune(s) => s.plan(),
            Action::HttpCheck(s) => s.plan(),
            Action::Notify(s) => s.plan(),
            Action::Monitor(s) => s.plan(),
            Action::Verify(s) => s.plan(),
            Action::Migrate(s) => s.plan(),
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
            Action::Backup(_) | Action::Template(_) | Action::Env(_) => {}
            Action::DockerBuild(s) => return s.prepare().await.map(Some),
            Action::Migrate(s) => return Ok(Some(s.prepare(cx))),
            Action::Sql(s) => return s.prepare().await,
            Action::ComposeUp(s) | Action::ComposeDown(s) => return s.prepare(cx).await.map(Some),
            Action::LbSwitch(s) => return s.prepare(cx).map(|u| Some(Undo::Upstream(u))),
            _ => return Ok(None),
        }
        let files = self
            .observes()
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                files::snapshot(&cx.resolve(p), &cx.backup_dir, i, cx.run_id, |current| {
                    self.writes(current)
                })
                .map_err(StepError::io(format!("could not save `{p}`")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Undo::Files { files }))
    }

    /// What a file-writing step leaves in its file, given what the file holds now (`None`: it
    /// leaves the file as it is).
    fn writes(&self, current: Option<&[u8]>) -> Option<files::Write> {
        match self {
            Action::Template(s) => Some(files::Write {
                bytes: s.content.clone().into_bytes(),
                mode: s.mode,
                new_mode: s.new_mode,
            }),
            Action::Env(s) => {
                let text = String::from_utf8_lossy(current.unwrap_or_default());
                Some(files::Write {
                    bytes: env::edit(&text, &s.set).ok()?.into_bytes(),
                    mode: None,
                    new_mode: env::NEW_MODE,
                })
            }
            _ => None,
        }
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
            Action::DockerPrune(s) => s.apply().await.map(Done::from),
            Action::HttpCheck(s) => s.apply(cx).await.map(Done::from),
            Action::Notify(s) => s.apply(cx).await.map(Done::from),
            Action::Monitor(s) => s.apply(cx).await.map(Done::from),
            Action::Verify(s) => s.apply(cx).await,
            Action::Migrate(s) => s.apply(cx).await.map(Done::from),
        }
    }
}

impl Undo {
    /// The file snapshots this record restores.
    pub(crate) fn snapshots(&self) -> Vec<&files::Snapshot> {
        match self {
            Undo::Files { files } => files.iter().collect(),
            Undo::Upstream(switched) => vec![&switched.file],
            _ => Vec::new(),
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
            Undo::Retag(tags) => tags.restore().await,
            Undo::Containers(containers) => containers.restore(cx).await,
            Undo::Upstream(switched) => switched.restore().await,
            Undo::Migration(written) => written.restore().await,
        }
    }
}
