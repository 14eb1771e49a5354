//! Verification of a migration: per entity, the keys Redis has against the rows PostgreSQL
//! has, then the content: every key (or a seeded sample of them) read from Redis again and
//! compared with its row's `source` (by the rule the migration wrote it: bytes that are not
//! text as `{"$base64": ...}`), and the key's expiry with its row's `source_expires_at`.
//! Every mismatch is listed.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::mapping::{Class, Mapping};
use super::source::{self, Got};
use super::strings;
use crate::check::Checker;
use crate::context::Lent;
use crate::db::{postgres, redis};

/// How many times a key that differs is read again before it counts as a mismatch.
const RECHECKS: usize = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    redis: Spanned<String>,
    postgres: Spanned<String>,
    mapping: Spanned<String>,
    /// Compare this many keys, chosen by `seed` (default: every key).
    sample: Option<usize>,
    seed: Option<u64>,
    /// How far a row's `source_expires_at` may be from the key's expiry (default 2s).
    expiry_tolerance: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct MigrationCheck {
    redis: redis::Target,
    postgres: postgres::Target,
    mapping: Mapping,
    sample: Option<usize>,
    seed: u64,
    expiry_tolerance: Duration,
}

/// What the comparison found, per entity and overall.
pub(crate) struct Found {
    /// Entity name, keys in Redis, rows in PostgreSQL.
    pub(crate) counts: Vec<(String, u64, u64)>,
    pub(crate) compared: usize,
    pub(crate) mismatches: Vec<String>,
}

impl MigrationCheck {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let redis = cx.url(&raw.redis, redis::Target::parse);
        let postgres = cx.url(&raw.postgres, postgres::Target::parse);
        let expiry_tolerance = match &raw.expiry_tolerance {
            Some(field) => cx.duration(field),
            None => Some(Duration::from_secs(2)),
        };
        let (_, mapping) = Mapping::load(&raw.mapping, cx)?;
        Some(MigrationCheck {
            redis: redis?.1,
            postgres: postgres?.1,
            mapping,
            sample: raw.sample,
            seed: raw.seed.unwrap_or(1),
            expiry_tolerance: expiry_tolerance?,
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "migration from Redis at {} to PostgreSQL at {}: keys against rows per entity, then {} (expiries within {})",
            self.redis.display,
            self.postgres.display,
            match self.sample {
                Some(n) => format!("the content of {n} keys (seed {})", self.seed),
                None => "the content of every key".into(),
            },
            humantime::format_duration(self.expiry_tolerance)
        )
    }

