//! The `traffic` check: the requests of the access log's last window as of the step's start
//! (the same gate as monitor's, at one moment), going on reading for up to `wait` while the
//! window is too thin for a verdict.

use tokio::time::Instant;

use super::Check;
use crate::steps::{StepCx, StepError};
use crate::traffic::{Sample, Traffic};

pub(super) fn describe(traffic: &Traffic) -> String {
    let wait = traffic
        .wait
        .map(|w| {
            format!(
                ", waiting up to {} for enough",
                humantime::format_duration(w)
            )
        })
        .unwrap_or_default();
    format!("traffic: {}{wait}", traffic.describe())
}

/// The checks of the first window with enough requests, and that window's figures.
pub(super) async fn run(
    traffic: &Traffic,
    cx: &StepCx<'_>,
) -> Result<(Vec<Check>, Sample), StepError> {
    let started = Instant::now();
    let mut watch = traffic.watch_recent(cx.workdir);
    loop {
        let look = watch.look_now().map_err(|why| traffic.inconclusive(why))?;
        cx.record(format!(
            "traffic measured: {}",
            serde_json::to_string(&look.sample).expect("figures serialize")
        ));
        if let Some(findings) = look.findings {
            let checks = findings
                .into_iter()
                .map(|f| Check::new(f.metric, f.value, f.threshold, f.verdict))
                .collect();
            return Ok((checks, look.sample));
        }
        if started.elapsed() + traffic.interval > traffic.wait.unwrap_or_default() {
            return Err(traffic.inconclusive(watch.too_thin()).into());
        }
        tokio::time::sleep(traffic.interval).await;
    }
}
