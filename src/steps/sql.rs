//! `sql`: apply SQL files in name order as tracked migrations. A history table records each
//! file's checksum, time, duration and success; a file runs in its own transaction unless its
//! first line says `-- runner:no-transaction`; an advisory lock (released if the connection
//! drops) keeps two runners apart. An applied file whose checksum changed is refused, a failed
//! non-transactional file (dirty) blocks until someone resolves it, and rollback runs the
//! matching `.down.sql` files newest first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use toml::Spanned;

use super::{Done, Intent, StepCx, StepError, Undo};
use crate::check::{Checker, Scalar};
use crate::context::Lent;
use crate::db::postgres::{Target, describe};

const NO_TRANSACTION: &str = "-- runner:no-transaction";
const DEFAULT_HISTORY: &str = "public.runner_sql_history";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
    files: Vec<Spanned<String>>,
    history_table: Option<Spanned<String>>,
    /// Session settings (`SELECT set_config(name, value, false)`) the files can read with
    /// `current_setting(name)`: how a secret reaches SQL without being written in it.
    settings: Option<BTreeMap<String, Spanned<Scalar>>>,
    connect_within: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct Sql {
    /// May hold a password: never shown.
    url: String,
    target: Target,
    files: Vec<SqlFile>,
    history: History,
    settings: BTreeMap<String, String>,
    connect_within: Duration,
}

#[derive(Debug)]
struct SqlFile {
    /// The file name: the history's key.
    name: String,
    /// As written in the playbook (or found by its glob).
    path: String,
    sql: String,
    checksum: String,
    transactional: bool,
    /// The matching `.down.sql`, absolute.
    down: Option<PathBuf>,
}

impl SqlFile {
    fn applied(&self) -> AppliedFile {
        AppliedFile {
            name: self.name.clone(),
            down: self.down.clone(),
        }
    }
}

/// The history table, as a checked `schema.table`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct History {
    schema: String,
    table: String,
}

impl History {
    fn parse(text: &str) -> Option<History> {
        let (schema, table) = text.split_once('.').unwrap_or(("public", text));
        let ident = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        (ident(schema) && ident(table)).then(|| History {
            schema: schema.into(),
            table: table.into(),
        })
    }

    fn name(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    /// The advisory lock key of this history table.
    fn lock_sql(&self, verb: &str) -> String {
        format!(
            "SELECT {verb}(hashtext('runner-sql:{}.{}'))",
            self.schema, self.table
        )
    }
}

/// One row of the history table.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    file: String,
    checksum: String,
    success: bool,
    applied_at: String,
}

/// What rollback needs: where, and the files this step applied (in order).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Applied {
    url: String,
    history: History,
    /// The step's settings: the down files may read them too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    settings: BTreeMap<String, String>,
    files: Vec<AppliedFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct AppliedFile {
    name: String,
    down: Option<PathBuf>,
}

