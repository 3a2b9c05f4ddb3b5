//! The response-conformance check: every answer the integration tests get
//! is held against `api/openapi.json`, so the document cannot drift from
//! what the server really sends.
//!
//! For a request (method, concrete path) and its response, [`Contract::check`]
//! finds the operation whose path template matches (literal segments win over
//! `{params}`, like the router), requires it to list the status, requires
//! the body to be of a documented media type and to validate against that
//! response's JSON Schema (2020-12, `#/components/...` refs resolved against
//! the whole document), requires every header the response marks `required`
//! and every contract header sent (`Allow`, `Retry-After`, `RateLimit-*`) to
//! be documented for that response and to match its schema. Requests no
//! operation matches are held against `components.x-unrouted` (404 / 405).
//!
//! It knows nothing about the server's code: only the document and the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use super::Resp;

/// The document the server serves, compiled in like the server does.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// Headers whose presence must be documented when the server sends them.
const CONTRACT_HEADERS: &[&str] =
    &["allow", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"];

/// The parsed document plus a cache of compiled response schemas.
pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The contract built from `api/openapi.json`, shared by all tests in a binary.
pub fn contract() -> &'static Contract {
    static C: OnceLock<Contract> = OnceLock::new();
    C.get_or_init(|| Contract::new(serde_json::from_str(DOCUMENT).expect("api/openapi.json is JSON")))
}

/// Escapes one JSON-pointer token.
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes a JSON pointer for use as a URI fragment (`{uuid}` is not URI-safe).
fn fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for b in pointer.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn matches_template(template: &str, path: &str) -> Option<usize> {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut literals = 0;
    for (ts, ps) in t.iter().zip(&p) {
        if ts.starts_with('{') && ts.ends_with('}') {
            if ps.is_empty() {
                return None;
            }
        } else if ts == ps {
            literals += 1;
        } else {
            return None;
        }
    }
    Some(literals)
}

impl Contract {
    /// A contract over an arbitrary document (tests of the checker use a tampered copy).
    pub fn new(doc: Value) -> Self {
        Self { doc, validators: Mutex::new(HashMap::new()) }
    }

