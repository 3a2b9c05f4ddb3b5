//! The write gate: the one place every Kubernetes write of the worker goes
//! through, so a worker that may have lost its session lease never touches
//! the cluster (argument in `worker/README.md`).
//!
//! Each write, right before it is sent:
//! 1. asks the lease's local entitlement ([`LeaseGuard::check`]): past the
//!    deadline, or after a renewal answered "lost", it is refused;
//! 2. reads the object again: if it carries a newer lease's fencing token
//!    ([`names::FENCE_ANNOTATION`]) than ours, it is refused;
//! 3. an existing object is written with its `resourceVersion` as a
//!    precondition (server-side apply and merge patch carry it in
//!    `metadata`, deletes in `preconditions` with the uid too), so a write
//!    by anyone in between makes it 409; the gate then reads again, and a
//!    newer token there means fenced;
//! 4. an absent object is created with POST (never apply, which would
//!    create it from a stale plan), right after the atomic Redis check
//!    ([`LeaseGuard::check_create`]) that our lease is still current, the
//!    generation still the job's and the desired state not `deleted`.
//!
//! Every written object is stamped with our token. Refusals are
//! [`Fenced`] (the job is abandoned, not retried). What to write is the
//! planner's decision (`plan.rs`), not this module's.

use std::fmt::Debug;

use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{get_opt, kind_of, raw};
use super::error::{exec_error, is_conflict, is_not_found};
use super::names;
use crate::entitlement::{CreatePurpose, LeaseGuard};
use crate::executor::ExecError;
use crate::fenced::{CreateCheckError, Fenced};

/// Reads and tries per write before a conflict is left to the retry policy.
const ROUNDS: usize = 3;

/// The fencing token an object carries (0 when none).
pub fn fence_of(meta: &kube::api::ObjectMeta) -> u64 {
    meta.annotations.as_ref().and_then(|a| a.get(names::FENCE_ANNOTATION)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Refuses when `obj` carries a newer token than `guard`'s.
pub fn not_newer<K: Resource<DynamicType = ()>>(obj: &K, guard: &LeaseGuard) -> Result<(), Fenced> {
    let theirs = fence_of(obj.meta());
    let ours = guard.token();
    if theirs > ours {
        let name = obj.meta().name.clone().unwrap_or_default();
        return Err(Fenced::NewerFence { object: format!("{}/{name}", kind_of::<K>()), ours, theirs });
    }
    Ok(())
}

fn stamp(meta: &mut kube::api::ObjectMeta, token: u64) {
    meta.annotations.get_or_insert_with(Default::default).insert(names::FENCE_ANNOTATION.to_owned(), token.to_string());
}

fn refused(e: CreateCheckError) -> ExecError {
    match e {
        CreateCheckError::Fenced(f) => f.into(),
        CreateCheckError::Unavailable(message) => ExecError::retryable(message),
    }
}

fn kept_changing(verb: &str, kind: &str, name: &str) -> ExecError {
    ExecError::retryable(format!("{verb} {kind} {name}: changed under us {ROUNDS} times (409 conflict)"))
}

/// Server-side applies `obj` over the existing object, conditional on its
/// `resourceVersion`; when absent, creates it (POST) if `create` says for
/// what, else does nothing (the next observation re-plans).
pub async fn apply<K>(
    api: &Api<K>,
    guard: &LeaseGuard,
    name: &str,
    mut obj: K,
    create: Option<CreatePurpose>,
) -> Result<(), ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let kind = kind_of::<K>();
    stamp(obj.meta_mut(), guard.token());
    for _ in 0..ROUNDS {
        match get_opt(api, name).await? {
            None => {
                let Some(purpose) = create else { return Ok(()) };
                guard.check_create(purpose).await.map_err(refused)?;
                obj.meta_mut().resource_version = None;
                match raw("create", &kind, name, api.create(&PostParams::default(), &obj)).await {
                    Ok(_) => return Ok(()),
                    // Created meanwhile by someone else: read it and decide again.
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(exec_error(&format!("create {kind} {name}"), e)),
                }
            }
            Some(current) => {
                not_newer(&current, guard)?;
                guard.check()?;
                obj.meta_mut().resource_version = current.meta().resource_version.clone();
                let pp = PatchParams::apply(names::FIELD_MANAGER).force();
                match raw("apply", &kind, name, api.patch(name, &pp, &Patch::Apply(&obj))).await {
                    Ok(_) => return Ok(()),
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(exec_error(&format!("apply {kind} {name}"), e)),
                }
            }
        }
    }
    Err(kept_changing("apply", &kind, name))
}

/// Creates `obj` unless it exists (never updates it): for objects whose
/// name is unique per request, such as the backup Job of one generation.
pub async fn create_once<K>(
    api: &Api<K>,
    guard: &LeaseGuard,
    name: &str,
    mut obj: K,
    purpose: CreatePurpose,
) -> Result<(), ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let kind = kind_of::<K>();
    if get_opt(api, name).await?.is_some() {
        return Ok(());
    }
    stamp(obj.meta_mut(), guard.token());
    guard.check_create(purpose).await.map_err(refused)?;
    match raw("create", &kind, name, api.create(&PostParams::default(), &obj)).await {
        Ok(_) => Ok(()),
        // The same request's object, created by another try: it stands.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(exec_error(&format!("create {kind} {name}"), e)),
    }
}

/// Merge-patches the existing object with `patch`, conditional on its
/// `resourceVersion`, stamping our token; nothing when it is absent.
pub async fn merge<K>(api: &Api<K>, guard: &LeaseGuard, name: &str, patch: serde_json::Value) -> Result<(), ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = kind_of::<K>();
    for _ in 0..ROUNDS {
        let Some(current) = get_opt(api, name).await? else { return Ok(()) };
        not_newer(&current, guard)?;
        guard.check()?;
        let mut patch = patch.clone();
        patch["metadata"]["resourceVersion"] = current.meta().resource_version.clone().into();
        patch["metadata"]["annotations"][names::FENCE_ANNOTATION] = guard.token().to_string().into();
        match raw("patch", &kind, name, api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))).await {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(exec_error(&format!("patch {kind} {name}"), e)),
        }
    }
    Err(kept_changing("patch", &kind, name))
}

/// Deletes the object if it exists (and, with `uid`, only that very
/// object), conditional on the uid and `resourceVersion` just read.
pub async fn delete<K>(
    api: &Api<K>,
    guard: &LeaseGuard,
    name: &str,
    uid: Option<&str>,
    base: DeleteParams,
) -> Result<(), ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = kind_of::<K>();
    for _ in 0..ROUNDS {
        let Some(current) = get_opt(api, name).await? else { return Ok(()) };
        if uid.is_some_and(|want| current.meta().uid.as_deref() != Some(want)) {
            // A different object of the same name: not the one planned for.
            return Ok(());
        }
        not_newer(&current, guard)?;
        guard.check()?;
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: current.meta().uid.clone(),
                resource_version: current.meta().resource_version.clone(),
            }),
            ..base.clone()
        };
        match raw("delete", &kind, name, api.delete(name, &dp)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(exec_error(&format!("delete {kind} {name}"), e)),
        }
    }
    Err(kept_changing("delete", &kind, name))
}
