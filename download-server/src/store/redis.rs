use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ConnectionInfo, FromRedisValue};
use shared::Jti;

use super::{Burn, BurnStore, StoreError};

/// Burned ids in Redis, shared by every download server pointed at it: `burn:<jti>` keys that
/// expire when their token can no longer verify, so memory is bounded by issuance rate times
/// token lifetime (see docs/DEPLOY.md for the measured size).
///
/// The connection is made on first use and remade after any failure, so a server starts while
/// Redis is down (unready, refusing downloads with 503) and recovers on its own when Redis is
/// back. Every command is bounded by the `--burn-store-timeout-ms` deadline: past it the
/// caller gets a [`StoreError`] and must fail closed.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    timeout: Duration,
}

impl RedisStore {
    /// A store for `info` that has not connected yet (no I/O happens here).
    pub fn new(info: ConnectionInfo, timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(info).map_err(|e| StoreError(e.to_string()))?;
        // Reconnection attempts back off from 50 ms to at most 1 s, so a Redis that comes back
        // is found again within about a second; callers never wait on them beyond `timeout`.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(10);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(RedisStore { conn, timeout })
    }

    /// Starts connecting now, so the first download does not pay for it. A Redis that is down
    /// is only logged: downloads are refused (503) until it answers.
    pub fn connect_in_background(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.ready().await {
                tracing::warn!(error = %e, "redis burn store not reachable yet");
            }
        });
    }

    /// Runs one command within the deadline. A command that times out may still have run on
    /// the server: the caller treats it as unknown and serves nothing.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError(e.to_string())),
            Err(_) => Err(StoreError(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// Logs a failure against the id it concerns (never the token).
fn warn(jti: &Jti) -> impl FnOnce(&StoreError) + '_ {
    move |e| tracing::warn!(jti = jti.as_str(), error = %e, "redis burn store failed")
}

fn key(jti: &Jti) -> String {
    format!("burn:{}", jti.as_str())
}

impl BurnStore for RedisStore {
    async fn burn(&self, jti: &Jti, keep_until: u64) -> Result<Burn, StoreError> {
        // One command, so Redis decides the winner: `NX` sets only if absent. The token still
        // verifies throughout second `keep_until`, so the key outlives that whole second.
        let expires_at_ms = keep_until.saturating_add(1).saturating_mul(1000);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(jti))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at_ms);
        let set: Option<String> = self.run(&cmd).await.inspect_err(warn(jti))?;
        Ok(match set {
            Some(_) => Burn::Fresh,
            None => Burn::AlreadyUsed,
        })
    }

    async fn is_burned(&self, jti: &Jti) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(key(jti));
        let n: u64 = self.run(&cmd).await.inspect_err(warn(jti))?;
        Ok(n > 0)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        // Logged by `/readyz`, which is the only caller.
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn forgets_on_restart(&self) -> bool {
        false
    }
}
