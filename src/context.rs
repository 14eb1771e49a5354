//! What a step is lent by the engine while it runs: where it works, where it reports, what
//! the steps before it measured, the clients of the services it talks to (made once per
//! command, when first asked for) and the signal that asks it to stop.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OnceCell, OwnedMappedMutexGuard, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::db;

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
    pub(crate) secrets: &'a crate::secrets::Secrets,
    /// The clients, and the stop signal, of the command this step runs in.
    pub(crate) lent: &'a Lent,
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

/// A request to stop, made by the CLI when a signal comes (or by a test), with the reason.
#[derive(Clone, Default)]
pub(crate) struct Stop {
    token: CancellationToken,
    why: Arc<OnceLock<String>>,
}

impl Stop {
    /// Asks the run to stop; the first reason given is the one reported.
    pub(crate) fn request(&self, why: impl Into<String>) {
        let _ = self.why.set(why.into());
        self.token.cancel();
    }

    /// Waits until a stop is requested, and says why.
    pub(crate) async fn requested(&self) -> String {
        self.token.cancelled().await;
        self.reason().unwrap_or_default()
    }

    /// Why a stop was requested, if it was.
    pub(crate) fn reason(&self) -> Option<String> {
        self.token
            .is_cancelled()
            .then(|| self.why.get().cloned().unwrap_or_default())
    }
}

/// A PostgreSQL connection lent to one user at a time; given back when dropped.
pub(crate) type Postgres =
    OwnedMappedMutexGuard<Option<tokio_postgres::Client>, tokio_postgres::Client>;

type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

/// What the engine lends every step of one command, and the planner's observation: one Docker
/// connection, one HTTP client, a PostgreSQL and a Redis connection per URL, each made when it
/// is first asked for; and the stop signal.
#[derive(Default)]
pub(crate) struct Lent {
    docker: OnceCell<bollard::Docker>,
    http: OnceLock<Result<reqwest::Client, String>>,
    postgres: Mutex<HashMap<String, Slot<tokio_postgres::Client>>>,
    redis: Mutex<HashMap<String, Slot<redis::aio::MultiplexedConnection>>>,
    pub(crate) stop: Stop,
}

/// What a step may have left in a PostgreSQL session, undone before the connection is lent
/// again: an open transaction, settings and role, cursors, listens, advisory locks, temporary
/// tables. (Not `DISCARD ALL`: it would drop the statements the client keeps prepared.)
const RESET: &str = "CLOSE ALL; RESET ALL; SET SESSION AUTHORIZATION DEFAULT; UNLISTEN *; \
                     SELECT pg_advisory_unlock_all(); DISCARD TEMP";

impl Lent {
    /// The Docker engine's client, connected on first use.
    pub(crate) async fn docker(&self) -> Result<bollard::Docker, String> {
        self.docker
            .get_or_try_init(crate::docker::connect)
            .await
            .cloned()
    }

    /// The HTTP client (timeouts are set per request).
    pub(crate) fn http(&self) -> Result<reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(crate::AGENT)
                    .build()
                    .map_err(|e| format!("cannot make an HTTP client: {e}"))
            })
            .clone()
    }

    /// The connection to `target`, made (retrying for `window` while the server starts) if
    /// there is none yet or the one there was closed. Held by one user at a time.
    pub(crate) async fn postgres(
        &self,
        target: &db::postgres::Target,
        window: Duration,
    ) -> Result<Postgres, String> {
        let slot = Arc::clone(lock(&self.postgres).entry(target.key()).or_default());
        let mut held = slot.lock_owned().await;
        let alive = held.take().filter(|c| !c.is_closed());
        *held = Some(match alive {
            Some(client) => client,
            None => target.connect(window).await?,
        });
        OwnedMutexGuard::try_map(held, Option::as_mut)
            .map_err(|_| format!("no connection to PostgreSQL at {}", target.display))
    }

    /// The session to a database runner will write to, checked to store text as UTF-8.
    pub(crate) async fn postgres_utf8(
        &self,
        target: &db::postgres::Target,
        window: Duration,
    ) -> Result<Postgres, String> {
        let client = self.postgres(target, window).await?;
        target.check_utf8(&client).await?;
        Ok(client)
    }

    /// The connection to `target`, made (retrying for `window`) if there is none yet or the
    /// one there no longer answers.
    pub(crate) async fn redis(
        &self,
        target: &db::redis::Target,
        window: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, String> {
        let slot = Arc::clone(lock(&self.redis).entry(target.key()).or_default());
        let mut held = slot.lock().await;
        if let Some(conn) = held.as_mut() {
            let ping = redis::cmd("PING");
            let answer = ping.query_async::<String>(conn);
            if matches!(
                tokio::time::timeout(Duration::from_secs(5), answer).await,
                Ok(Ok(_))
            ) {
                return Ok(conn.clone());
            }
        }
        let conn = target.connect(window).await?;
        *held = Some(conn.clone());
        Ok(conn)
    }

    /// After a step: every PostgreSQL session is put back as a new one would be, so nothing a
    /// step set or locked outlives it; a session that cannot be reset is closed.
    pub(crate) async fn settle(&self) {
        let slots: Vec<_> = lock(&self.postgres).values().cloned().collect();
        for slot in slots {
            let mut held = slot.lock().await;
            if let Some(client) = held.as_ref() {
                // Outside a transaction ROLLBACK only warns.
                let reset = async {
                    client.batch_execute("ROLLBACK").await?;
                    client.batch_execute(RESET).await
                };
                let done = tokio::time::timeout(Duration::from_secs(10), reset).await;
                if !matches!(done, Ok(Ok(()))) {
                    *held = None;
                }
            }
        }
    }
}

