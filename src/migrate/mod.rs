//! `migrate`: move Redis data into PostgreSQL by a declarative mapping. SCAN page by page,
//! pipelined reads, each page converted and written in one transaction with the checkpoint
//! (so `runner resume` goes on from the last committed page), a reject table for records that
//! do not convert, and a rollback that removes this run's rows and puts back what it
//! overwrote.

pub(crate) mod check;
mod load;
mod mapping;
mod source;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::db::{postgres, redis};
use crate::playbook::Checker;
use crate::steps::{Intent, StepCx, StepError, Undo};
use ::redis::aio::MultiplexedConnection;
use load::{Batch, Checkpoint, Loader, Reject, Row};
use mapping::{Class, Mapping};
use source::Got;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    redis: Spanned<String>,
    postgres: Spanned<String>,
    mapping: Spanned<String>,
    batch_size: Option<usize>,
    max_rejects: Option<u64>,
    mode: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct Migrate {
    redis: redis::Target,
    postgres_url: String,
    postgres: postgres::Target,
    mapping_file: String,
    mapping: Mapping,
    batch_size: usize,
    max_rejects: u64,
    incremental: bool,
}

/// What the rollback of a migration needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Written {
    postgres: String,
    run: String,
    tables: Vec<String>,
}

impl Migrate {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let redis = cx.url(&raw.redis, redis::Target::parse);
        let postgres = cx.url(&raw.postgres, postgres::Target::parse);
        let (mapping_file, mapping) = Mapping::load(&raw.mapping, cx)?;
        let incremental = match &raw.mode {
            None => false,
            Some(m) if m.get_ref() == "full" => false,
            Some(m) if m.get_ref() == "incremental" => true,
            Some(m) => {
                cx.problem(
                    m.span(),
                    format!("mode `{}` is not full or incremental", m.get_ref()),
                    "full | incremental",
                );
                return None;
            }
        };
        let (postgres_url, postgres) = postgres?;
        Some(Migrate {
            redis: redis?.1,
            postgres_url,
            postgres,
            mapping_file,
            mapping,
            batch_size: raw.batch_size.unwrap_or(1000).clamp(10, 100_000),
            max_rejects: raw.max_rejects.unwrap_or(0),
            incremental,
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        Intent::new(
            format!(
                "{} migration of Redis at {} into PostgreSQL at {} by `{}` ({} entities into {}), {} keys a batch, at most {} rejects",
                if self.incremental {
                    "incremental"
                } else {
                    "full"
                },
                self.redis.display,
                self.postgres.display,
                self.mapping_file,
                self.mapping.entities.len(),
                self.mapping.tables().join(", "),
                self.batch_size,
                self.max_rejects
            ),
            true,
        )
    }

    /// The rollback record, journaled before the first row is written.
    pub(crate) fn prepare(&self, cx: &StepCx<'_>) -> Undo {
        Undo::Migration(Written {
            postgres: self.postgres_url.clone(),
            run: cx.run_id.to_string(),
            tables: self.mapping.tables(),
        })
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let mode = if self.incremental {
            "incremental"
        } else {
            "full"
        };
        let (mut loader, resumed) = Loader::start(&self.postgres, cx.run_id, mode).await?;
        let mut conn = self.redis.connect(Duration::from_secs(30)).await?;
        let total: u64 = ::redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err(e))?;
        let mut at = resumed.clone().unwrap_or_default();
        if resumed.is_some() {
            cx.record(format!(
                "resumed from the checkpoint: {} keys already scanned, {} rows written",
                at.counts.scanned, at.counts.written
            ));
        }
        let started = Instant::now();
        let scanned_before = at.counts.scanned;
        let mut unmapped_examples: Vec<String> = Vec::new();
        // Page N is written while page N+1 is read.
        let mut page = if at.done {
            None
        } else {
            Some(self.read_page(&mut conn, at.cursor).await?)
        };
        while let Some(current) = page.take() {
            let next = (current.next != 0).then_some(current.next);
            for key in &current.unmapped {
                if unmapped_examples.len() < 5 {
                    unmapped_examples.push(key.clone());
                }
            }
            let (written, read) =
                tokio::join!(self.write_page(&mut loader, current, &mut at, cx), async {
                    match next {
                        Some(cursor) => Some(self.read_page(&mut conn, cursor).await),
                        None => None,
                    }
                });
            written?;
            page = read.transpose()?;
            let rate = (at.counts.scanned - scanned_before) as f64
                / started.elapsed().as_secs_f64().max(0.001);
            let left = total.saturating_sub(at.counts.scanned) as f64 / rate.max(1.0);
            cx.say(format!(
                "{}/{} keys, {:.0} keys/s, ETA {}",
                at.counts.scanned,
                total,
                rate,
                humantime::format_duration(Duration::from_secs(left as u64))
            ));
        }
        loader.finish("completed").await?;
        if at.counts.unmapped > 0 {
            cx.warn(format!(
                "{} key(s) match no entity and no skip rule, so they were not migrated (for example {})",
                at.counts.unmapped,
                unmapped_examples.join(", ")
            ));
        }
        let skipped: u64 = at.counts.skipped.values().sum();
        Ok(format!(
            "{} keys scanned: {} rows written, {} unchanged, {} skipped, {} unmapped, {} rejected, {} gone before read, in {:.1}s",
            at.counts.scanned,
            at.counts.written,
            at.counts.unchanged,
            skipped,
            at.counts.unmapped,
            at.counts.rejected,
            at.counts.missing,
            started.elapsed().as_secs_f64()
        ))
    }

