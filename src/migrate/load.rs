//! Writing the migration into PostgreSQL: each batch is one transaction that COPYs the rows
//! into a staging table, saves the rows it is about to overwrite (for rollback), merges with
//! `INSERT ... ON CONFLICT (source_key) DO UPDATE ... WHERE the source changed` (so SCAN's
//! duplicates and re-runs change nothing), records rejects and moves the run's checkpoint:
//! data and checkpoint commit together. A row the app wrote itself during dual writes
//! (`migrated_run = 'app'`, written through with the whole current value) is newer than
//! anything the migration read, so the merge never overwrites it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Client;

use super::copy::CopyText;
use super::source::Source;
use crate::db::postgres::{Target, describe};

/// The `migrated_run` of a row the app wrote through during dual writes.
const APP_ROW: &str = "app";

/// The columns every table has, at the end of each COPY line (`end_line`).
const LINE_END: [&str; 4] = ["source_key", "source", "source_expires_at", "migrated_run"];

/// Ends a row's COPY line, after its cells, with its key, its whole value, when the key
/// expires (or NULL) and its run.
pub(crate) fn end_line(
    text: &mut CopyText,
    key: &str,
    source: &Source,
    expires: Option<DateTime<Utc>>,
    run: &str,
) {
    text.text(key);
    text.tab();
    text.json(source);
    text.tab();
    match expires {
        Some(at) => text.text(&at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => text.null(),
    }
    text.tab();
    text.text(run);
    text.end();
}

/// A key's expiry (epoch ms) as a time, or why the row cannot hold it.
pub(crate) fn expiry(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("expires at {ms} ms since the epoch, which timestamptz cannot hold"))
}

/// Where a run is: the SCAN cursor to go on from, and what it counted so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Checkpoint {
    pub(crate) cursor: u64,
    pub(crate) done: bool,
    pub(crate) counts: Counts,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Counts {
    pub(crate) scanned: u64,
    pub(crate) written: u64,
    pub(crate) unchanged: u64,
    pub(crate) rejected: u64,
    pub(crate) missing: u64,
    pub(crate) unmapped: u64,
    pub(crate) skipped: BTreeMap<String, u64>,
    pub(crate) entities: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds what one page counted.
    pub(crate) fn add(&mut self, page: &Counts) {
        self.scanned += page.scanned;
        self.written += page.written;
        self.unchanged += page.unchanged;
        self.rejected += page.rejected;
        self.missing += page.missing;
        self.unmapped += page.unmapped;
        for (reason, n) in &page.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
        for (entity, n) in &page.entities {
            *self.entities.entry(entity.clone()).or_default() += n;
        }
    }
}

/// A row for a table: its key, where its COPY line is in the batch's text, and in incremental
/// mode the whole Redis value and the key's expiry (epoch ms), to compare with the row's (a
/// full run drops the value once written into the line: it is most of a page's memory).
pub(crate) struct Row {
    pub(crate) source_key: String,
    pub(crate) source: Option<(Source, Option<i64>)>,
    pub(crate) line: Range<usize>,
}

/// The rows of one batch for one entity (one table, one set of columns). Each row's COPY line
/// holds its columns, then `LINE_END`.
pub(crate) struct Batch {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    pub(crate) text: Bytes,
    pub(crate) rows: Vec<Row>,
}

impl Batch {
    /// The same table, columns and text, without rows.
    pub(crate) fn clone_empty(&self) -> Batch {
        Batch {
            table: self.table.clone(),
            columns: self.columns.clone(),
            text: self.text.clone(),
            rows: Vec::new(),
        }
    }

    /// The COPY text of the batch's rows.
    fn copy_text(&self) -> Bytes {
        let lines: usize = self.rows.iter().map(|r| r.line.len()).sum();
        if lines == self.text.len() {
            return self.text.clone();
        }
        let mut text = Vec::with_capacity(lines);
        for row in &self.rows {
            text.extend_from_slice(&self.text[row.line.clone()]);
        }
        Bytes::from(text)
    }
}

pub(crate) struct Reject {
    pub(crate) source_key: String,
    pub(crate) entity: String,
    pub(crate) reason: String,
}

