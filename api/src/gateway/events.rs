//! The one subscription to the events stream per gateway process: a task
//! reads `{sm}:events` with `XREAD BLOCK` on its own connection and fans
//! each [`Event`] out on a broadcast channel. Requests held for a wake
//! subscribe to the channel; none of them polls Redis.
//!
//! The task starts at the stream's end (`$`), follows the last id it saw,
//! reconnects with a short backoff after errors, and stops on shutdown.

use std::sync::Arc;
use std::time::Duration;

use proto_types::{Event, keys};
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::{broadcast, watch};

use crate::gateway::shutdown::stopped;

/// How long one `XREAD` blocks.
const BLOCK_MS: usize = 5_000;

/// The sending side; subscribe with [`Events::subscribe`].
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A channel with room for a burst of events per slow waiter.
    pub fn new() -> Self {
        Self { tx: broadcast::channel(1024).0 }
    }

    /// A new receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Reads the stream until `stop` turns true; `on_event` sees each event
    /// first (the service drops its cached read of that session).
    pub async fn run(self, redis_url: String, mut stop: watch::Receiver<bool>, on_event: impl Fn(&Event)) {
        let mut last = "$".to_owned();
        loop {
            let conn = async {
                let client = redis::Client::open(redis_url.as_str())?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_millis(BLOCK_MS as u64 + 5_000)));
                client.get_multiplexed_async_connection_with_config(&config).await
            };
            let connected = tokio::select! {
                c = conn => Some(c),
                () = stopped(&mut stop) => None,
            };
            let mut conn = match connected {
                None => return,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "events stream: cannot connect");
                    if sleep_or_stop(&mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            if last == "$" {
                // Resolve `$` once, so no event between two reads is lost.
                let top: Result<redis::Value, _> = redis::cmd("XREVRANGE")
                    .arg(keys::EVENTS_STREAM)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await;
                if let Ok(redis::Value::Array(items)) = top {
                    last = first_id(&items).unwrap_or_else(|| "0-0".to_owned());
                }
            }
            loop {
                let opts = StreamReadOptions::default().block(BLOCK_MS).count(256);
                let ids = [last.clone()];
                let read = redis::AsyncCommands::xread_options::<_, _, StreamReadReply>(
                    &mut conn,
                    &[keys::EVENTS_STREAM],
                    &ids,
                    &opts,
                );
                let reply = tokio::select! {
                    r = read => r,
                    () = stopped(&mut stop) => return,
                };
                match reply {
                    Ok(reply) => {
                        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                            last.clone_from(&entry.id);
                            let Some(redis::Value::BulkString(bytes)) = entry.map.get(keys::EVENT_FIELD) else {
                                continue;
                            };
                            match Event::decode(bytes) {
                                Ok(event) => {
                                    on_event(&event);
                                    // No receiver is fine: nobody waits.
                                    let _ = self.tx.send(Arc::new(event));
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, id = %entry.id, "events stream: undecodable event")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "events stream: read failed; reconnecting");
                        break;
                    }
                }
            }
            if sleep_or_stop(&mut stop).await {
                return;
            }
        }
    }
}

fn first_id(items: &[redis::Value]) -> Option<String> {
    let redis::Value::Array(entry) = items.first()? else { return None };
    match entry.first()? {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Backs off 500 ms; `true` when stopping instead.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(500)) => false,
        () = stopped(stop) => true,
    }
}