impl Sql {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let parsed = cx.url(&raw.url, Target::parse);
        let history = match &raw.history_table {
            None => History::parse(DEFAULT_HISTORY),
            Some(h) => {
                let parsed = History::parse(h.get_ref());
                if parsed.is_none() {
                    cx.problem(
                        h.span(),
                        format!("`{}` is not a table name", h.get_ref()),
                        "use schema.table in lower case",
                    );
                }
                parsed
            }
        };
        let connect_within = match &raw.connect_within {
            Some(d) => cx.duration(d)?,
            None => Duration::from_secs(30),
        };
        let settings: Option<BTreeMap<String, String>> = raw
            .settings
            .iter()
            .flatten()
            .map(|(k, v)| Some((k.clone(), cx.scalar(v)?)))
            .collect();
        let mut files = Vec::new();
        for pattern in &raw.files {
            for path in cx.glob(pattern)? {
                files.push(read_file(&path, pattern.span(), cx)?);
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in files.windows(2) {
            if pair[0].name == pair[1].name {
                cx.problem(
                    raw.files[0].span(),
                    format!("two files are named `{}`", pair[0].name),
                    "the history keys on file names",
                );
                return None;
            }
        }
        let (url, target) = parsed?;
        Some(Sql {
            url,
            target,
            files,
            history: history?,
            settings: settings?,
            connect_within,
        })
    }

    pub(crate) fn plan(&self, history: Option<&Result<Vec<Row>, String>>) -> Intent {
        let names: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        let Some(history) = history else {
            return Intent::new(
                format!(
                    "apply the files not applied yet to {}, in order: {} (history in {} not read: --no-refresh)",
                    self.target.display,
                    names.join(", "),
                    self.history.name()
                ),
                true,
            );
        };
        let rows = match history {
            Ok(rows) => rows,
            Err(why) => {
                return Intent::new(
                    format!(
                        "apply the files not applied yet to {}: {} (history not read: {why})",
                        self.target.display,
                        names.join(", ")
                    ),
                    true,
                );
            }
        };
        let (pending, problems) = self.pending(rows);
        let pending: Vec<&str> = pending.iter().map(|f| f.name.as_str()).collect();
        let mut intent = Intent::new(
            format!(
                "apply {} of {} file(s) to {}: {}",
                pending.len(),
                self.files.len(),
                self.target.display,
                if pending.is_empty() {
                    "none, all applied".to_string()
                } else {
                    pending.join(", ")
                }
            ),
            !pending.is_empty(),
        );
        if !problems.is_empty() {
            intent.refusal = Some(problems.join("; "));
        }
        intent
    }

    /// The files still to apply, and why the step must not run (changed or dirty files).
    fn pending(&self, rows: &[Row]) -> (Vec<&SqlFile>, Vec<String>) {
        let by_file: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.file.as_str(), r)).collect();
        let mut pending = Vec::new();
        let mut problems = Vec::new();
        for file in &self.files {
            match by_file.get(file.name.as_str()) {
                None => pending.push(file),
                Some(row) if !row.success => problems.push(format!(
                    "`{}` failed on {} outside a transaction and may be half applied: repair the database, then delete its row from {}",
                    file.path,
                    row.applied_at,
                    self.history.name()
                )),
                Some(row) if row.checksum != file.checksum => problems.push(format!(
                    "`{}` was changed after it was applied on {} (checksum {} is now {}): add a new file instead",
                    file.path,
                    row.applied_at,
                    &row.checksum[..12.min(row.checksum.len())],
                    &file.checksum[..12]
                )),
                Some(_) => {}
            }
        }
        (pending, problems)
    }

    /// The files the step runs, as the playbook names them.
    pub(crate) fn reads(&self) -> Vec<&str> {
        self.files.iter().map(|f| f.path.as_str()).collect()
    }

    /// What the plan expects of the history when the step starts: the rows of this step's
    /// files as they were read (other steps' rows may change in between).
    pub(crate) fn expectation(&self, rows: &[Row]) -> crate::fingerprint::Input {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| self.files.iter().any(|f| f.name == r.file))
            .collect();
        let text = serde_json::to_vec(&mine).expect("rows serialize");
        crate::fingerprint::Input::new(
            &self.history.name(),
            crate::fingerprint::InputRole::History,
            Some(&text),
        )
    }

    /// Reads the history table (for `plan --refresh`); an absent table is an empty history.
    pub(crate) async fn history(&self, lent: &Lent) -> Result<Vec<Row>, String> {
        let client = lent.postgres(&self.target, Duration::ZERO).await?;
        read_history(&client, &self.history).await
    }

    /// What rollback needs, journaled before anything runs: the files not yet in the history,
    /// any of which a step killed half way may have applied (rollback undoes those it finds).
    pub(crate) async fn prepare(&self, cx: &StepCx<'_>) -> Result<Option<Undo>, StepError> {
        let client = cx
            .lent
            .postgres_utf8(&self.target, self.connect_within)
            .await?;
        let rows = read_history(&client, &self.history).await?;
        let (pending, _) = self.pending(&rows);
        Ok((!pending.is_empty()).then(|| Undo::Sql(self.applied(pending))))
    }

    /// The undo record of `files` of this step.
    fn applied<'f>(&self, files: impl IntoIterator<Item = &'f SqlFile>) -> Applied {
        Applied {
            url: self.url.clone(),
            history: self.history.clone(),
            settings: self.settings.clone(),
            files: files.into_iter().map(SqlFile::applied).collect(),
        }
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<Done, StepError> {
        let mut client = cx
            .lent
            .postgres_utf8(&self.target, self.connect_within)
            .await?;
        let history = self.history.name();
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"; CREATE TABLE IF NOT EXISTS {history} (
                file text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                duration_ms bigint NOT NULL, success boolean NOT NULL)",
            self.history.schema
        );
        let fail = |what: &str| {
            let what = what.to_string();
            move |e: tokio_postgres::Error| StepError::from(format!("{what}: {}", describe(&e)))
        };
        client
            .batch_execute(&self.history.lock_sql("pg_advisory_lock"))
            .await
            .map_err(fail("cannot take the advisory lock"))?;
        client
            .batch_execute(&setup)
            .await
            .map_err(fail("cannot create the history table"))?;
        for (name, value) in &self.settings {
            client
                .execute("SELECT set_config($1, $2, false)", &[name, value])
                .await
                .map_err(fail(&format!("cannot set `{name}`")))?;
        }
        let rows = read_history(&client, &self.history).await?;
        let (pending, problems) = self.pending(&rows);
        if !problems.is_empty() {
            return Err(StepError::from(problems.join("; ")));
        }
        let mut applied = self.applied([]);
        for file in pending {
            cx.say(format!("applying {}", file.path));
            if let Err(why) = run_file(&mut client, &history, file).await {
                let done = if applied.files.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = applied.files.iter().map(|f| f.name.as_str()).collect();
                    format!(" (applied before it: {})", names.join(", "))
                };
                let partial = (!applied.files.is_empty()).then(|| Box::new(Undo::Sql(applied)));
                return Err(StepError {
                    message: format!("{why}{done}"),
                    partial,
                    pause: false,
                });
            }
            applied.files.push(file.applied());
        }
        let summary = format!(
            "applied {} file(s) to {}, {} already applied",
            applied.files.len(),
            self.target.display,
            self.files.len() - applied.files.len()
        );
        let undo = (!applied.files.is_empty()).then_some(Undo::Sql(applied));
        Ok(Done {
            summary,
            undo,
            figures: None,
        })
    }
}