/// A map behind a lock that a panic elsewhere cannot poison for good.
fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a test needs to run one step in-process: a context over a directory, and the notes
/// the step sent.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    #[derive(Default)]
    pub(crate) struct Lender {
        figures: BTreeMap<String, serde_json::Value>,
        secrets: crate::secrets::Secrets,
        pub(crate) lent: Lent,
    }

    impl Lender {
        /// A step's context over `dir`, without a timeout or a webhook.
        pub(crate) fn cx<'a>(
            &'a self,
            dir: &'a Path,
        ) -> (StepCx<'a>, tokio::sync::mpsc::UnboundedReceiver<Note>) {
            let (progress, notes) = tokio::sync::mpsc::unbounded_channel();
            let cx = StepCx {
                workdir: dir,
                backup_dir: dir.join("backup"),
                progress,
                timeout: None,
                webhook: None,
                run_id: "test",
                figures: &self.figures,
                secrets: &self.secrets,
                lent: &self.lent,
            };
            (cx, notes)
        }
    }

    /// The records and warnings a step sent, once its context is dropped.
    pub(crate) async fn records(
        mut notes: tokio::sync::mpsc::UnboundedReceiver<Note>,
    ) -> Vec<String> {
        let mut records = Vec::new();
        while let Some(note) = notes.recv().await {
            if let Note::Record(r) | Note::Warning(r) = note {
                records.push(r);
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(var: &str) -> String {
        std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: start the test services with scripts/services.sh and source its env file")
        })
    }

    async fn backend(client: &tokio_postgres::Client, sql: &str) -> String {
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    #[tokio::test]
    async fn a_postgres_session_is_lent_again_put_back_as_new_and_replaced_when_closed() {
        let url = service("RUNNER_TEST_PG_URL");
        let target = db::postgres::Target::parse(&url).unwrap();
        let lent = Lent::default();
        let pid = "SELECT pg_backend_pid()::text";
        let first = {
            let client = lent.postgres(&target, Duration::ZERO).await.unwrap();
            // What a step may leave behind: a setting, a lock, a temporary table, a transaction.
            client
                .batch_execute(
                    "SET application_name = 'left-behind'; SELECT pg_advisory_lock(4242); \
                     CREATE TEMP TABLE scratch (x int); BEGIN; CREATE TABLE never_committed (x int)",
                )
                .await
                .unwrap();
            backend(&client, pid).await
        };
        lent.settle().await;
        let other = target.connect(Duration::ZERO).await.unwrap();
        let locked: bool = other
            .query_one("SELECT pg_try_advisory_lock(4242)", &[])
            .await
            .unwrap()
            .get(0);
        assert!(locked, "the lock outlived the step that took it");
        other
            .batch_execute("SELECT pg_advisory_unlock_all()")
            .await
            .unwrap();
        {
            let client = lent.postgres(&target, Duration::ZERO).await.unwrap();
            assert_eq!(
                backend(&client, pid).await,
                first,
                "a second session was opened"
            );
            assert_eq!(backend(&client, "SHOW application_name").await, "");
            let leftovers: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_class WHERE relname IN ('scratch', 'never_committed')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(leftovers, 0);
        }
        // A session the server ended is replaced by a new one.
        other
            .execute("SELECT pg_terminate_backend($1::text::int)", &[&first])
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let client = lent.postgres(&target, Duration::ZERO).await.unwrap();
            match client.query_one(pid, &[]).await {
                Ok(row) => {
                    assert_ne!(row.get::<_, String>(0), first);
                    break;
                }
                // Terminated, and not yet seen closed by the client: the next lend replaces it.
                Err(_) if std::time::Instant::now() < deadline => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_redis_connection_is_lent_again_and_replaced_when_it_no_longer_answers() {
        let target = db::redis::Target::parse(&service("RUNNER_TEST_REDIS_URL")).unwrap();
        let lent = Lent::default();
        let id = |mut conn: redis::aio::MultiplexedConnection| async move {
            redis::cmd("CLIENT")
                .arg("ID")
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        };
        let first = id(lent.redis(&target, Duration::ZERO).await.unwrap()).await;
        assert_eq!(
            id(lent.redis(&target, Duration::ZERO).await.unwrap()).await,
            first
        );
        let mut other = target.connect(Duration::ZERO).await.unwrap();
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(first)
            .query_async::<i64>(&mut other)
            .await
            .unwrap();
        assert_ne!(
            id(lent.redis(&target, Duration::ZERO).await.unwrap()).await,
            first
        );
    }

    #[tokio::test]
    async fn a_stop_is_seen_with_its_first_reason() {
        let stop = Stop::default();
        assert_eq!(stop.reason(), None);
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { stop.requested().await }
        });
        stop.request("Ctrl-C");
        stop.request("SIGTERM");
        assert_eq!(waiting.await.unwrap(), "Ctrl-C");
        assert_eq!(stop.reason().as_deref(), Some("Ctrl-C"));
    }
}