pub(crate) struct Loader {
    client: Client,
    run: String,
    staged: Vec<String>,
    /// Tables where a key was already there: they take the staging merge.
    conflicts: Vec<String>,
}

pub(crate) fn quote(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Why a batch was not written; `data` when PostgreSQL refused a value (SQLSTATE classes 22
/// and 23) or a row stayed locked by another page past `lock_timeout` (55P03), so that
/// row-by-row writing can find and reject the record.
#[derive(Debug)]
pub(crate) struct WriteError {
    pub(crate) message: String,
    pub(crate) data: bool,
}

fn write_err(what: &str) -> impl Fn(tokio_postgres::Error) -> WriteError + '_ {
    move |e| WriteError {
        data: e.code().is_some_and(|c| {
            c.code().starts_with("22") || c.code().starts_with("23") || c.code() == "55P03"
        }),
        message: format!("{what}: {}", describe(&e)),
    }
}

fn sql_err(what: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
    move |e| format!("{what}: {}", describe(&e))
}

impl Loader {
    /// Connects and registers the run; returns the checkpoint of an earlier attempt, if any.
    pub(crate) async fn start(
        target: &Target,
        run: &str,
        mode: &str,
    ) -> Result<(Loader, Option<Checkpoint>), String> {
        let client = target.connect(std::time::Duration::from_secs(30)).await?;
        target.check_utf8(&client).await?;
        // Pages are written side by side: a row another page holds is never waited on for long.
        client
            .batch_execute("SET lock_timeout = '30s'")
            .await
            .map_err(sql_err("cannot set the lock timeout"))?;
        client
            .execute(
                "INSERT INTO claude_data.migration_runs (run_id, mode) VALUES ($1, $2) ON CONFLICT (run_id) DO NOTHING",
                &[&run, &mode],
            )
            .await
            .map_err(sql_err("cannot register the migration run"))?;
        let row = client
            .query_one(
                "SELECT checkpoint FROM claude_data.migration_runs WHERE run_id = $1",
                &[&run],
            )
            .await
            .map_err(sql_err("cannot read the migration checkpoint"))?;
        let checkpoint: Option<Value> = row.get(0);
        let checkpoint = checkpoint
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("the migration checkpoint cannot be read: {e}"))?;
        Ok((
            Loader {
                client,
                run: run.to_string(),
                staged: Vec::new(),
                conflicts: Vec::new(),
            },
            checkpoint,
        ))
    }

    /// The `source` and expiry PostgreSQL holds for these keys (incremental mode compares
    /// with them).
    pub(crate) async fn sources(
        &self,
        table: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, Stored>, String> {
        sources(&self.client, table, keys).await
    }

    /// Writes one batch and, in the same transaction, the checkpoint that `checkpoint` gives
    /// once told the rows written (it may wait for the pages before this one to commit);
    /// returns the rows inserted or changed, and the checkpoint stored.
    pub(crate) async fn write(
        &mut self,
        batches: &BTreeMap<usize, Batch>,
        rejects: &[Reject],
        checkpoint: impl AsyncFnOnce(u64) -> Result<Option<Checkpoint>, WriteError>,
    ) -> Result<(u64, Option<Checkpoint>), WriteError> {
        for table in batches.values().map(|b| &b.table) {
            if !self.staged.contains(table) {
                let sql = format!(
                    "CREATE TEMP TABLE \"stage_{n}\" (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                    n = self.staged.len(),
                    t = quote(table)
                );
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(write_err(&format!("cannot stage rows for {table}")))?;
                self.staged.push(table.clone());
            }
        }
        let transaction = self
            .client
            .transaction()
            .await
            .map_err(write_err("cannot begin"))?;
        let mut written = 0;
        for batch in batches.values() {
            let table = &batch.table;
            if batch.rows.is_empty() {
                continue;
            }
            let stage = format!(
                "\"stage_{}\"",
                self.staged
                    .iter()
                    .position(|t| t == table)
                    .expect("staged above")
            );
            let mut columns: Vec<String> =
                batch.columns.iter().map(|c| format!("\"{c}\"")).collect();
            columns.extend(LINE_END.map(String::from));
            let list = columns.join(", ");
            let text = batch.copy_text();
            let t = quote(table);
            // A table without conflicts so far gets the rows straight in with COPY; the first
            // key that is already there (a re-run, a SCAN duplicate) sends the table to the
            // staging merge for the rest of the run.
            if !self.conflicts.contains(table) {
                transaction
                    .batch_execute("SAVEPOINT direct")
                    .await
                    .map_err(write_err("cannot begin the copy"))?;
                match copy(&transaction, &t, &list, text.clone()).await {
                    Ok(n) => {
                        transaction
                            .batch_execute("RELEASE SAVEPOINT direct")
                            .await
                            .map_err(write_err("cannot end the copy"))?;
                        written += n;
                        continue;
                    }
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        transaction
                            .batch_execute("ROLLBACK TO SAVEPOINT direct")
                            .await
                            .map_err(write_err("cannot undo the copy"))?;
                        self.conflicts.push(table.clone());
                    }
                    Err(e) => return Err(write_err(&format!("cannot copy rows into {table}"))(e)),
                }
            }
            copy(&transaction, &stage, &list, text)
                .await
                .map_err(write_err(&format!("cannot copy rows into {table}")))?;
            transaction
                .execute(
                    &format!(
                        "INSERT INTO claude_data.migration_undo (run_id, table_name, source_key, previous)
                         SELECT $1, $2, t.source_key, to_jsonb(t) FROM {t} t JOIN {stage} s ON s.source_key = t.source_key
                         WHERE (t.source IS DISTINCT FROM s.source OR t.source_expires_at IS DISTINCT FROM s.source_expires_at)
                           AND t.migrated_run IS DISTINCT FROM $1
                           AND t.migrated_run IS DISTINCT FROM '{APP_ROW}'
                         ON CONFLICT DO NOTHING"
                    ),
                    &[&self.run, table],
                )
                .await
                .map_err(write_err(&format!("cannot keep the rows {table} had")))?;
            let updates: Vec<String> = columns
                .iter()
                .filter(|c| *c != "source_key")
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            written += transaction
                .execute(
                    &format!(
                        "INSERT INTO {t} AS t ({list}) SELECT {list} FROM {stage}
                         ON CONFLICT (source_key) DO UPDATE SET {}
                         WHERE (t.source IS DISTINCT FROM EXCLUDED.source OR t.source_expires_at IS DISTINCT FROM EXCLUDED.source_expires_at)
                           AND t.migrated_run IS DISTINCT FROM '{APP_ROW}'",
                        updates.join(", ")
                    ),
                    &[],
                )
                .await
                .map_err(write_err(&format!("cannot merge rows into {table}")))?;
            transaction
                .batch_execute(&format!("TRUNCATE {stage}"))
                .await
                .map_err(write_err("cannot empty the staging table"))?;
        }
        if !rejects.is_empty() {
            let keys: Vec<&str> = rejects.iter().map(|r| r.source_key.as_str()).collect();
            let entities: Vec<&str> = rejects.iter().map(|r| r.entity.as_str()).collect();
            let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
            transaction
                .execute(
                    "INSERT INTO claude_data.migration_rejects (run_id, source_key, entity, reason)
                     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])
                     ON CONFLICT (run_id, source_key) DO UPDATE SET reason = EXCLUDED.reason, rejected_at = now()",
                    &[&self.run, &keys, &entities, &reasons],
                )
                .await
                .map_err(write_err("cannot record the rejected keys"))?;
        }
        let checkpoint = checkpoint(written).await?;
        if let Some(checkpoint) = &checkpoint {
            let value = serde_json::to_value(checkpoint).expect("a checkpoint serializes");
            transaction
                .execute(
                    "UPDATE claude_data.migration_runs SET checkpoint = $2::jsonb, counts = $2::jsonb -> 'counts' WHERE run_id = $1",
                    &[&self.run, &value],
                )
                .await
                .map_err(write_err("cannot move the checkpoint"))?;
        }
        transaction
            .commit()
            .await
            .map_err(write_err("cannot commit the batch"))?;
        Ok((written, checkpoint))
    }

    pub(crate) async fn finish(&self, status: &str) -> Result<(), String> {
        self.client
            .execute(
                "UPDATE claude_data.migration_runs SET status = $2, finished_at = now() WHERE run_id = $1",
                &[&self.run, &status],
            )
            .await
            .map(|_| ())
            .map_err(sql_err("cannot close the migration run"))
    }
}