impl Applied {
    /// Runs the down files newest first, each with the removal of its history row; a file the
    /// history does not hold (never applied, or undone already) is passed over.
    pub(crate) async fn roll_back(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let target = Target::parse(&self.url)?;
        let mut client = cx.lent.postgres(&target, Duration::from_secs(30)).await?;
        client
            .batch_execute(&self.history.lock_sql("pg_advisory_lock"))
            .await
            .map_err(|e| {
                StepError::from(format!("cannot take the advisory lock: {}", describe(&e)))
            })?;
        for (name, value) in &self.settings {
            client
                .execute("SELECT set_config($1, $2, false)", &[name, value])
                .await
                .map_err(|e| StepError::from(format!("cannot set `{name}`: {}", describe(&e))))?;
        }
        let applied: BTreeSet<String> = read_history(&client, &self.history)
            .await?
            .into_iter()
            .map(|r| r.file)
            .collect();
        let mut ran = 0;
        for file in self.files.iter().rev() {
            if !applied.contains(&file.name) {
                continue;
            }
            let Some(down) = &file.down else {
                return Err(StepError::from(format!(
                    "`{}` has no .down.sql: undo it by hand",
                    file.name
                )));
            };
            cx.say(format!("running {}", down.display()));
            let sql = std::fs::read_to_string(down)
                .map_err(StepError::io(format!("cannot read `{}`", down.display())))?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| StepError::from(describe(&e)))?;
            tx.batch_execute(&sql)
                .await
                .map_err(|e| StepError::from(located(&down.display().to_string(), &sql, &e)))?;
            let delete = format!("DELETE FROM {} WHERE file = $1", self.history.name());
            tx.execute(&delete, &[&file.name])
                .await
                .map_err(|e| StepError::from(describe(&e)))?;
            tx.commit()
                .await
                .map_err(|e| StepError::from(describe(&e)))?;
            ran += 1;
        }
        Ok(format!("ran {ran} down file(s)"))
    }
}

