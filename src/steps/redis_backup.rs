//! `redis_backup`: a logical snapshot of Redis, every key with its type, TTL and DUMP payload,
//! streamed to a file batch by batch (SCAN, then one pipeline per batch); rollback puts every
//! key back with `RESTORE ... REPLACE ABSTTL`, so a key expires when it would have.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Done, Intent, StepCx, StepError, Undo};
use crate::check::Checker;
use crate::db::redis::Target;

/// Keys per SCAN page and per pipeline.
const BATCH: usize = 1000;
const FORMAT: &str = "runner-redis-snapshot";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
}

#[derive(Debug)]
pub(crate) struct RedisBackup {
    url: String,
    target: Target,
}

/// A snapshot file and where it goes back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Snapshot {
    url: String,
    file: PathBuf,
}

/// One line of the snapshot file.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Header {
        format: String,
        version: u32,
        taken_at_ms: u64,
    },
    Key {
        /// The key and its DUMP payload, base64.
        key: String,
        #[serde(rename = "type")]
        kind: String,
        /// Absolute expiry in epoch ms; 0: no TTL.
        expire_at_ms: u64,
        dump: String,
    },
    End {
        keys: u64,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisBackup {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let (url, target) = cx.url(&raw.url, Target::parse)?;
        Some(RedisBackup { url, target })
    }

    pub(crate) fn plan(&self) -> Intent {
        Intent::new(
            format!(
                "snapshot every key of Redis at {} into the run's backup dir",
                self.target.display
            ),
            false,
        )
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<Done, StepError> {
        let mut conn = cx.lent.redis(&self.target, Duration::from_secs(30)).await?;
        crate::fs::create_private_dir(&cx.backup_dir)
            .map_err(StepError::io("cannot create the backup dir".into()))?;
        let path = cx.backup_dir.join("redis.jsonl");
        let file = crate::fs::create_private_file(&path)
            .map_err(StepError::io(format!("cannot create `{}`", path.display())))?;
        let mut out = BufWriter::new(file);
        let io = |e: std::io::Error| StepError::from(format!("cannot write the snapshot: {e}"));
        let redis_err = |e: redis::RedisError| StepError::from(self.target.failed(e));
        write_line(
            &mut out,
            &Line::Header {
                format: FORMAT.into(),
                version: 1,
                taken_at_ms: now_ms(),
            },
        )
        .map_err(io)?;
        let mut cursor: u64 = 0;
        let mut count: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("TYPE")
                        .arg(key)
                        .cmd("PTTL")
                        .arg(key)
                        .cmd("DUMP")
                        .arg(key);
                }
                let values: Vec<redis::Value> =
                    pipe.query_async(&mut conn).await.map_err(redis_err)?;
                let now = now_ms();
                for (key, triple) in keys.iter().zip(values.chunks(3)) {
                    let kind: String = redis::from_redis_value(&triple[0]).map_err(redis_err)?;
                    let pttl: i64 = redis::from_redis_value(&triple[1]).map_err(redis_err)?;
                    let dump: Option<Vec<u8>> =
                        redis::from_redis_value(&triple[2]).map_err(redis_err)?;
                    // A key that expired or was deleted between SCAN and DUMP is not there to save.
                    let (Some(dump), false) = (dump, kind == "none" || pttl == -2) else {
                        continue;
                    };
                    let expire_at_ms = if pttl > 0 { now + pttl as u64 } else { 0 };
                    write_line(
                        &mut out,
                        &Line::Key {
                            key: B64.encode(key),
                            kind,
                            expire_at_ms,
                            dump: B64.encode(dump),
                        },
                    )
                    .map_err(io)?;
                    count += 1;
                }
                cx.say(format!("{count} keys saved"));
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        write_line(&mut out, &Line::End { keys: count }).map_err(io)?;
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        Ok(Done {
            summary: format!("saved {count} key(s) of Redis at {}", self.target.display),
            undo: Some(Undo::RedisRestore(Snapshot {
                url: self.url.clone(),
                file: path,
            })),
            figures: None,
        })
    }
}

fn write_line(out: &mut impl Write, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

impl Snapshot {
    pub(crate) async fn restore(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let target = Target::parse(&self.url)?;
        let mut conn = cx.lent.redis(&target, Duration::from_secs(30)).await?;
        let file = std::fs::File::open(&self.file).map_err(StepError::io(format!(
            "cannot open `{}`",
            self.file.display()
        )))?;
        let mut pipe = redis::pipe();
        let (mut queued, mut restored, mut expired, mut complete) = (0usize, 0u64, 0u64, false);
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(StepError::io("cannot read the snapshot".into()))?;
            let parsed: Line = serde_json::from_str(&line)
                .map_err(|e| StepError::from(format!("the snapshot is damaged: {e}")))?;
            match parsed {
                Line::Header { format, .. } if format == FORMAT => {}
                Line::Header { format, .. } => {
                    return Err(StepError::from(format!(
                        "`{format}` is not a Redis snapshot"
                    )));
                }
                Line::End { .. } => complete = true,
                Line::Key {
                    key,
                    expire_at_ms,
                    dump,
                    ..
                } => {
                    if expire_at_ms != 0 && expire_at_ms <= now_ms() {
                        expired += 1;
                        continue;
                    }
                    let decode = |s: &str| {
                        B64.decode(s)
                            .map_err(|e| StepError::from(format!("the snapshot is damaged: {e}")))
                    };
                    let cmd = pipe
                        .cmd("RESTORE")
                        .arg(decode(&key)?)
                        .arg(expire_at_ms)
                        .arg(decode(&dump)?)
                        .arg("REPLACE");
                    if expire_at_ms != 0 {
                        cmd.arg("ABSTTL");
                    }
                    cmd.ignore();
                    queued += 1;
                    if queued == BATCH {
                        pipe.query_async::<()>(&mut conn)
                            .await
                            .map_err(|e| StepError::from(format!("RESTORE failed: {e}")))?;
                        restored += queued as u64;
                        queued = 0;
                        pipe = redis::pipe();
                        cx.say(format!("{restored} keys restored"));
                    }
                }
            }
        }
        if queued > 0 {
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| StepError::from(format!("RESTORE failed: {e}")))?;
            restored += queued as u64;
        }
        if !complete {
            return Err(StepError::from(format!(
                "the snapshot `{}` is truncated; restored the {restored} key(s) it holds",
                self.file.display()
            )));
        }
        Ok(format!(
            "restored {restored} key(s), {expired} had expired since"
        ))
    }
}
