//! One function per endpoint: parse what the route needs, call the store,
//! shape the answer with `views`. Authentication and rate limiting already
//! happened in `service`; routing in `routes`. Store failures become
//! answers through `From<StoreError> for ApiError` (in `error`).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use proto_types::{Command, JobId, JobState, Refusal, SessionId, SessionState, keys};
use sm_telemetry::attrs;
use tracing::{Instrument as _, field};

use crate::http::auth::KeyId;
use crate::http::error::ApiError;
use crate::http::response::{HttpResponse, json_response, text_response};
use crate::http::routes::{Matched, OPENAPI_DOCUMENT, RouteId};
use crate::http::state::AppState;
use crate::http::validate;
use crate::http::{access_link, backups};
use crate::store::{EnqueueError, EnqueueOutcome, EnqueueRequest, Prefetched, StoreError};
use crate::views::{self, iso_ms, now_ms};
use proto_types::scripts::enqueue::{RestoreFrom, RestoreRefusal};

/// What a handler gets besides the shared state.
#[derive(Debug)]
pub struct Input<'a> {
    /// The matched route.
    pub matched: Matched<'a>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The query string.
    pub query: Option<&'a str>,
    /// The whole body (already capped).
    pub body: Bytes,
    /// The authenticated key, for routes that need one.
    pub key: Option<KeyId>,
    /// The session of a command, read along with the rate limit.
    pub prefetched: Option<Prefetched>,
}

fn session_id(param: Option<&str>) -> Result<SessionId, ApiError> {
    SessionId::parse(param.unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_uuid", format!("invalid session uuid: {e}")))
}

/// Runs the endpoint.
pub async fn handle(state: &Arc<AppState>, input: Input<'_>) -> Result<HttpResponse, ApiError> {
    match input.matched.spec.id {
        RouteId::Health => Ok(health(state).await),
        RouteId::Livez => Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        RouteId::Readyz => match state.store.ping().await {
            Ok(()) => Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}))),
            Err(_) => Err(ApiError::StoreUnavailable),
        },
        RouteId::Metrics => {
            Ok(text_response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render()))
        }
        RouteId::OpenApi => Ok(text_response(StatusCode::OK, "application/json", OPENAPI_DOCUMENT)),
        RouteId::GetSession => get_session(state, &input).await,
        RouteId::ListSessions => list_sessions(state, &input).await,
        RouteId::GetJob => get_job(state, &input).await,
        RouteId::Access => access(state, &input).await,
        RouteId::Activity => activity(state, &input).await,
        RouteId::ListBackups => backups::list_for_user(state, input.query).await,
        RouteId::GetBackup => backups::get(state, input.matched.param).await,
        RouteId::DeleteBackup => backups::delete(state, input.matched.param).await,
        RouteId::SessionBackups => backups::list_for_session(state, input.matched.param, input.query).await,
        RouteId::Create => command(state, &input, Command::Create).await,
        RouteId::Command(c) => command(state, &input, c).await,
    }
}

