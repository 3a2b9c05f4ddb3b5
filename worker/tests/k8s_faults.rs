//! Fault injection: the fake's interceptors (500 and 409 on creates, 422)
//! and the fault layer (429, 403) between the executor and the cluster.
//! Retryable faults end in success when retried the way the runner retries;
//! permanent ones fail at once, after a single call, keeping the message.
#![allow(clippy::unwrap_used)]

mod k8s_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_support::{Cluster, Fault, config, sid, target};
use kube_fake_client::{Error as FakeError, interceptor};
use proto_types::{DesiredState, SessionState};
use worker::executor::ExecError;

/// Interceptors failing the first `n` creates (POST: a fresh session's
/// objects are created, never applied) with `make()`.
fn failing_creates(n: usize, make: fn() -> FakeError) -> (interceptor::Funcs, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let funcs = interceptor::Funcs::new()
        .create(move |_ctx| if seen.fetch_add(1, Ordering::SeqCst) < n { Err(make()) } else { Ok(None) });
    (funcs, calls)
}

#[tokio::test]
async fn server_errors_500_are_retried_until_success() {
    let (funcs, calls) = failing_creates(3, || FakeError::Internal("etcd leader changed".into()));
    let c = Cluster::with(Some(funcs), config(), true).await;
    let id = sid("f500");
    let t = target(&id, DesiredState::Running, 1);
    let first = c.converge(&t).await.unwrap_err();
    assert!(first.is_retryable(), "{first}");
    assert!(first.to_string().contains("etcd leader changed"), "{first}");
    let (res, attempts) = c.converge_retrying(&t).await;
    assert_eq!(res.unwrap().status, SessionState::Running);
    assert!(attempts >= 2, "the remaining failures took retries");
    assert!(calls.load(Ordering::SeqCst) > 3);
}

#[tokio::test]
async fn conflicts_409_are_retryable() {
    // The gate reads again after each 409; three in a row are left to the retry policy.
    let (funcs, _) = failing_creates(3, || FakeError::Conflict("the object has been modified".into()));
    let c = Cluster::with(Some(funcs), config(), true).await;
    let t = target(&sid("f409"), DesiredState::Running, 1);
    let e = c.converge(&t).await.unwrap_err();
    assert!(e.is_retryable() && e.to_string().contains("409"), "{e}");
    assert_eq!(c.converge(&t).await.unwrap().status, SessionState::Running);
}

#[tokio::test]
async fn invalid_objects_422_fail_at_once_with_the_message() {
    let (funcs, calls) =
        failing_creates(usize::MAX, || FakeError::InvalidRequest("spec.replicas: Invalid value: -1".into()));
    let c = Cluster::with(Some(funcs), config(), true).await;
    let e = c.converge(&target(&sid("f422"), DesiredState::Running, 1)).await.unwrap_err();
    match e {
        ExecError::Permanent { message, status, .. } => {
            assert_eq!(status, SessionState::Failed);
            assert!(message.contains("spec.replicas: Invalid value: -1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no second write after a permanent error");
}

#[tokio::test]
async fn throttling_429_is_retried_until_success() {
    let c = Cluster::start().await;
    c.faults.set(Some(Fault::FirstN { method: None, n: 10, code: 429, message: "rate limited".into() }));
    let t = target(&sid("f429"), DesiredState::Running, 1);
    let first = c.converge(&t).await.unwrap_err();
    assert!(first.is_retryable() && first.to_string().contains("429"), "{first}");
    let (res, _) = c.converge_retrying(&t).await;
    assert_eq!(res.unwrap().status, SessionState::Running);
    assert_eq!(c.faults.injected.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn forbidden_403_is_permanent_and_not_retried() {
    let c = Cluster::start().await;
    let msg = "persistentvolumeclaims is forbidden: User \"system:serviceaccount:sm:worker\" cannot create";
    c.faults.set(Some(Fault::FirstN {
        method: Some(http::Method::POST),
        n: usize::MAX,
        code: 403,
        message: msg.into(),
    }));
    let (res, attempts) = c.converge_retrying(&target(&sid("f403"), DesiredState::Running, 1)).await;
    match res.unwrap_err() {
        ExecError::Permanent { message, status, .. } => {
            assert_eq!(status, SessionState::Failed);
            assert!(message.contains(msg) && message.contains("403"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(attempts, 1, "a permanent error is not retried");
    assert_eq!(c.faults.injected.load(Ordering::SeqCst), 1, "the executor stops at the first 403");
}

#[tokio::test]
async fn a_503_during_delete_keeps_the_volume_until_a_retry_finishes() {
    let c = Cluster::start().await;
    let id = sid("f503");
    c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    c.faults.set(Some(Fault::FirstN {
        method: Some(http::Method::DELETE),
        n: 2,
        code: 503,
        message: "apiserver unavailable".into(),
    }));
    let t = target(&id, DesiredState::Deleted, 2);
    let (res, attempts) = c.converge_retrying(&t).await;
    assert_eq!(res.unwrap().status, SessionState::Deleted);
    assert_eq!(attempts, 3);
}