/// A row's `source` and `source_expires_at` (epoch ms).
pub(crate) type Stored = (Value, Option<i64>);

/// The `source` and `source_expires_at` columns of the rows of `table` with these keys.
pub(crate) async fn sources(
    client: &Client,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, Stored>, String> {
    let rows = client
        .query(
            &format!(
                "SELECT source_key, source, (extract(epoch FROM source_expires_at) * 1000)::bigint
                 FROM {} WHERE source_key = ANY($1)",
                quote(table)
            ),
            &[&keys],
        )
        .await
        .map_err(sql_err("cannot read the current rows"))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

/// COPYs `text` into `table` (`list`: its columns); returns the rows copied.
async fn copy(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &str,
    list: &str,
    text: Bytes,
) -> Result<u64, tokio_postgres::Error> {
    let sink = transaction
        .copy_in(&format!("COPY {table} ({list}) FROM STDIN"))
        .await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(text).await?;
    sink.as_mut().finish().await
}

/// What undoing a run did: its rows removed, and the overwritten rows not put back because the
/// app has written the key since (that row is newer than both).
pub(crate) struct Undone {
    pub(crate) removed: u64,
    pub(crate) kept: u64,
}

/// Puts PostgreSQL back as it was before run `run`: its rows go, the rows it overwrote return,
/// except where the app has rewritten a key since.
pub(crate) async fn undo(target: &Target, run: &str, tables: &[String]) -> Result<Undone, String> {
    let mut client = target.connect(std::time::Duration::from_secs(30)).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(sql_err("cannot begin"))?;
    // A run registers itself before it writes anything: without its row (a run refused at
    // connection, or a database without the schema) there is nothing to undo.
    let registered = transaction
        .query_one(
            "SELECT to_regclass('claude_data.migration_runs') IS NOT NULL",
            &[],
        )
        .await
        .map_err(sql_err("cannot read the migration runs"))?
        .get::<_, bool>(0)
        && transaction
            .query_opt(
                "SELECT 1 FROM claude_data.migration_runs WHERE run_id = $1",
                &[&run],
            )
            .await
            .map_err(sql_err("cannot read the migration runs"))?
            .is_some();
    if !registered {
        return Ok(Undone {
            removed: 0,
            kept: 0,
        });
    }
    let (mut removed, mut kept) = (0, 0);
    for table in tables.iter().rev() {
        let t = quote(table);
        removed += transaction
            .execute(&format!("DELETE FROM {t} WHERE migrated_run = $1"), &[&run])
            .await
            .map_err(sql_err(&format!("cannot remove the rows of {table}")))?;
        let saved: i64 = transaction
            .query_one(
                "SELECT count(*) FROM claude_data.migration_undo WHERE run_id = $1 AND table_name = $2",
                &[&run, table],
            )
            .await
            .map_err(sql_err(&format!("cannot count the saved rows of {table}")))?
            .get(0);
        // After this run's rows are gone, a row that still holds a key is one the app wrote.
        let restored = transaction
            .execute(
                &format!(
                    "INSERT INTO {t} SELECT (jsonb_populate_record(NULL::{t}, u.previous)).*
                     FROM claude_data.migration_undo u WHERE u.run_id = $1 AND u.table_name = $2
                     ON CONFLICT DO NOTHING"
                ),
                &[&run, table],
            )
            .await
            .map_err(sql_err(&format!("cannot put back the rows of {table}")))?;
        kept += u64::try_from(saved).unwrap_or(0).saturating_sub(restored);
    }
    for sql in [
        "DELETE FROM claude_data.migration_undo WHERE run_id = $1",
        "DELETE FROM claude_data.migration_rejects WHERE run_id = $1",
        "UPDATE claude_data.migration_runs SET status = 'rolled_back', finished_at = now() WHERE run_id = $1",
    ] {
        transaction
            .execute(sql, &[&run])
            .await
            .map_err(sql_err("cannot close the rollback"))?;
    }
    transaction
        .commit()
        .await
        .map_err(sql_err("cannot commit the rollback"))?;
    Ok(Undone { removed, kept })
}