async fn health(state: &Arc<AppState>) -> HttpResponse {
    let up = state.store.ping().await.is_ok();
    let body = views::Health {
        status: if up { "healthy" } else { "unhealthy" },
        version: env!("CARGO_PKG_VERSION"),
        redis: if up { "connected" } else { "disconnected" },
        timestamp: iso_ms(now_ms()),
    };
    json_response(if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

async fn get_session(state: &Arc<AppState>, input: &Input<'_>) -> Result<HttpResponse, ApiError> {
    let id = session_id(input.matched.param)?;
    let rec = state.store.session(&id).await?.ok_or_else(|| ApiError::SessionNotFound(id.to_string()))?;
    let pending = state.store.job_state(&rec.last_job_id).await?.is_some_and(|s| !s.is_terminal());
    Ok(json_response(StatusCode::OK, &views::session_status(&rec, u64::from(pending), now_ms())))
}

/// A fresh access link. Any valid API key may ask, as for every other
/// session endpoint (keys are operator credentials, not per-user ones).
async fn access(state: &Arc<AppState>, input: &Input<'_>) -> Result<HttpResponse, ApiError> {
    let id = session_id(input.matched.param)?;
    validate::parse_empty(input.headers, &input.body)?;
    let rec = state.store.session(&id).await?.ok_or_else(|| ApiError::SessionNotFound(id.to_string()))?;
    // A deleted (or deleting) session has no workspace to open.
    if rec.status == proto_types::SessionState::Deleted || rec.desired == proto_types::DesiredState::Deleted {
        return Err(ApiError::SessionNotFound(id.to_string()));
    }
    let url = if rec.workspace_url.is_empty() {
        state.config.workspace_url_pattern.replace("{uuid}", id.as_str())
    } else {
        rec.workspace_url
    };
    let link = access_link::issue(&state.config, id.as_str(), &url, now_ms())?;
    tracing::info!(session.id = %id, "access link issued");
    Ok(json_response(StatusCode::OK, &views::Access { access_url: link.url, expires_at: iso_ms(link.expires_ms) }))
}

async fn activity(state: &Arc<AppState>, input: &Input<'_>) -> Result<HttpResponse, ApiError> {
    let id = session_id(input.matched.param)?;
    let body: validate::ActivityBody = if input.body.iter().all(u8::is_ascii_whitespace) {
        validate::ActivityBody::default()
    } else {
        validate::require_json(input.headers)?;
        validate::parse_json(&input.body)?
    };
    let timeout = validate::idle_timeout(body.idle_timeout_secs, state.config.max_idle_timeout_secs)?;
    let rec = state.store.session(&id).await?;
    let Some(rec) = rec.filter(|r| r.status != SessionState::Deleted && r.status != SessionState::Deleting) else {
        return Err(ApiError::SessionNotFound(id.to_string()));
    };
    let now = now_ms();
    state.store.activity(&id, now, timeout).await?;
    let body = views::Activity {
        uuid: id.to_string(),
        last_activity: iso_ms(now.max(rec.last_activity_ms)),
        idle_timeout_secs: timeout.or(rec.idle_timeout_secs),
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn list_sessions(state: &Arc<AppState>, input: &Input<'_>) -> Result<HttpResponse, ApiError> {
    let q = validate::list_query(input.query)?;
    let page = state.store.list_sessions(q.cursor, q.limit, q.user_id.as_deref()).await?;
    let sessions: Vec<_> = page.sessions.iter().map(views::session_item).collect();
    let body = views::SessionList { count: sessions.len(), sessions, next_cursor: page.next_cursor };
    Ok(json_response(StatusCode::OK, &body))
}

async fn get_job(state: &Arc<AppState>, input: &Input<'_>) -> Result<HttpResponse, ApiError> {
    let raw = input.matched.param.unwrap_or("");
    let id = JobId::parse(raw)
        .map_err(|_| ApiError::bad_request("invalid_job_id", "job_id must be 32 lowercase hex characters"))?;
    let rec = state.store.job(&id).await?.ok_or_else(|| ApiError::JobNotFound(id.to_string()))?;
    let position = match rec.state {
        JobState::Queued => Some(state.store.queue_position(&rec.stream_id).await?),
        _ => None,
    };
    Ok(json_response(StatusCode::OK, &views::job_status(&rec, position)))
}

/// Builds the command response for a job (a fresh one or an idempotent replay).
#[allow(clippy::too_many_arguments)]
fn command_body(
    state: &AppState,
    command: Command,
    sid: &str,
    job_id: &str,
    user_id: &str,
    workspace_url: &str,
    created_at_ms: u64,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let status_url = views::status_url(job_id);
    match command {
        Command::Create => {
            let access_url = access_link::issue(&state.config, sid, workspace_url, now_ms())?.url;
            Ok(json_response(
                status,
                &views::Created {
                    uuid: sid.to_owned(),
                    user_id: user_id.to_owned(),
                    status: "created",
                    workspace_url: workspace_url.to_owned(),
                    access_url,
                    created_at: iso_ms(created_at_ms),
                    job_id: job_id.to_owned(),
                    status_url,
                },
            ))
        }
        Command::Delete => {
            let (_, word, message) = views::action_words(command);
            Ok(json_response(
                status,
                &views::Deleting { uuid: sid.to_owned(), status: word, message, job_id: job_id.to_owned(), status_url },
            ))
        }
        _ => {
            let (action, word, message) = views::action_words(command);
            Ok(json_response(
                status,
                &views::Action {
                    uuid: sid.to_owned(),
                    action,
                    status: word,
                    message,
                    job_id: job_id.to_owned(),
                    status_url,
                },
            ))
        }
    }
}

async fn command(state: &Arc<AppState>, input: &Input<'_>, command: Command) -> Result<HttpResponse, ApiError> {
    let result = command_inner(state, input, command).await;
    if let Err(e) = &result {
        state.metrics.enqueue_failed(e.code());
    }
    result
}

async fn command_inner(state: &Arc<AppState>, input: &Input<'_>, command: Command) -> Result<HttpResponse, ApiError> {
    let mut idle_timeout = None;
    let mut restore_from = None;
    let (session, user_id) = if command == Command::Create {
        validate::require_json(input.headers)?;
        let body: validate::CreateBody = validate::parse_json(&input.body)?;
        validate::user_id(&body.user_id)?;
        idle_timeout = validate::idle_timeout(body.idle_timeout_secs, state.config.max_idle_timeout_secs)?;
        if let Some(id) = &body.restore_from {
            validate::backup_id(id)?;
        }
        restore_from = body.restore_from;
        (None, body.user_id)
    } else {
        let sid = session_id(input.matched.param)?;
        validate::parse_empty(input.headers, &input.body)?;
        (Some(sid), String::new())
    };
    let idem_key = validate::idempotency_key(input.headers)?;
    let admin = input.key.as_ref().is_some_and(|k| state.config.admin_keys.contains(k));
    let scope = input.key.as_ref().map(|k| k.0.as_str()).unwrap_or("-");
    // The request fingerprint (a SHA-256) is only needed with an Idempotency-Key.
    let fp = idem_key.as_ref().map(|_| {
        let path = format!("{}/{}", input.matched.spec.template, input.matched.param.unwrap_or(""));
        validate::fingerprint(input.matched.spec.method, &path, &input.body)
    });
    let span = tracing::info_span!(
        attrs::ENQUEUE_SPAN,
        { attrs::OTEL_KIND } = "producer",
        { attrs::MESSAGING_SYSTEM } = attrs::MESSAGING_SYSTEM_REDIS,
        { attrs::MESSAGING_DESTINATION_NAME } = keys::JOBS_STREAM,
        { attrs::MESSAGING_OPERATION } = "send",
        { attrs::COMMAND } = command.as_str(),
        { attrs::JOB_ID } = field::Empty,
        { attrs::SESSION_UUID } = field::Empty,
        { attrs::OTEL_STATUS_CODE } = field::Empty,
        { attrs::OTEL_STATUS_DESCRIPTION } = field::Empty,
    );
    let outcome = async {
        let req = EnqueueRequest {
            command,
            session,
            user_id: &user_id,
            idempotency: idem_key.as_deref().zip(fp.as_deref()).map(|(k, fp)| (scope, k, fp)),
            max_sessions_per_user: state.config.max_sessions_per_user,
            workspace_url_pattern: &state.config.workspace_url_pattern,
            trace: job_trace_context(input.headers),
            prefetched: input.prefetched.as_ref(),
            origin: proto_types::Origin::Api,
            idle_timeout_secs: idle_timeout,
            restore: restore_from.as_deref().map(|backup_id| RestoreFrom { backup_id, any_user: admin }),
        };
        state.store.enqueue(&req).await
    }
    .instrument(span.clone())
    .await;
    match &outcome {
        Ok(EnqueueOutcome::Accepted(a)) => {
            span.record(attrs::JOB_ID, a.job.job_id.as_str());
            span.record(attrs::SESSION_UUID, a.job.session_id.as_str());
        }
        // Refusals are answers (4xx); only a failing store is an error.
        Err(EnqueueError::Failed(e)) => {
            span.record(attrs::OTEL_STATUS_CODE, "error");
            span.record(attrs::OTEL_STATUS_DESCRIPTION, e.to_string());
        }
        Ok(EnqueueOutcome::Replay(_)) | Err(_) => {}
    }
    match outcome {
        Ok(EnqueueOutcome::Accepted(a)) => {
            tracing::info!(job.id = %a.job.job_id, session.id = %a.job.session_id, command = %command, "enqueued");
            if let Some(backup) = &restore_from {
                // An admin key may restore any user's backup: say so in the log.
                tracing::info!(session.id = %a.job.session_id, backup.id = %backup, admin, "create restores from a backup");
            }
            command_body(
                state,
                command,
                a.job.session_id.as_str(),
                a.job.job_id.as_str(),
                &a.user_id,
                &a.workspace_url,
                a.created_at_ms,
                StatusCode::ACCEPTED,
            )
        }
        Ok(EnqueueOutcome::Replay(job_id)) => replay(state, &job_id).await,
        Err(EnqueueError::Refused(Refusal::NotFound)) => {
            Err(ApiError::SessionNotFound(input.matched.param.unwrap_or("").to_owned()))
        }
        Err(EnqueueError::Refused(Refusal::InvalidState { command, current })) => {
            Err(ApiError::InvalidState { command, current })
        }
        // Only create can meet AlreadyExists, and the store retries it with a new id.
        Err(EnqueueError::Refused(Refusal::AlreadyExists)) => Err(ApiError::StoreUnavailable),
        Err(EnqueueError::Limit(live)) => Err(ApiError::SessionLimit { live, max: state.config.max_sessions_per_user }),
        Err(EnqueueError::IdempotencyMismatch(job_id)) => Err(ApiError::IdempotencyMismatch { job_id }),
        Err(EnqueueError::Restore(why)) => {
            let id = restore_from.unwrap_or_default();
            Err(match why {
                RestoreRefusal::Missing => ApiError::BackupNotFound(id),
                RestoreRefusal::Gone => ApiError::BackupDeleted(id),
                RestoreRefusal::Unusable(state) => ApiError::BackupNotRestorable { id, state },
            })
        }
        Err(EnqueueError::Failed(e)) => Err(StoreError::from(e).into()),
    }
}

/// The trace context a job carries to the worker: the current span's (the
/// `job.enqueue` span inside the request span) when spans are exported,
/// otherwise the caller's incoming `traceparent` passed through unchanged.
fn job_trace_context(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    match sm_telemetry::current_trace_context() {
        (Some(parent), state) => (Some(parent), state),
        (None, _) => validate::trace_context(headers),
    }
}

/// The original job's response, with 200, for a repeated Idempotency-Key.
async fn replay(state: &Arc<AppState>, job_id: &JobId) -> Result<HttpResponse, ApiError> {
    let job = state.store.job(job_id).await?.ok_or(ApiError::Internal)?;
    let (user_id, url, created) = match SessionId::parse(&job.session_id) {
        Ok(sid) => match state.store.session(&sid).await? {
            Some(s) => (s.user_id, s.workspace_url, s.created_at_ms),
            None => (String::new(), String::new(), job.requested_at_ms),
        },
        Err(_) => return Err(ApiError::Internal),
    };
    command_body(state, job.command, &job.session_id, job_id.as_str(), &user_id, &url, created, StatusCode::OK)
}