    /// The document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Follows `$ref`s (local JSON pointers) until a non-reference object; returns it and its pointer.
    fn deref(&self, mut pointer: String) -> Result<(String, &Value), String> {
        for _ in 0..16 {
            let v = self.doc.pointer(&pointer).ok_or_else(|| format!("dangling pointer #{pointer}"))?;
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    pointer = r.strip_prefix('#').ok_or_else(|| format!("non-local $ref {r}"))?.to_owned();
                }
                None => return Ok((pointer, v)),
            }
        }
        Err(format!("$ref loop at #{pointer}"))
    }

    /// The pointer to the response object documented for this request and status.
    fn response_pointer(&self, method: &str, path: &str, status: u16) -> Result<String, String> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let method = method.to_ascii_lowercase();
        let paths = self.doc["paths"].as_object().ok_or("document has no paths")?;
        let mut on_path: Vec<(usize, &String, &Value)> =
            paths.iter().filter_map(|(t, ops)| matches_template(t, path).map(|lit| (lit, t, ops))).collect();
        if on_path.is_empty() {
            let r =
                self.doc["components"]["x-unrouted"]["unknown_path"].as_str().ok_or("no x-unrouted.unknown_path")?;
            if status != 404 {
                return Err(format!("{path} matches no documented path, so only 404 is documented, got {status}"));
            }
            return Ok(r.trim_start_matches('#').to_owned());
        }
        // Literal segments win over parameters, as in the router.
        on_path.sort_by_key(|(lit, _, _)| std::cmp::Reverse(*lit));
        // A path a literal template matches is that path only (`/session/create`
        // is never a `{uuid}`), as in the router.
        if !on_path[0].1.contains('{') {
            on_path.truncate(1);
        }
        let Some((_, template, _)) = on_path.iter().find(|(_, _, ops)| ops.get(&method).is_some()) else {
            let r =
                self.doc["components"]["x-unrouted"]["wrong_method"].as_str().ok_or("no x-unrouted.wrong_method")?;
            if status != 405 {
                return Err(format!("{method} is documented for no path matching {path}: only 405 fits, got {status}"));
            }
            return Ok(r.trim_start_matches('#').to_owned());
        };
        let ptr = format!("/paths/{}/{method}/responses/{status}", token(template));
        if self.doc.pointer(&ptr).is_none() {
            return Err(format!("{} {template} does not document status {status}", method.to_ascii_uppercase()));
        }
        Ok(ptr)
    }

    /// A validator for the schema at `pointer`, compiled once.
    fn validator(&self, pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().expect("validator cache poisoned");
        if let Some(v) = cache.get(pointer) {
            return Ok(v.clone());
        }
        // The whole document is the root resource, so `#/components/...` refs resolve.
        let mut root = self.doc.clone();
        root["$ref"] = Value::from(format!("#{}", fragment(pointer)));
        let v = jsonschema::draft202012::options()
            .build(&root)
            .map_err(|e| format!("schema at #{pointer} does not compile: {e}"))?;
        let v = Arc::new(v);
        cache.insert(pointer.to_owned(), v.clone());
        Ok(v)
    }

    /// Every way `resp` (answering `method path`) departs from the document; empty when it conforms.
    pub fn violations(&self, method: &str, path: &str, resp: &Resp) -> Vec<String> {
        let mut out = Vec::new();
        let ptr = match self.response_pointer(method, path, resp.status) {
            Ok(p) => p,
            Err(e) => return vec![e],
        };
        let (ptr, response) = match self.deref(ptr) {
            Ok(r) => r,
            Err(e) => return vec![e],
        };
        self.check_headers(&ptr, response, resp, &mut out);
        self.check_body(&ptr, response, resp, &mut out);
        out
    }

    fn check_headers(&self, ptr: &str, response: &Value, resp: &Resp, out: &mut Vec<String>) {
        let empty = serde_json::Map::new();
        let documented = response.get("headers").and_then(Value::as_object).unwrap_or(&empty);
        let find = |name: &str| documented.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        for name in documented.keys() {
            let hptr = format!("{ptr}/headers/{}", token(name));
            let (_, h) = match self.deref(hptr) {
                Ok(x) => x,
                Err(e) => {
                    out.push(e);
                    continue;
                }
            };
            if h["required"] == true && resp.header(name).is_none() {
                out.push(format!("required header {name} is missing"));
            }
        }
        for name in CONTRACT_HEADERS {
            let Some(value) = resp.header(name) else { continue };
            let Some((doc_name, _)) = find(name) else {
                out.push(format!("header {name} is sent but not documented for this response (#{ptr})"));
                continue;
            };
            let hptr = format!("{ptr}/headers/{}", token(doc_name));
            let Ok((hptr, h)) = self.deref(hptr) else { continue };
            let instance = match h["schema"]["type"].as_str() {
                Some("integer") => match value.parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => {
                        out.push(format!("header {name}: {value:?} is not an integer"));
                        continue;
                    }
                },
                _ => json!(value),
            };
            match self.validator(&format!("{hptr}/schema")) {
                Ok(v) => out.extend(v.iter_errors(&instance).map(|e| format!("header {name}: {e}"))),
                Err(e) => out.push(e),
            }
        }
    }

    fn check_body(&self, ptr: &str, response: &Value, resp: &Resp, out: &mut Vec<String>) {
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            if !resp.body.is_empty() {
                out.push(format!("a body was sent but #{ptr} documents none"));
            }
            return;
        };
        let sent = resp.header("content-type").unwrap_or("");
        let base = sent.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let Some((media, _)) = content.iter().find(|(k, _)| k.split(';').next().unwrap_or("").trim() == base) else {
            out.push(format!("content-type {sent:?} is not documented (#{ptr} has {:?})", content.keys()));
            return;
        };
        let instance = if base == "application/json" {
            match serde_json::from_slice::<Value>(&resp.body) {
                Ok(v) => v,
                Err(e) => {
                    out.push(format!("body is not JSON: {e}"));
                    return;
                }
            }
        } else {
            match std::str::from_utf8(&resp.body) {
                Ok(s) => Value::from(s),
                Err(_) => {
                    out.push("text body is not UTF-8".to_owned());
                    return;
                }
            }
        };
        let sptr = format!("{ptr}/content/{}/schema", token(media));
        match self.validator(&sptr) {
            Ok(v) => out.extend(v.iter_errors(&instance).map(|e| format!("body at {}: {e}", e.instance_path()))),
            Err(e) => out.push(e),
        }
    }

    /// Panics with every violation unless `resp` conforms.
    pub fn assert_conforms(&self, method: &str, path: &str, resp: &Resp) {
        let v = self.violations(method, path, resp);
        assert!(
            v.is_empty(),
            "{method} {path} -> {} does not match api/openapi.json:\n  {}\nbody: {}",
            resp.status,
            v.join("\n  "),
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(2000)])
        );
    }
}
