//! The backup endpoints: `GET /backups?user_id=`, `GET /backups/{backup_id}`,
//! `DELETE /backups/{backup_id}` and `GET /session/{uuid}/backups`. Parse,
//! call the store, shape with `views::backups`; nothing else.
//!
//! `DELETE` only marks the record `deleted` (idempotent: deleting again
//! answers the same); the archive file stays on the backup volume until the
//! worker's backup retention removes it on its next pass (then the record
//! shows `deleted_reason` `user` and `removed_at`).

use http::StatusCode;
use proto_types::{SessionId, keys};

use crate::http::error::ApiError;
use crate::http::response::{HttpResponse, json_response};
use crate::http::state::AppState;
use crate::http::validate;
use crate::store::backups::MarkDeleted;
use crate::views::backups as view;

fn backup_id(param: Option<&str>) -> Result<&str, ApiError> {
    validate::backup_id(param.unwrap_or(""))
}

/// `GET /backups/{backup_id}`.
pub async fn get(state: &AppState, param: Option<&str>) -> Result<HttpResponse, ApiError> {
    let id = backup_id(param)?;
    let rec = state.store.backup(id).await?.ok_or_else(|| ApiError::BackupNotFound(id.to_owned()))?;
    Ok(json_response(StatusCode::OK, &view::backup(&rec)))
}

/// `DELETE /backups/{backup_id}`: marks it `deleted` (409 while `pending`).
pub async fn delete(state: &AppState, param: Option<&str>) -> Result<HttpResponse, ApiError> {
    let id = backup_id(param)?;
    match state.store.mark_backup_deleted(id).await? {
        MarkDeleted::Marked => {}
        MarkDeleted::NotFound => return Err(ApiError::BackupNotFound(id.to_owned())),
        MarkDeleted::Pending => return Err(ApiError::BackupInProgress(id.to_owned())),
    }
    let rec = state.store.backup(id).await?.ok_or_else(|| ApiError::BackupNotFound(id.to_owned()))?;
    tracing::info!(backup.id = id, "backup marked deleted");
    Ok(json_response(StatusCode::OK, &view::backup(&rec)))
}

/// `GET /backups?user_id=&limit=&cursor=`: one user's backups (`user_id` is required).
pub async fn list_for_user(state: &AppState, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let q = validate::list_query(query)?;
    let user = q.user_id.ok_or_else(|| ApiError::bad_request("missing_user_id", "user_id is required"))?;
    let page = state.store.list_backups(&keys::user_backups(&user), q.cursor, q.limit).await?;
    Ok(json_response(StatusCode::OK, &view::list(&page.backups, page.next_cursor)))
}

/// `GET /session/{uuid}/backups?limit=&cursor=`: one session's backups. A
/// session that is gone (its tombstone expired) still lists its backups;
/// 404 only when there is neither the session nor a backup of it.
pub async fn list_for_session(
    state: &AppState,
    param: Option<&str>,
    query: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let id = SessionId::parse(param.unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_uuid", format!("invalid session uuid: {e}")))?;
    let q = validate::list_query(query)?;
    if q.user_id.is_some() {
        return Err(ApiError::bad_request("unknown_parameter", "unknown query parameter; allowed: cursor, limit"));
    }
    let page = state.store.list_backups(&keys::session_backups(id.as_str()), q.cursor.clone(), q.limit).await?;
    if page.backups.is_empty() && q.cursor.is_none() && state.store.session(&id).await?.is_none() {
        return Err(ApiError::SessionNotFound(id.to_string()));
    }
    Ok(json_response(StatusCode::OK, &view::list(&page.backups, page.next_cursor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_are_checked_before_any_lookup() {
        assert_eq!(backup_id(Some("0fa6debc-g2")).ok(), Some("0fa6debc-g2"));
        for bad in [None, Some(""), Some("A-g1"), Some("{sm}"), Some("a b")] {
            assert!(backup_id(bad).is_err(), "{bad:?}");
        }
        assert!(backup_id(Some(&"a".repeat(65))).is_err());
    }
}