    pub(crate) async fn run(&self, lent: &Lent) -> Result<Found, String> {
        let mut conn = lent.redis(&self.redis, Duration::from_secs(30)).await?;
        let client = lent
            .postgres(&self.postgres, Duration::from_secs(30))
            .await?;
        // Redis: every key of every entity.
        let mut in_redis: Vec<(String, usize)> = Vec::new();
        let mut seen = HashSet::new();
        let mut mismatches = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = source::scan(&mut conn, cursor, 1000)
                .await
                .map_err(|e| self.redis.failed(e))?;
            for name in keys {
                let (key, text) = strings::key_name(name);
                if let Class::Entity(i) = self.mapping.classify(&key)
                    && seen.insert(key.clone())
                {
                    if text {
                        in_redis.push((key, i));
                    } else {
                        mismatches.push(format!(
                            "`{key}`: the key's name is not UTF-8 text without NUL, so no row can hold it"
                        ));
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // PostgreSQL: every row's key, by the entity its key belongs to.
        let mut rows: BTreeMap<usize, u64> = BTreeMap::new();
        for table in self.mapping.tables() {
            let keys = client
                .query(
                    &format!("SELECT source_key FROM {}", super::load::quote(&table)),
                    &[],
                )
                .await
                .map_err(|e| format!("cannot read {table}: {}", postgres::describe(&e)))?;
            for row in keys {
                let key: String = row.get(0);
                match self.mapping.classify(&key) {
                    Class::Entity(i) => *rows.entry(i).or_default() += 1,
                    _ => mismatches.push(format!(
                        "{table}: row `{key}` matches no entity of the mapping"
                    )),
                }
                if !seen.contains(&key) {
                    mismatches.push(format!("{table}: row `{key}` has no key in Redis"));
                }
            }
        }
        let mut counts = Vec::new();
        for (i, entity) in self.mapping.entities.iter().enumerate() {
            let keys = in_redis.iter().filter(|(_, e)| *e == i).count() as u64;
            counts.push((
                entity.name.clone(),
                keys,
                rows.get(&i).copied().unwrap_or(0),
            ));
        }
        // Content: every key, or a seeded sample.
        let chosen: Vec<&(String, usize)> = match self.sample {
            Some(n) if n < in_redis.len() => {
                let mut ranked: Vec<(u64, &(String, usize))> = in_redis
                    .iter()
                    .map(|k| (seeded(self.seed, &k.0), k))
                    .collect();
                ranked.sort_by_key(|(rank, _)| *rank);
                ranked.into_iter().take(n).map(|(_, k)| k).collect()
            }
            _ => in_redis.iter().collect(),
        };
        let mut differ = Vec::new();
        for page in chosen.chunks(1000) {
            differ.extend(self.compare(&mut conn, &client, page).await?);
        }
        // While the app dual-writes, a key can change between its read and its row's: a key
        // that differs is read again, and only a difference that stays is a mismatch.
        for _ in 0..RECHECKS {
            if differ.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let keys: Vec<&(String, usize)> = differ.iter().map(|(k, _)| *k).collect();
            differ = self.compare(&mut conn, &client, &keys).await?;
        }
        mismatches.extend(differ.into_iter().map(|(_, why)| why));
        Ok(Found {
            counts,
            compared: chosen.len(),
            mismatches,
        })
    }

    /// Compares these keys' values with their rows; returns the keys that differ, and how.
    async fn compare<'k>(
        &self,
        conn: &mut ::redis::aio::MultiplexedConnection,
        client: &tokio_postgres::Client,
        page: &[&'k (String, usize)],
    ) -> Result<Vec<(&'k (String, usize), String)>, String> {
        let reads: Vec<(&str, source::Read)> = page
            .iter()
            .map(|(k, i)| (k.as_str(), self.mapping.entities[*i].kind))
            .collect();
        let got = source::read(conn, &reads)
            .await
            .map_err(|e| self.redis.failed(e))?;
        let mut by_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (k, i) in page.iter() {
            by_table
                .entry(self.mapping.entities[*i].table.as_str())
                .or_default()
                .push(k.as_str());
        }
        let mut stored = std::collections::HashMap::new();
        for (table, keys) in by_table {
            stored.extend(super::load::sources(client, table, &keys).await?);
        }
        let mut differ = Vec::new();
        for (entry, got) in page.iter().zip(got) {
            let key = &entry.0;
            let why = match (got, stored.get(key)) {
                (Got::Value(value, expires), Some((source, at))) if value == *source => {
                    let tolerance = self.expiry_tolerance.as_millis();
                    match (expires, at) {
                        (None, None) => continue,
                        (Some(a), Some(b)) if u128::from(a.abs_diff(*b)) <= tolerance => continue,
                        _ => format!(
                            "`{key}`: the row's source_expires_at ({}) is not the key's expiry ({})",
                            shown(*at),
                            shown(expires)
                        ),
                    }
                }
                (Got::Missing, _) => continue,
                (Got::Value(..), Some(_)) => {
                    format!("`{key}`: the row's source differs from Redis")
                }
                (Got::Value(..), None) => format!("`{key}`: no row in PostgreSQL"),
                (Got::WrongType(t), _) => format!("`{key}`: is a {t} in Redis"),
                (Got::Malformed(why), _) => format!("`{key}`: {why}"),
            };
            differ.push((*entry, why));
        }
        Ok(differ)
    }
}

/// An expiry (epoch ms) for a message.
fn shown(expires: Option<i64>) -> String {
    match expires.map(super::load::expiry) {
        None => "none".into(),
        Some(Ok(at)) => at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        Some(Err(_)) => format!("{} ms since the epoch", expires.unwrap_or_default()),
    }
}

/// A stable pseudo-random rank of `key` for `seed` (FNV-1a), so a sample can be repeated.
fn seeded(seed: u64, key: &str) -> u64 {
    let mut hash = 0xcbf29ce484222325u64 ^ seed;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}