    fn redis_err(&self, e: ::redis::RedisError) -> String {
        format!("Redis at {}: {e}", self.redis.display)
    }

    /// One SCAN page, read and converted.
    async fn read_page(
        &self,
        conn: &mut MultiplexedConnection,
        cursor: u64,
    ) -> Result<Page, String> {
        let (next, keys) = source::scan(conn, cursor, self.batch_size)
            .await
            .map_err(|e| self.redis_err(e))?;
        let mut page = Page {
            next,
            scanned: keys.len() as u64,
            ..Page::default()
        };
        let mut wanted: Vec<(&str, usize)> = Vec::new();
        let mut seen = HashSet::new();
        for key in &keys {
            match self.mapping.classify(key) {
                Class::Skip(reason) => *page.skipped.entry(reason.to_string()).or_default() += 1,
                Class::Unmapped => page.unmapped.push(key.clone()),
                Class::Entity(i) => {
                    if seen.insert(key.as_str()) {
                        wanted.push((key.as_str(), i));
                    }
                }
            }
        }
        let reads: Vec<(&str, source::Read)> = wanted
            .iter()
            .map(|(k, i)| (*k, self.mapping.entities[*i].kind))
            .collect();
        let got = source::read(conn, &reads)
            .await
            .map_err(|e| self.redis_err(e))?;
        for ((key, i), got) in wanted.iter().zip(got) {
            let entity = &self.mapping.entities[*i];
            let reject = |reason: String| Reject {
                source_key: key.to_string(),
                entity: entity.name.clone(),
                reason,
            };
            match got {
                Got::Missing => page.missing += 1,
                Got::WrongType(actual) => page.rejects.push(reject(format!(
                    "is a {actual}, the mapping says {:?}",
                    entity.kind
                ))),
                Got::Malformed(why) => page.rejects.push(reject(why)),
                Got::Value(value) => match self.mapping.row(entity, key, &value) {
                    Ok(cells) => {
                        *page.entities.entry(entity.name.clone()).or_default() += 1;
                        page.batches
                            .entry(*i)
                            .or_insert_with(|| Batch {
                                table: entity.table.clone(),
                                columns: entity.columns.iter().map(|c| c.name.clone()).collect(),
                                rows: Vec::new(),
                            })
                            .rows
                            .push(Row {
                                source_key: key.to_string(),
                                cells,
                                source: value,
                            });
                    }
                    Err(why) => page.rejects.push(reject(why)),
                },
            }
        }
        Ok(page)
    }

