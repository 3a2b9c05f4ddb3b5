//! The route table: every endpoint's method, path template, whether it needs
//! an API key or counts against the rate limit, and the statuses it can
//! answer. [`resolve`] matches a request against the table, so the table is
//! the router; the OpenAPI test walks the same table, so the document and
//! the server cannot drift apart.
//!
//! What each route does is in `handlers`; this module only matches.

use http::Method;
use proto_types::Command;

use crate::http::error::ApiError;

/// The OpenAPI document, served as is at `/openapi.json`.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../openapi.json");

/// Which endpoint a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// `GET /health`.
    Health,
    /// `GET /livez`.
    Livez,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
    /// `POST /session/create`.
    Create,
    /// `GET /session/{uuid}` and `GET /session/{uuid}/status`.
    GetSession,
    /// `POST /session/{uuid}/{sleep,wake,scale-up,scale-down,backup}` and `DELETE /session/{uuid}`.
    Command(Command),
    /// `GET /sessions`.
    ListSessions,
    /// `GET /jobs/{job_id}`.
    GetJob,
    /// `POST /session/{uuid}/access`.
    Access,
    /// `POST /session/{uuid}/activity`: keepalive, optionally a new idle timeout.
    Activity,
    /// `GET /backups?user_id=`.
    ListBackups,
    /// `GET /backups/{backup_id}`.
    GetBackup,
    /// `DELETE /backups/{backup_id}`.
    DeleteBackup,
    /// `GET /session/{uuid}/backups`.
    SessionBackups,
}

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// The endpoint.
    pub id: RouteId,
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{name}` matches one segment.
    pub template: &'static str,
    /// Whether an API key is required.
    pub auth: bool,
    /// Whether the request counts against the rate limits.
    pub rate_limited: bool,
    /// Every status the route can answer (404/405 for unknown paths aside).
    pub statuses: &'static [u16],
}

const PROBE: &[u16] = &[200, 503];
const LIVEZ: &[u16] = &[200];
const OPENAPI: &[u16] = &[200, 429];
const METRICS: &[u16] = &[200, 401, 429];
const COMMAND: &[u16] = &[200, 202, 400, 401, 404, 408, 409, 413, 415, 422, 429, 500, 503];
const CREATE: &[u16] = &[200, 202, 400, 401, 404, 408, 409, 410, 413, 415, 422, 429, 500, 503];
const READ: &[u16] = &[200, 400, 401, 404, 429, 500, 503];
const ACTIVITY: &[u16] = &[200, 400, 401, 404, 408, 413, 415, 429, 500, 503];
const LIST: &[u16] = &[200, 400, 401, 429, 500, 503];
const ACCESS: &[u16] = &[200, 400, 401, 404, 408, 413, 415, 429, 500, 503];
/// `DELETE /backups/{id}`: a read's answers, and 409 while the backup is still pending.
const DELETE_BACKUP: &[u16] = &[200, 400, 401, 404, 409, 429, 500, 503];

const fn route(
    id: RouteId,
    method: &'static str,
    template: &'static str,
    auth: bool,
    statuses: &'static [u16],
) -> RouteSpec {
    let rate_limited = !matches!(id, RouteId::Health | RouteId::Livez | RouteId::Readyz);
    RouteSpec { id, method, template, auth, rate_limited, statuses }
}

/// The whole API.
pub const ROUTES: &[RouteSpec] = &[
    route(RouteId::Health, "GET", "/health", false, PROBE),
    route(RouteId::Livez, "GET", "/livez", false, LIVEZ),
    route(RouteId::Readyz, "GET", "/readyz", false, PROBE),
    route(RouteId::Metrics, "GET", "/metrics", true, METRICS),
    route(RouteId::OpenApi, "GET", "/openapi.json", false, OPENAPI),
    route(RouteId::Create, "POST", "/session/create", true, CREATE),
    route(RouteId::GetSession, "GET", "/session/{uuid}", true, READ),
    route(RouteId::GetSession, "GET", "/session/{uuid}/status", true, READ),
    route(RouteId::Command(Command::Sleep), "POST", "/session/{uuid}/sleep", true, COMMAND),
    route(RouteId::Command(Command::Wake), "POST", "/session/{uuid}/wake", true, COMMAND),
    route(RouteId::Command(Command::ScaleUp), "POST", "/session/{uuid}/scale-up", true, COMMAND),
    route(RouteId::Command(Command::ScaleDown), "POST", "/session/{uuid}/scale-down", true, COMMAND),
    route(RouteId::Command(Command::Delete), "DELETE", "/session/{uuid}", true, COMMAND),
    route(RouteId::Command(Command::Backup), "POST", "/session/{uuid}/backup", true, COMMAND),
    route(RouteId::Access, "POST", "/session/{uuid}/access", true, ACCESS),
    route(RouteId::Activity, "POST", "/session/{uuid}/activity", true, ACTIVITY),
    route(RouteId::ListSessions, "GET", "/sessions", true, LIST),
    route(RouteId::GetJob, "GET", "/jobs/{job_id}", true, READ),
    route(RouteId::SessionBackups, "GET", "/session/{uuid}/backups", true, READ),
    route(RouteId::ListBackups, "GET", "/backups", true, LIST),
    route(RouteId::GetBackup, "GET", "/backups/{backup_id}", true, READ),
    route(RouteId::DeleteBackup, "DELETE", "/backups/{backup_id}", true, DELETE_BACKUP),
];

/// A request matched to a route, with its one path parameter (if any).
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The route.
    pub spec: &'static RouteSpec,
    /// The `{uuid}` / `{job_id}` segment.
    pub param: Option<&'a str>,
}

/// Matches one template against a path; `Some(param)` on a match.
fn match_template<'a>(template: &str, path: &'a str) -> Option<Option<&'a str>> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut param = None;
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(param),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                param = Some(ps);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// Finds the route for `method` and `path`: 404 when no template matches
/// the path, 405 (with the allowed methods) when only the method is wrong.
pub fn resolve<'a>(method: &Method, path: &'a str) -> Result<Matched<'a>, ApiError> {
    let mut allowed: Vec<&'static str> = Vec::new();
    // A path that a literal template matches (`/session/create`) is that
    // route only: its last segment is never taken for a `{uuid}`.
    let literal = ROUTES.iter().any(|r| !r.template.contains('{') && r.template == path);
    for spec in ROUTES.iter().filter(|r| !literal || !r.template.contains('{')) {
        if let Some(param) = match_template(spec.template, path) {
            if spec.method == method.as_str() {
                return Ok(Matched { spec, param });
            }
            if !allowed.contains(&spec.method) {
                allowed.push(spec.method);
            }
        }
    }
    if allowed.is_empty() {
        let shown: String = path.chars().take(100).collect();
        Err(ApiError::NotFound { path: shown })
    } else {
        Err(ApiError::MethodNotAllowed {
            method: method.as_str().chars().take(20).collect(),
            allow: allowed.join(", "),
        })
    }
}

/// The label used for metrics: the template, never the concrete path.
pub fn label(matched: Result<&Matched<'_>, &ApiError>) -> &'static str {
    match matched {
        Ok(m) => m.spec.template,
        Err(_) => "unmatched",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn literal_create_wins_for_post() {
        let m = resolve(&Method::POST, "/session/create").unwrap();
        assert_eq!(m.spec.id, RouteId::Create);
    }

    /// Issue 12 (found by fuzzing the OpenAPI document): `OPTIONS
    /// /session/create` answered `Allow: POST, GET, DELETE`, because
    /// `/session/{uuid}` took `create` for a session id.
    #[test]
    fn create_is_never_taken_for_a_session_id() {
        for method in [Method::GET, Method::DELETE, Method::OPTIONS, Method::PUT] {
            match resolve(&method, "/session/create") {
                Err(ApiError::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "POST", "{method}"),
                other => panic!("{method}: {other:?}"),
            }
        }
        let m = resolve(&Method::GET, "/session/create/status").unwrap();
        assert_eq!(m.param, Some("create"), "only the literal path itself is reserved");
    }

    #[test]
    fn commands_and_params() {
        let m = resolve(&Method::POST, "/session/abc/scale-down").unwrap();
        assert_eq!(m.spec.id, RouteId::Command(Command::ScaleDown));
        assert_eq!(m.param, Some("abc"));
        let m = resolve(&Method::DELETE, "/session/abc").unwrap();
        assert_eq!(m.spec.id, RouteId::Command(Command::Delete));
    }

    #[test]
    fn unknown_and_wrong_method() {
        assert!(matches!(resolve(&Method::GET, "/nope"), Err(ApiError::NotFound { .. })));
        assert!(matches!(resolve(&Method::GET, "/session//status"), Err(ApiError::NotFound { .. })));
        assert!(matches!(resolve(&Method::GET, "/health/"), Err(ApiError::NotFound { .. })));
        match resolve(&Method::PUT, "/session/abc") {
            Err(ApiError::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "GET, DELETE"),
            other => panic!("{other:?}"),
        }
    }

    /// The OpenAPI document and the route table describe the same API:
    /// same paths, same methods, same statuses, same authentication.
    #[test]
    fn openapi_document_matches_the_route_table() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = 0;
        for (path, ops) in paths {
            for (method, op) in ops.as_object().unwrap() {
                documented += 1;
                let spec = ROUTES
                    .iter()
                    .find(|r| r.template == path && r.method.eq_ignore_ascii_case(method))
                    .unwrap_or_else(|| panic!("{method} {path} is documented but not routed"));
                let mut statuses: Vec<u16> =
                    op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
                statuses.sort_unstable();
                assert_eq!(statuses, spec.statuses, "{method} {path}");
                let secured = !op["security"].as_array().unwrap().is_empty();
                assert_eq!(secured, spec.auth, "{method} {path} security");
            }
        }
        assert_eq!(documented, ROUTES.len(), "every route is documented");
        for spec in ROUTES {
            let path = spec.template.replace("{uuid}", "abc").replace("{job_id}", "0");
            let m = resolve(&Method::from_bytes(spec.method.as_bytes()).unwrap(), &path).unwrap();
            assert_eq!(m.spec.template, spec.template, "routing reaches {}", spec.template);
        }
    }
}
