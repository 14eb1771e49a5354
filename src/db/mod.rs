//! Connecting to PostgreSQL and Redis: URLs with TLS settings, connect timeouts, and retries
//! with backoff while a server starts.

pub(crate) mod postgres;
pub(crate) mod redis;

use std::time::{Duration, Instant};

/// Retries `attempt` with backoff (100 ms doubling to 2 s) until it succeeds, fails for a reason
/// that waiting cannot fix, or `window` has passed; the error says how long it tried.
pub(crate) async fn retry<T, F, Fut>(window: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Final(why)) => return Err(why),
            Err(Failure::Transient(why)) if started.elapsed() + delay >= window => {
                return Err(format!(
                    "{why} (tried {tries} time(s) over {:.1}s)",
                    started.elapsed().as_secs_f64()
                ));
            }
            Err(Failure::Transient(_)) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Why a connection attempt failed, and whether trying again may help.
pub(crate) enum Failure {
    /// The server may not be up yet.
    Transient(String),
    /// Waiting will not fix it (wrong password, TLS refused, bad certificate).
    Final(String),
}
