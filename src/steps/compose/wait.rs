//! Waiting for a service: healthy, running, or (for a dependency that must complete) exited 0.

use std::time::Duration;

use tokio::time::Instant;

use bollard::Docker;
use bollard::models::HealthStatusEnum;

use super::engine::find;
use crate::docker::tail_logs;
use crate::steps::StepCx;

/// Waits until the container is healthy (or running, without a healthcheck); fails at once if
/// it exits or its health check calls it unhealthy (as `docker compose up --wait` does), and
/// at `deadline`, each time with the last health output and log lines. With `completes` (a
/// dependency's `service_completed_successfully`) it waits for an exit with code 0.
pub(crate) async fn wait_ready(
    docker: &Docker,
    service: &str,
    container: &str,
    deadline: Instant,
    completes: bool,
    cx: &StepCx<'_>,
) -> Result<(), String> {
    let mut last_status = String::new();
    loop {
        let c = find(docker, container)
            .await?
            .ok_or_else(|| format!("service `{service}`: container `{container}` disappeared"))?;
        let state = c.state.clone().unwrap_or_default();
        let health = state.health.clone().unwrap_or_default();
        let has_check = !matches!(
            health.status,
            None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY)
        );
        let running = state.running.unwrap_or(false) && !state.restarting.unwrap_or(false);
        let exited = !running
            && state.restarting != Some(true)
            && state.status.is_some_and(|s| s.to_string() == "exited");
        if completes && exited && state.exit_code == Some(0) {
            return Ok(());
        }
        if !completes && running && (!has_check || health.status == Some(HealthStatusEnum::HEALTHY))
        {
            return Ok(());
        }
        let status = match (&health.status, running) {
            (_, false) => "not running".to_string(),
            (Some(s), true) => s.to_string(),
            (None, true) => "running".to_string(),
        };
        if status != last_status {
            cx.say(format!("{service}: {status}"));
            last_status = status;
        }
        if exited {
            return Err(format!(
                "service `{service}`: container `{container}` exited with code {}{}",
                state.exit_code.unwrap_or_default(),
                logs_part(docker, container).await
            ));
        }
        let probe = health
            .log
            .and_then(|l| l.last().cloned())
            .and_then(|r| r.output)
            .map(|o| format!("; last health check said: {}", o.trim()))
            .unwrap_or_default();
        if !completes && running && health.status == Some(HealthStatusEnum::UNHEALTHY) {
            return Err(format!(
                "service `{service}` is unhealthy: its health check failed {} time(s) in a row{probe}{}",
                health.failing_streak.unwrap_or_default(),
                logs_part(docker, container).await
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "service `{service}` did not {} in time (it is {last_status}){probe}{}",
                match (completes, has_check) {
                    (true, _) => "complete",
                    (false, true) => "become healthy",
                    (false, false) => "start running",
                },
                logs_part(docker, container).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn logs_part(docker: &Docker, container: &str) -> String {
    let logs = tail_logs(docker, container, 10).await;
    if logs.is_empty() {
        String::new()
    } else {
        format!("; its last log lines:\n{logs}")
    }
}
