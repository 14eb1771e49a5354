//! Redis connections: `redis://[:password@]host:port[/db]` (or `rediss://`), AUTH from the URL,
//! and retries while the server starts.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{Failure, retry};

/// A parsed Redis URL.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    client: redis::Client,
    /// `host:port/db`, for messages (never the password).
    pub(crate) display: String,
    /// The URL's digest: the same URL, the same connection.
    key: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        let info = client.get_connection_info();
        let display = format!("{}/{}", info.addr, info.redis.db);
        Ok(Target {
            client,
            display,
            key: crate::fingerprint::sha256(url.as_bytes()),
        })
    }

    /// Which lent connection is this URL's.
    pub(crate) fn key(&self) -> String {
        self.key.clone()
    }

    /// A failed command, named by the server it went to.
    pub(crate) fn failed(&self, e: redis::RedisError) -> String {
        format!("Redis at {}: {e}", self.display)
    }

    /// Connects and authenticates, retrying for `window` while the server is not reachable yet.
    pub(crate) async fn connect(&self, window: Duration) -> Result<MultiplexedConnection, String> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(30));
        retry(window, || async {
            self.client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| {
                    let why = e.to_string();
                    if e.kind() == redis::ErrorKind::AuthenticationFailed
                        || why.contains("WRONGPASS")
                        || why.contains("NOAUTH")
                    {
                        Failure::Final(why)
                    } else {
                        Failure::Transient(why)
                    }
                })
        })
        .await
        .map_err(|why| format!("cannot connect to Redis at {}: {why}", self.display))
    }
}
