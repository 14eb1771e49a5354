//! Connecting to PostgreSQL and Redis: URLs with TLS settings, connect timeouts, and retries
//! with backoff while a server starts.

pub(crate) mod postgres;
pub(crate) mod redis;

use std::time::Duration;

use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connecting_retries_with_backoff_on_tokio_time_until_the_window_ends() {
        // A port nothing listens on: every attempt is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target =
            postgres::Target::parse(&format!("postgres://u:p@127.0.0.1:{port}/db")).unwrap();
        let wall = std::time::Instant::now();
        let error = target.connect(Duration::from_secs(30)).await.unwrap_err();
        // Waits of 0.1, 0.2, 0.4, 0.8 and 1.6 s, then 2 s each, while one more fits in 30 s.
        assert!(error.ends_with("(tried 19 time(s) over 29.1s)"), "{error}");
        assert!(
            wall.elapsed() < Duration::from_secs(20),
            "{:?}",
            wall.elapsed()
        );
    }
}
