//! Memory and CPU of named containers, from the Docker engine's stats (the runbook's limits:
//! under 2 GB and 60 %).

use bollard::Docker;
use bollard::query_parameters::StatsOptions;
use futures_util::StreamExt;
use serde::Deserialize;
use toml::Spanned;

use super::{Check, Verdict};
use crate::check::Checker;
use crate::context::Lent;
use crate::docker::describe;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    names: Vec<Spanned<String>>,
    /// Memory above this many MB is critical (default 2048).
    memory_max_mb: Option<f64>,
    /// CPU above this percentage of one core is critical (default 60).
    cpu_max_percent: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct Containers {
    names: Vec<String>,
    memory_max_mb: f64,
    cpu_max_percent: f64,
}

impl Containers {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let names: Option<Vec<String>> = raw.names.iter().map(|n| cx.text(n)).collect();
        Some(Containers {
            names: names?,
            memory_max_mb: raw.memory_max_mb.unwrap_or(2048.0),
            cpu_max_percent: raw.cpu_max_percent.unwrap_or(60.0),
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!("memory and CPU of {}", self.names.join(", "))
    }

    pub(crate) async fn run(&self, lent: &Lent) -> Result<Vec<Check>, String> {
        let docker = lent.docker().await?;
        let mut checks = Vec::new();
        for name in &self.names {
            let (memory_mb, cpu) = usage(&docker, name).await?;
            checks.push(Check::new(
                &format!("container.{name}.memory"),
                format!("{memory_mb:.0} MB"),
                format!("below {} MB", self.memory_max_mb),
                if memory_mb >= self.memory_max_mb {
                    Verdict::Critical
                } else {
                    Verdict::Ok
                },
            ));
            checks.push(Check::new(
                &format!("container.{name}.cpu"),
                format!("{cpu:.1} %"),
                format!("below {} %", self.cpu_max_percent),
                if cpu >= self.cpu_max_percent {
                    Verdict::Critical
                } else {
                    Verdict::Ok
                },
            ));
        }
        Ok(checks)
    }
}

/// Memory in MB (without the page cache, as `docker stats` shows it) and CPU in percent.
async fn usage(docker: &Docker, name: &str) -> Result<(f64, f64), String> {
    let options = StatsOptions {
        stream: false,
        one_shot: false,
    };
    let stats = docker
        .stats(name, Some(options))
        .next()
        .await
        .ok_or_else(|| format!("the engine sent no stats for `{name}`"))?
        .map_err(|e| format!("cannot read the stats of `{name}`: {}", describe(&e)))?;
    let memory = stats.memory_stats.unwrap_or_default();
    let cache = memory
        .stats
        .as_ref()
        .and_then(|s| s.get("inactive_file").or_else(|| s.get("cache")).copied())
        .unwrap_or(0);
    let memory_mb = memory.usage.unwrap_or(0).saturating_sub(cache) as f64 / 1e6;
    let (now, before) = (
        stats.cpu_stats.unwrap_or_default(),
        stats.precpu_stats.unwrap_or_default(),
    );
    let total = |c: &bollard::models::ContainerCpuStats| {
        c.cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let cpu_delta = total(&now).saturating_sub(total(&before)) as f64;
    let system_delta = now
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(before.system_cpu_usage.unwrap_or(0)) as f64;
    let cpus = now.online_cpus.unwrap_or(1) as f64;
    let cpu = if system_delta > 0.0 {
        cpu_delta / system_delta * cpus * 100.0
    } else {
        0.0
    };
    Ok((memory_mb, cpu))
}
