//! The write gate against kube-fake-client: objects carry the lease's
//! fencing token, and a worker holding an older token than the one on an
//! object is refused (fenced, not retried) and changes nothing.
#![allow(clippy::unwrap_used)]

mod k8s_support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_support::{Cluster, NS, sid, target};
use kube::api::{Api, Patch, PatchParams};
use proto_types::{DesiredState, SessionState};
use worker::entitlement::LeaseGuard;
use worker::executor::ExecError;
use worker::fenced::Fenced;
use worker::k8s::names::FENCE_ANNOTATION;

fn fence_of(d: &Deployment) -> Option<String> {
    d.metadata.annotations.as_ref().and_then(|a| a.get(FENCE_ANNOTATION).cloned())
}

#[tokio::test]
async fn every_object_carries_the_token_and_a_higher_one_refuses_the_write() {
    let c = Cluster::start().await;
    let id = sid("fence1");
    let mut t = target(&id, DesiredState::Running, 1);
    t.lease = LeaseGuard::unbounded(5);
    assert_eq!(c.converge(&t).await.unwrap().status, SessionState::Running);
    let deployments: Api<Deployment> = Api::namespaced(c.raw.clone(), NS);
    let name = format!("ws-{id}");
    assert_eq!(fence_of(&deployments.get(&name).await.unwrap()).as_deref(), Some("5"));

    // A newer holder (token 9) wrote the Deployment; we, at 5, try to sleep it.
    let newer = serde_json::json!({"metadata": {"annotations": {FENCE_ANNOTATION: "9"}}});
    deployments.patch(&name, &PatchParams::default(), &Patch::Merge(&newer)).await.unwrap();
    let mut stale = target(&id, DesiredState::Sleeping, 2);
    stale.lease = LeaseGuard::unbounded(5);
    match c.converge(&stale).await.unwrap_err() {
        ExecError::Fenced(Fenced::NewerFence { ours: 5, theirs: 9, .. }) => {}
        other => panic!("expected fenced, got {other:?}"),
    }
    let d = deployments.get(&name).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(1), "the stale holder changed nothing");

    // The newer holder itself goes on.
    let mut current = target(&id, DesiredState::Sleeping, 2);
    current.lease = LeaseGuard::unbounded(9);
    assert_eq!(c.converge(&current).await.unwrap().status, SessionState::Sleeping);
}

#[tokio::test]
async fn a_resource_version_conflict_with_a_newer_holders_write_counts_as_fenced() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use kube::api::PostParams;
    use kube_fake_client::interceptor;

    // Armed, the interceptor plays a newer holder (token 9) writing the
    // Deployment between the gate's read and its apply.
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = armed.clone();
    let funcs = interceptor::Funcs::new().patch(move |ctx| {
        if ctx.patch["kind"] == "Deployment" && trigger.swap(false, Ordering::SeqCst) {
            let mut d: Deployment = ctx.client.get(ctx.namespace, ctx.name)?;
            d.metadata.annotations.get_or_insert_with(Default::default).insert(FENCE_ANNOTATION.into(), "9".into());
            ctx.client.update(ctx.namespace, &d, &PostParams::default())?;
        }
        Ok(None)
    });
    let c = Cluster::with(Some(funcs), k8s_support::config(), true).await;
    let id = sid("fence2");
    let mut t = target(&id, DesiredState::Running, 1);
    t.lease = LeaseGuard::unbounded(5);
    assert_eq!(c.converge(&t).await.unwrap().status, SessionState::Running);

    armed.store(true, Ordering::SeqCst);
    let mut stale = target(&id, DesiredState::Sleeping, 2);
    stale.lease = LeaseGuard::unbounded(5);
    match c.converge(&stale).await.unwrap_err() {
        ExecError::Fenced(Fenced::NewerFence { ours: 5, theirs: 9, .. }) => {}
        other => panic!("expected the 409 to count as fenced, got {other:?}"),
    }
    assert!(!armed.load(Ordering::SeqCst), "the newer write happened");
    let deployments: Api<Deployment> = Api::namespaced(c.raw.clone(), NS);
    let d = deployments.get(&format!("ws-{id}")).await.unwrap();
    assert_eq!(fence_of(&d).as_deref(), Some("9"));
    assert_eq!(d.spec.unwrap().replicas, Some(1), "the stale apply did not land");
}