fn read_file(path: &str, span: std::ops::Range<usize>, cx: &mut Checker<'_>) -> Option<SqlFile> {
    let sql = cx.read_input(path, span)?;
    let name = std::path::Path::new(path)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let down = name.strip_suffix(".up.sql").map(|stem| {
        let relative = std::path::Path::new(path).with_file_name(format!("{stem}.down.sql"));
        cx.workdir().join(relative)
    });
    Some(SqlFile {
        transactional: sql
            .lines()
            .next()
            .is_none_or(|l| l.trim() != NO_TRANSACTION),
        checksum: crate::fingerprint::sha256(sql.as_bytes()),
        name,
        path: path.to_string(),
        sql: sql.to_string(),
        down: down.filter(|d| d.exists()),
    })
}

async fn read_history(client: &Client, history: &History) -> Result<Vec<Row>, String> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&history.name()])
        .await
        .map_err(|e| format!("cannot read the history: {}", describe(&e)))?
        .get(0);
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let query = format!(
        "SELECT file, checksum, success, applied_at::text FROM {} ORDER BY file",
        history.name()
    );
    let rows = client
        .query(&query, &[])
        .await
        .map_err(|e| format!("cannot read the history: {}", describe(&e)))?;
    Ok(rows
        .iter()
        .map(|r| Row {
            file: r.get(0),
            checksum: r.get(1),
            success: r.get(2),
            applied_at: r.get(3),
        })
        .collect())
}

/// Applies one file and records it: in one transaction unless the file opts out, in which case
/// a failure leaves a dirty row (success = false) that blocks later runs.
async fn run_file(client: &mut Client, history: &str, file: &SqlFile) -> Result<(), String> {
    let started = Instant::now();
    let record = format!(
        "INSERT INTO {history} (file, checksum, duration_ms, success) VALUES ($1, $2, $3, $4)
         ON CONFLICT (file) DO UPDATE SET checksum = $2, applied_at = now(), duration_ms = $3, success = $4"
    );
    let elapsed = || i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    if file.transactional {
        let tx = client.transaction().await.map_err(|e| describe(&e))?;
        tx.batch_execute(&file.sql)
            .await
            .map_err(|e| located(&file.path, &file.sql, &e))?;
        tx.execute(&record, &[&file.name, &file.checksum, &elapsed(), &true])
            .await
            .map_err(|e| describe(&e))?;
        tx.commit().await.map_err(|e| describe(&e))
    } else {
        let result = client.batch_execute(&file.sql).await;
        client
            .execute(
                &record,
                &[&file.name, &file.checksum, &elapsed(), &result.is_ok()],
            )
            .await
            .map_err(|e| describe(&e))?;
        result.map_err(|e| {
            format!(
                "{} (recorded as failed: it ran outside a transaction)",
                located(&file.path, &file.sql, &e)
            )
        })
    }
}

/// A server error with the file, the line and the server's message and position.
fn located(path: &str, sql: &str, e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("`{path}`: {}", describe(e));
    };
    let position = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p as usize),
        _ => None,
    };
    let mut out = match position {
        Some(p) => {
            let before: String = sql.chars().take(p.saturating_sub(1)).collect();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("`{path}` line {line}, column {column}: {}", db.message())
        }
        None => format!("`{path}`: {}", db.message()),
    };
    if let Some(detail) = db.detail() {
        out.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("; hint: {hint}"));
    }
    out
}
