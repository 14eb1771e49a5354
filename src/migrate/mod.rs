//! `migrate`: move Redis data into PostgreSQL by a declarative mapping. SCAN page by page,
//! pipelined reads, each page converted and written in one transaction with the checkpoint
//! (so `runner resume` goes on from the last committed page), a reject table for records that
//! do not convert, and a rollback that removes this run's rows and puts back what it
//! overwrote.

pub(crate) mod check;
mod copy;
mod load;
mod mapping;
mod source;
mod strings;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::check::Checker;
use crate::context::StepCx;
use crate::db::{postgres, redis};
use ::redis::aio::MultiplexedConnection;
use copy::CopyText;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use load::{Batch, Checkpoint, Counts, Loader, Reject, Row, WriteError};
use mapping::{Class, Mapping};
use source::Got;
use tokio::sync::oneshot;

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

/// Pages written at once, each on its own PostgreSQL connection.
const WRITERS: usize = 2;

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

    /// What the migration does, in a line for the plan.
    pub(crate) fn describe(&self) -> String {
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
        )
    }

    /// The rollback record of run `run`, journaled before the first row is written.
    pub(crate) fn written(&self, run: &str) -> Written {
        Written {
            postgres: self.postgres_url.clone(),
            run: run.to_string(),
            tables: self.mapping.tables(),
        }
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, String> {
        let mode = if self.incremental {
            "incremental"
        } else {
            "full"
        };
        let (first, resumed) = Loader::start(&self.postgres, cx.run_id, mode).await?;
        let mut idle = vec![first];
        for _ in 1..WRITERS {
            idle.push(Loader::start(&self.postgres, cx.run_id, mode).await?.0);
        }
        let conn = cx.lent.redis(&self.redis, Duration::from_secs(30)).await?;
        let total: u64 = ::redis::cmd("DBSIZE")
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| self.redis.failed(e))?;
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
        let mut last_reject = None;
        // Pages are read one after the other and written side by side, each on its own
        // connection, while the next is read. Each page's transaction moves the checkpoint
        // after the page before it has committed, so the checkpoint never runs ahead of the
        // data. A page sharing a key with a page in flight waits for it.
        let (sender, mut previous) = oneshot::channel();
        sender.send(at.clone()).ok();
        let mut writing = FuturesOrdered::new();
        // The keys of each page being written, and its COPY bytes.
        let mut in_flight: VecDeque<(HashSet<String>, u64)> = VecDeque::new();
        let mut copied = 0u64;
        let mut ready: Option<Page> = None;
        let mut reading =
            (!at.done).then(|| Box::pin(self.read_page(conn.clone(), at.cursor, cx.run_id)));
        loop {
            if let Some(page) = ready.take() {
                let keys = page.keys();
                if idle.is_empty() || in_flight.iter().any(|(k, _)| !k.is_disjoint(&keys)) {
                    ready = Some(page);
                } else {
                    if page.next != 0 {
                        reading =
                            Some(Box::pin(self.read_page(conn.clone(), page.next, cx.run_id)));
                    }
                    let (sender, receiver) = oneshot::channel();
                    let before = std::mem::replace(&mut previous, receiver);
                    let loader = idle.pop().expect("checked above");
                    let bytes = page.batches.values().map(|b| b.text.len() as u64).sum();
                    in_flight.push_back((keys, bytes));
                    writing.push_back(self.write_page(loader, page, before, sender));
                }
            }
            if ready.is_none() && reading.is_none() && writing.is_empty() {
                break;
            }
            tokio::select! {
                Some((loader, written)) = writing.next(), if !writing.is_empty() => {
                    idle.push(loader);
                    copied += in_flight.pop_front().map_or(0, |(_, bytes)| bytes);
                    let (checkpoint, reject) = written?;
                    at = checkpoint;
                    last_reject = reject.or(last_reject);
                    self.progress(cx, &at, total, (scanned_before, started), copied);
                    if at.counts.rejected > self.max_rejects {
                        let (key, reason) = last_reject.unwrap_or_default();
                        idle[0].finish("failed").await?;
                        return Err(format!(
                            "{} key(s) rejected, more than max_rejects = {}; claude_data.migration_rejects lists them with the reason (the last: `{key}`: {reason})",
                            at.counts.rejected, self.max_rejects
                        ));
                    }
                }
                page = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                    reading = None;
                    let page = page?;
                    for key in &page.unmapped {
                        if unmapped_examples.len() < 5 {
                            unmapped_examples.push(key.clone());
                        }
                    }
                    ready = Some(page);
                }
            }
        }
        idle[0].finish("completed").await?;
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

    /// Journals a committed checkpoint and shows the rate.
    fn progress(
        &self,
        cx: &StepCx<'_>,
        at: &Checkpoint,
        total: u64,
        (scanned_before, started): (u64, Instant),
        copied: u64,
    ) {
        cx.record(format!(
            "checkpoint cursor {} scanned {} written {} unchanged {} rejected {}",
            at.cursor,
            at.counts.scanned,
            at.counts.written,
            at.counts.unchanged,
            at.counts.rejected
        ));
        let rate = (at.counts.scanned - scanned_before) as f64
            / started.elapsed().as_secs_f64().max(0.001);
        let left = total.saturating_sub(at.counts.scanned) as f64 / rate.max(1.0);
        cx.meter(
            at.counts.scanned,
            total,
            format!(
                "{}/{} keys, {:.0} keys/s, ETA {}, {} copied",
                at.counts.scanned,
                total,
                rate,
                humantime::format_duration(Duration::from_secs(left as u64)),
                indicatif::HumanBytes(copied)
            ),
        );
    }

    /// One SCAN page, read and converted into COPY lines for run `run`.
    async fn read_page(
        &self,
        mut conn: MultiplexedConnection,
        cursor: u64,
        run: &str,
    ) -> Result<Page, String> {
        let (next, names) = source::scan(&mut conn, cursor, self.batch_size)
            .await
            .map_err(|e| self.redis.failed(e))?;
        // A name that is not text is matched, and rejected, by its escaped form.
        let keys: Vec<(String, bool)> = names.into_iter().map(strings::key_name).collect();
        let mut page = Page {
            next,
            counts: Counts {
                scanned: keys.len() as u64,
                ..Counts::default()
            },
            ..Page::default()
        };
        let mut wanted: Vec<(&str, usize)> = Vec::new();
        let mut seen = HashSet::new();
        for (key, text) in &keys {
            match self.mapping.classify(key) {
                Class::Skip(reason) => {
                    *page.counts.skipped.entry(reason.to_string()).or_default() += 1
                }
                Class::Unmapped => {
                    page.counts.unmapped += 1;
                    page.unmapped.push(key.clone());
                }
                Class::Entity(i) if !text => page.rejects.push(Reject {
                    source_key: key.clone(),
                    entity: self.mapping.entities[i].name.clone(),
                    reason: "the key's name (shown escaped) is not UTF-8 text without NUL, and source_key is text".into(),
                }),
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
        let got = source::read(&mut conn, &reads)
            .await
            .map_err(|e| self.redis.failed(e))?;
        let mut lines: BTreeMap<usize, (CopyText, Vec<Row>)> = BTreeMap::new();
        for ((key, i), got) in wanted.iter().zip(got) {
            let entity = &self.mapping.entities[*i];
            let reject = |reason: String| Reject {
                source_key: key.to_string(),
                entity: entity.name.clone(),
                reason,
            };
            match got {
                Got::Missing => page.counts.missing += 1,
                Got::WrongType(actual) => page.rejects.push(reject(format!(
                    "is a {actual}, the mapping says {:?}",
                    entity.kind
                ))),
                Got::Malformed(why) => page.rejects.push(reject(why)),
                Got::Value(source, expires) => {
                    let at = match expires.map(load::expiry).transpose() {
                        Ok(at) => at,
                        Err(why) => {
                            page.rejects.push(reject(why));
                            continue;
                        }
                    };
                    let (text, rows) = lines.entry(*i).or_default();
                    let start = text.0.len();
                    match self.mapping.row(entity, key, &source, text) {
                        Ok(()) => {
                            load::end_line(text, key, &source, at, run);
                            rows.push(Row {
                                source_key: key.to_string(),
                                source: self.incremental.then_some((source, expires)),
                                line: start..text.0.len(),
                            });
                        }
                        Err(why) => {
                            // Cut off the cells written before the one that failed.
                            text.0.truncate(start);
                            page.rejects.push(reject(why));
                        }
                    }
                }
            }
        }
        // An entity whose every record was rejected has no batch.
        page.batches = lines
            .into_iter()
            .filter(|(_, (_, rows))| !rows.is_empty())
            .map(|(i, (text, rows))| {
                let entity = &self.mapping.entities[i];
                *page.counts.entities.entry(entity.name.clone()).or_default() += rows.len() as u64;
                let batch = Batch {
                    table: entity.table.clone(),
                    columns: entity.columns.iter().map(|c| c.name.clone()).collect(),
                    text: text.0.into(),
                    rows,
                };
                (i, batch)
            })
            .collect();
        Ok(page)
    }

    /// Writes a page on `loader` and, once the page before it has committed (`before` gives
    /// its checkpoint), the checkpoint after it, which goes on to the next page (`after`).
    /// Returns the loader, with the checkpoint and the page's last reject.
    async fn write_page(
        &self,
        mut loader: Loader,
        page: Page,
        before: oneshot::Receiver<Checkpoint>,
        after: oneshot::Sender<Checkpoint>,
    ) -> (
        Loader,
        Result<(Checkpoint, Option<(String, String)>), String>,
    ) {
        let written = self.write_in_order(&mut loader, page, before).await;
        if let Ok((checkpoint, _)) = &written {
            after.send(checkpoint.clone()).ok();
        }
        (loader, written)
    }

    async fn write_in_order(
        &self,
        loader: &mut Loader,
        page: Page,
        before: oneshot::Receiver<Checkpoint>,
    ) -> Result<(Checkpoint, Option<(String, String)>), String> {
        let Page {
            next,
            mut counts,
            mut batches,
            mut rejects,
            unmapped: _,
        } = page;
        if self.incremental {
            for batch in batches.values_mut() {
                let keys: Vec<&str> = batch.rows.iter().map(|r| r.source_key.as_str()).collect();
                let current = loader.sources(&batch.table, &keys).await?;
                let before = batch.rows.len();
                batch
                    .rows
                    .retain(|r| match (current.get(&r.source_key), &r.source) {
                        // PEXPIRETIME is exact: a changed expiry is a change, however small.
                        (Some((now, at)), Some((source, expires))) => {
                            source != now || expires != at
                        }
                        _ => true,
                    });
                counts.unchanged += (before - batch.rows.len()) as u64;
            }
        }
        let staged: u64 = batches.values().map(|b| b.rows.len() as u64).sum();
        let mut before = Some(before);
        // The checkpoint after this page: the one before it, plus what this page counted.
        let mut checkpoint = async |counts: &Counts, written: u64| {
            let earlier = before.take().ok_or_else(|| WriteError {
                message: "the checkpoint before this page was already used".into(),
                data: false,
            })?;
            let mut at = earlier.await.map_err(|_| WriteError {
                message: "an earlier page was not written".into(),
                data: false,
            })?;
            at.counts.add(&Counts {
                written,
                unchanged: counts.unchanged + staged - written,
                rejected: counts.rejected,
                ..counts.clone()
            });
            at.cursor = next;
            at.done = next == 0;
            Ok(Some(at))
        };
        counts.rejected = rejects.len() as u64;
        let stored = match loader
            .write(&batches, &rejects, async |w| checkpoint(&counts, w).await)
            .await
        {
            Ok((_, stored)) => stored,
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
                        match loader.write(&single, &[], async |_| Ok(None)).await {
                            Ok((n, _)) => written += n,
                            Err(e) if e.data => rejects.push(Reject {
                                source_key: key,
                                entity: self.mapping.entities[i].name.clone(),
                                reason: e.message,
                            }),
                            Err(e) => return Err(e.message),
                        }
                    }
                }
                counts.rejected = rejects.len() as u64;
                loader
                    .write(&BTreeMap::new(), &rejects, async |_| {
                        checkpoint(&counts, written).await
                    })
                    .await
                    .map_err(|e| e.message)?
                    .1
            }
            Err(e) => return Err(e.message),
        };
        let stored = stored.expect("the checkpoint is always given");
        Ok((stored, rejects.pop().map(|r| (r.source_key, r.reason))))
    }
}

/// One SCAN page, read and converted, waiting to be written.
#[derive(Default)]
struct Page {
    next: u64,
    counts: Counts,
    batches: BTreeMap<usize, Batch>,
    rejects: Vec<Reject>,
    unmapped: Vec<String>,
}

impl Page {
    /// The keys the page writes or rejects.
    fn keys(&self) -> HashSet<String> {
        self.batches
            .values()
            .flat_map(|b| b.rows.iter().map(|r| r.source_key.clone()))
            .chain(self.rejects.iter().map(|r| r.source_key.clone()))
            .collect()
    }
}

impl Written {
    pub(crate) async fn restore(&self) -> Result<String, String> {
        let target = postgres::Target::parse(&self.postgres)?;
        let undone = load::undo(&target, &self.run, &self.tables).await?;
        let kept = match undone.kept {
            0 => String::new(),
            n => format!(" ({n} kept as the app rewrote them since)"),
        };
        Ok(format!(
            "removed the {} row(s) of run {} and put back the rows it overwrote{kept}",
            undone.removed, self.run
        ))
    }
}