    /// Writes a page and the checkpoint after it; fails past `max_rejects`.
    async fn write_page(
        &self,
        loader: &mut Loader,
        page: Page,
        at: &mut Checkpoint,
        cx: &StepCx<'_>,
    ) -> Result<(), StepError> {
        let Page {
            next,
            scanned,
            mut batches,
            mut rejects,
            skipped,
            unmapped,
            missing,
            entities,
        } = page;
        at.counts.scanned += scanned;
        at.counts.missing += missing;
        at.counts.unmapped += unmapped.len() as u64;
        for (reason, n) in skipped {
            *at.counts.skipped.entry(reason).or_default() += n;
        }
        for (entity, n) in entities {
            *at.counts.entities.entry(entity).or_default() += n;
        }
        if self.incremental {
            for batch in batches.values_mut() {
                let keys: Vec<&str> = batch.rows.iter().map(|r| r.source_key.as_str()).collect();
                let current = loader.sources(&batch.table, &keys).await?;
                let before = batch.rows.len();
                batch
                    .rows
                    .retain(|r| current.get(&r.source_key) != Some(&r.source));
                at.counts.unchanged += (before - batch.rows.len()) as u64;
            }
        }
        let staged: u64 = batches.values().map(|b| b.rows.len() as u64).sum();
        at.counts.rejected += rejects.len() as u64;
        at.cursor = next;
        at.done = next == 0;
        let written = match loader.write(&batches, &rejects, Some(at)).await {
            Ok(n) => n,
            Err(e) if e.data => {
                // A value PostgreSQL refuses: write row by row to reject only that record.
                let mut written = 0;
                for (i, mut batch) in batches {
                    let rows = std::mem::take(&mut batch.rows);
                    for row in rows {
                        let key = row.source_key.clone();
                        let single = BTreeMap::from([(
                            i,
                            Batch {
                                rows: vec![row],
                                ..batch.clone_empty()
                            },
                        )]);
                        match loader.write(&single, &[], None).await {
                            Ok(n) => written += n,
                            Err(e) if e.data => {
                                at.counts.rejected += 1;
                                rejects.push(Reject {
                                    source_key: key,
                                    entity: self.mapping.entities[i].name.clone(),
                                    reason: e.message,
                                });
                            }
                            Err(e) => return Err(e.message.into()),
                        }
                    }
                }
                loader
                    .write(&BTreeMap::new(), &rejects, Some(at))
                    .await
                    .map_err(|e| e.message)?;
                written
            }
            Err(e) => return Err(e.message.into()),
        };
        at.counts.written += written;
        at.counts.unchanged += staged - written;
        cx.record(format!(
            "checkpoint cursor {} scanned {} written {} unchanged {} rejected {}",
            at.cursor,
            at.counts.scanned,
            at.counts.written,
            at.counts.unchanged,
            at.counts.rejected
        ));
        if at.counts.rejected > self.max_rejects {
            loader.finish("failed").await?;
            return Err(format!(
                "{} key(s) rejected, more than max_rejects = {}; claude_data.migration_rejects lists them with the reason (the last: `{}`: {})",
                at.counts.rejected,
                self.max_rejects,
                rejects.last().map_or("", |r| r.source_key.as_str()),
                rejects.last().map_or("", |r| r.reason.as_str())
            )
            .into());
        }
        Ok(())
    }
}

/// One SCAN page, read and converted, waiting to be written.
#[derive(Default)]
struct Page {
    next: u64,
    scanned: u64,
    batches: BTreeMap<usize, Batch>,
    rejects: Vec<Reject>,
    skipped: BTreeMap<String, u64>,
    unmapped: Vec<String>,
    missing: u64,
    entities: BTreeMap<String, u64>,
}

impl Written {
    pub(crate) async fn restore(&self) -> Result<String, StepError> {
        let target = postgres::Target::parse(&self.postgres)?;
        let removed = load::undo(&target, &self.run, &self.tables).await?;
        Ok(format!(
            "removed the {removed} row(s) of run {} and put back the rows it overwrote",
            self.run
        ))
    }
}
