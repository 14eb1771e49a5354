//! PostgreSQL's health from its statistics views: connection use, sessions waiting on locks,
//! query times (from pg_stat_statements when installed), database size, a bloat estimate,
//! replication lag (when there are replicas) and the buffer cache hit ratio.

use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::Client;
use toml::Spanned;

use super::{Check, Verdict};
use crate::check::Checker;
use crate::context::Lent;
use crate::db::postgres::{Target, describe};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    url: Spanned<String>,
    /// Share of max_connections in use that is a warning (default 0.8) / critical (0.95).
    connections_warning: Option<f64>,
    connections_critical: Option<f64>,
    /// Sessions waiting on a lock that are critical (default 5).
    waiting_critical: Option<i64>,
    /// Mean statement time that is a warning, in ms (default 100).
    mean_query_ms_warning: Option<f64>,
    /// A statement slower than this (ms, default 1000) is slow; this many a minute is a warning
    /// (default 10).
    slow_query_ms: Option<f64>,
    slow_per_minute_warning: Option<f64>,
    /// Dead share of table rows that is a warning (default 0.2).
    bloat_warning: Option<f64>,
    /// Replica replay lag that is a warning, in seconds (default 10).
    replication_lag_warning: Option<f64>,
    /// Buffer cache hit ratio below which it is a warning (default 0.9).
    cache_hit_min: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct PgHealth {
    target: Target,
    connections_warning: f64,
    connections_critical: f64,
    waiting_critical: i64,
    mean_query_ms_warning: f64,
    slow_query_ms: f64,
    slow_per_minute_warning: f64,
    bloat_warning: f64,
    replication_lag_warning: f64,
    cache_hit_min: f64,
}

impl PgHealth {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let (_, target) = cx.url(&raw.url, Target::parse)?;
        Some(PgHealth {
            target,
            connections_warning: raw.connections_warning.unwrap_or(0.8),
            connections_critical: raw.connections_critical.unwrap_or(0.95),
            waiting_critical: raw.waiting_critical.unwrap_or(5),
            mean_query_ms_warning: raw.mean_query_ms_warning.unwrap_or(100.0),
            slow_query_ms: raw.slow_query_ms.unwrap_or(1000.0),
            slow_per_minute_warning: raw.slow_per_minute_warning.unwrap_or(10.0),
            bloat_warning: raw.bloat_warning.unwrap_or(0.2),
            replication_lag_warning: raw.replication_lag_warning.unwrap_or(10.0),
            cache_hit_min: raw.cache_hit_min.unwrap_or(0.9),
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!("PostgreSQL health of {}", self.target.display)
    }

    pub(crate) async fn run(&self, lent: &Lent) -> Result<Vec<Check>, String> {
        let client = lent.postgres(&self.target, Duration::from_secs(10)).await?;
        let q = Query(&client);
        let mut checks = Vec::new();

        let used = q
            .float("SELECT count(*)::float8 FROM pg_stat_activity")
            .await?;
        let max = q
            .float("SELECT setting::float8 FROM pg_settings WHERE name = 'max_connections'")
            .await?;
        let share = used / max;
        checks.push(Check::new(
            "postgres.connections",
            format!("{used:.0} of {max:.0} ({:.1} %)", share * 100.0),
            format!(
                "warning at {:.0} %, critical at {:.0} %",
                self.connections_warning * 100.0,
                self.connections_critical * 100.0
            ),
            level(
                share >= self.connections_critical,
                share >= self.connections_warning,
            ),
        ));

        let waiting = q
            .float("SELECT count(*)::float8 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            .await? as i64;
        checks.push(Check::new(
            "postgres.waiting",
            format!("{waiting} session(s) waiting on a lock"),
            format!("critical at {}", self.waiting_critical),
            level(waiting >= self.waiting_critical, false),
        ));

        let statements = q
            .float("SELECT count(*)::float8 FROM pg_extension WHERE extname = 'pg_stat_statements'")
            .await?
            > 0.0;
        if statements {
            let mean = q
                .float("SELECT coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0)::float8 FROM pg_stat_statements")
                .await?;
            checks.push(Check::new(
                "postgres.mean_query_time",
                format!("{mean:.2} ms"),
                format!("warning at {} ms", self.mean_query_ms_warning),
                level(false, mean >= self.mean_query_ms_warning),
            ));
            let slow = q
                .float(&format!(
                    "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE mean_exec_time > {})::float8
                          / greatest(extract(epoch FROM now() - (SELECT stats_reset FROM pg_stat_statements_info)) / 60, 1)::float8",
                    self.slow_query_ms
                ))
                .await?;
            checks.push(Check::new(
                "postgres.slow_queries",
                format!("{slow:.2} a minute slower than {} ms", self.slow_query_ms),
                format!("warning at {} a minute", self.slow_per_minute_warning),
                level(false, slow >= self.slow_per_minute_warning),
            ));
        } else {
            checks.push(Check::new(
                "postgres.mean_query_time",
                "not measured: pg_stat_statements is not installed",
                "-",
                Verdict::Ok,
            ));
        }

        let size = q
            .float("SELECT pg_database_size(current_database())::float8")
            .await?;
        checks.push(Check::new(
            "postgres.database_size",
            format!("{:.1} MB", size / 1e6),
            "-",
            Verdict::Ok,
        ));

        let bloat = q
            .float("SELECT coalesce(sum(n_dead_tup)::float8 / nullif(sum(n_live_tup + n_dead_tup), 0), 0)::float8 FROM pg_stat_user_tables")
            .await?;
        checks.push(Check::new(
            "postgres.bloat",
            format!("{:.1} % dead rows", bloat * 100.0),
            format!("warning at {:.0} %", self.bloat_warning * 100.0),
            level(false, bloat >= self.bloat_warning),
        ));

        let replicas = q
            .float("SELECT count(*)::float8 FROM pg_stat_replication")
            .await?;
        if replicas > 0.0 {
            let lag = q
                .float("SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication")
                .await?;
            checks.push(Check::new(
                "postgres.replication_lag",
                format!("{lag:.1}s over {replicas:.0} replica(s)"),
                format!("warning at {}s", self.replication_lag_warning),
                level(false, lag >= self.replication_lag_warning),
            ));
        } else {
            checks.push(Check::new(
                "postgres.replication_lag",
                "no replicas",
                "-",
                Verdict::Ok,
            ));
        }

        let hit = q
            .float(
                "SELECT coalesce(sum(blks_hit)::float8 / nullif(sum(blks_hit + blks_read), 0), 1)::float8
                   FROM pg_stat_database WHERE datname = current_database()",
            )
            .await?;
        checks.push(Check::new(
            "postgres.cache_hit_ratio",
            format!("{:.1} %", hit * 100.0),
            format!("above {:.0} %", self.cache_hit_min * 100.0),
            level(false, hit < self.cache_hit_min),
        ));
        Ok(checks)
    }
}

fn level(critical: bool, warning: bool) -> Verdict {
    if critical {
        Verdict::Critical
    } else if warning {
        Verdict::Warning
    } else {
        Verdict::Ok
    }
}

struct Query<'a>(&'a Client);

impl Query<'_> {
    async fn float(&self, sql: &str) -> Result<f64, String> {
        let row = self
            .0
            .query_one(sql, &[])
            .await
            .map_err(|e| format!("PostgreSQL health query failed: {}", describe(&e)))?;
        Ok(row.get::<_, f64>(0))
    }
}
