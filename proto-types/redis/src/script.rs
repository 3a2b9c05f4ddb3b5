//! [`Script`]: the one script runner. It runs a
//! [`proto_types::scripts::Invocation`] (keys and arguments built by the
//! contract crate) with `EVALSHA`, so a script's text crosses the network
//! only until Redis has it cached, and again after Redis answers
//! `NOSCRIPT` (a restart or `SCRIPT FLUSH` emptied the cache).
//!
//! [`Script::run`] is one call; [`Script::run_pipelined`] sends the call
//! and other commands in one round trip (the api's rate limit plus the
//! session read), adding `SCRIPT LOAD` to the pipeline only while the
//! script is not known to be cached. Reply parsing is the contract's; this
//! module only moves bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proto_types::scripts::Invocation;
use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Pipeline, RedisResult, ScriptInvocation};

/// A Lua script, ready to run; clones share what they learned about the
/// script cache.
#[derive(Clone)]
pub struct Script {
    script: redis::Script,
    /// Whether Redis answered this script by hash since the last `NOSCRIPT`.
    cached: Arc<AtomicBool>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("sha", &self.script.get_hash()).finish()
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// `inv`'s keys and arguments, in order, on `script`.
fn invocation<'a>(script: &'a redis::Script, inv: &Invocation) -> ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    for k in &inv.keys {
        call.key(k);
    }
    for a in &inv.args {
        call.arg(a.as_slice());
    }
    call
}

/// Runs a plain [`redis::Script`] with `inv` (what [`Script::run`] does,
/// without the cache bookkeeping): for callers that keep their own
/// `redis::Script` values, such as the worker's queue adapter.
pub async fn run<T: FromRedisValue>(
    script: &redis::Script,
    conn: &mut impl ConnectionLike,
    inv: &Invocation,
) -> RedisResult<T> {
    invocation(script, inv).invoke_async(conn).await
}

impl Script {
    /// A runner for `source` (one of the `proto_types::scripts::*::SOURCE`
    /// texts, or a binary's own script).
    pub fn new(source: &str) -> Self {
        Self { script: redis::Script::new(source), cached: Arc::default() }
    }

    /// Runs the script: `EVALSHA`, and on `NOSCRIPT` `SCRIPT LOAD` then
    /// `EVALSHA` again.
    pub async fn run<T: FromRedisValue>(&self, conn: &mut impl ConnectionLike, inv: &Invocation) -> RedisResult<T> {
        let reply = run(&self.script, conn, inv).await?;
        self.cached.store(true, Ordering::Relaxed);
        Ok(reply)
    }

    /// Runs the script and the commands `more` appends, in one pipeline;
    /// the reply is the script's, then the commands' (as `U`, e.g. one
    /// value for one command). The text rides along (`SCRIPT LOAD`) only
    /// until the script is cached; a `NOSCRIPT` sends the pipeline again
    /// with it.
    pub async fn run_pipelined<T, U>(
        &self,
        conn: &mut impl ConnectionLike,
        inv: &Invocation,
        more: impl Fn(&mut Pipeline),
    ) -> RedisResult<(T, U)>
    where
        (T, U): FromRedisValue,
    {
        let call = invocation(&self.script, inv);
        let pipe = |load: bool| {
            let mut pipe = redis::pipe();
            if load {
                pipe.load_script(&self.script).ignore();
            }
            pipe.invoke_script(&call);
            more(&mut pipe);
            pipe
        };
        let cached = self.cached.load(Ordering::Relaxed);
        let reply = match pipe(!cached).query_async(conn).await {
            Ok(r) => r,
            Err(e) if cached && is_noscript(&e) => {
                self.cached.store(false, Ordering::Relaxed);
                pipe(true).query_async(conn).await?
            }
            Err(e) => return Err(e),
        };
        self.cached.store(true, Ordering::Relaxed);
        Ok(reply)
    }
}
