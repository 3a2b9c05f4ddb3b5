//! An in-test OTLP/HTTP trace receiver: what Jaeger or a collector would
//! be, reduced to "remember every span and let the test wait for some".
//!
//! [`OtlpReceiver::start`] listens on a free loopback port, in its own
//! thread with its own Tokio runtime, so it keeps answering while the test
//! blocks (for example in a span flush), and accepts both OTLP transports:
//! `http/protobuf` (`POST /v1/traces`, `application/x-protobuf`; point the
//! exporter at [`OtlpReceiver::traces_endpoint`]) and `grpc` (h2c, unary
//! `TraceService/Export`; point it at [`OtlpReceiver::endpoint`]). Bodies
//! are `ExportTraceServiceRequest`s decoded with `opentelemetry-proto`.
//! Dropping the receiver stops the server.
//!
//! Not a collector: no OTLP/JSON, no compression, no persistence.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as ProtoStatusCode;
use prost::Message as _;
use tokio::sync::oneshot;

/// Largest request body accepted (the SDK batches at most 512 spans).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The gRPC method an OTLP/gRPC trace exporter calls.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

type Body = BoxBody<Bytes, Infallible>;

/// The status of a received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanStatus {
    /// Not set (the default for spans that did not fail).
    Unset,
    /// Explicitly OK.
    Ok,
    /// Error, with its description.
    Error(String),
}

/// One span as the receiver saw it; ids are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedSpan {
    /// Span name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Span kind as the OTLP enum number (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Attributes, every value rendered as a string (`42`, `true`, `text`).
    pub attributes: BTreeMap<String, String>,
    /// Status.
    pub status: SpanStatus,
    /// `service.name` of the resource that sent it.
    pub service_name: Option<String>,
}

impl CollectedSpan {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// No matching spans arrived in time; carries what did arrive, for the assertion message.
#[derive(Debug)]
pub struct WaitTimedOut {
    /// Every span received so far.
    pub seen: Vec<CollectedSpan>,
}

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spans did not arrive in time; received {}:", self.seen.len())?;
        for s in &self.seen {
            write!(
                f,
                "\n  {} trace={} span={} parent={:?} {:?}",
                s.name, s.trace_id, s.span_id, s.parent_span_id, s.attributes
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitTimedOut {}

#[derive(Debug, Default)]
struct Store {
    spans: Mutex<Vec<CollectedSpan>>,
    changed: Condvar,
}

impl Store {
    fn push(&self, new: Vec<CollectedSpan>) {
        let mut spans = self.spans.lock().expect("no thread panics while holding the span store lock");
        spans.extend(new);
        self.changed.notify_all();
    }

    fn snapshot(&self) -> Vec<CollectedSpan> {
        self.spans.lock().expect("no thread panics while holding the span store lock").clone()
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Binds a free loopback port and starts serving.
    pub fn start() -> io::Result<Self> {
        let listener = StdTcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let store = Arc::new(Store::default());
        let (stop, stopped) = oneshot::channel();
        let thread_store = Arc::clone(&store);
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || runtime.block_on(serve(listener, thread_store, stopped)))?;
        Ok(Self { addr, store, stop: Some(stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:{port}` (what `OTEL_EXPORTER_OTLP_ENDPOINT` would hold).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:{port}/v1/traces` (what `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` would hold).
    pub fn traces_endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.store.snapshot()
    }

    /// Blocks until `done(all spans so far)` holds, or `timeout` passes.
    /// Do not call it from a Tokio runtime thread that the code under test
    /// needs; use [`OtlpReceiver::wait_until_async`] there.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Result<Vec<CollectedSpan>, WaitTimedOut> {
        let deadline = Instant::now() + timeout;
        let mut spans = self.store.spans.lock().expect("no thread panics while holding the span store lock");
        loop {
            if done(&spans) {
                return Ok(spans.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitTimedOut { seen: spans.clone() });
            }
            spans = self
                .store
                .changed
                .wait_timeout(spans, left)
                .expect("no thread panics while holding the span store lock")
                .0;
        }
    }

    /// Blocks until a span matching `matches` arrives and returns it.
    pub fn wait_for_span(
        &self,
        timeout: Duration,
        matches: impl Fn(&CollectedSpan) -> bool,
    ) -> Result<CollectedSpan, WaitTimedOut> {
        let spans = self.wait_until(timeout, |spans| spans.iter().any(&matches))?;
        Ok(spans.into_iter().find(|s| matches(s)).expect("wait_until returned because one matches"))
    }

    /// Like [`OtlpReceiver::wait_until`], polling without blocking the
    /// runtime (real time: not for tests that pause Tokio's clock).
    pub async fn wait_until_async(
        &self,
        timeout: Duration,
        done: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Result<Vec<CollectedSpan>, WaitTimedOut> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if Instant::now() >= deadline {
                return Err(WaitTimedOut { seen: spans });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: StdTcpListener, store: Arc<Store>, mut stopped: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&store)));
            // HTTP/1.1 for http/protobuf, HTTP/2 with prior knowledge (h2c) for gRPC.
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(req: Request<Incoming>, store: Arc<Store>) -> Result<Response<Body>, Infallible> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let grpc = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/traces") => false,
        (&Method::POST, GRPC_EXPORT_PATH) => true,
        _ => return Ok(reply(StatusCode::NOT_FOUND)),
    };
    let expected = if grpc { "application/grpc" } else { "application/x-protobuf" };
    if !content_type.starts_with(expected) {
        return Ok(reply(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE)),
    };
    if grpc {
        let decoded = grpc_message(&body).and_then(|m| ExportTraceServiceRequest::decode(m).ok());
        return Ok(match decoded {
            Some(request) => {
                store.push(flatten(request));
                grpc_reply(0)
            }
            None => grpc_reply(3), // INVALID_ARGUMENT
        });
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            store.push(flatten(request));
            // An empty ExportTraceServiceResponse encodes to zero bytes.
            Ok(reply(StatusCode::OK))
        }
        Err(_) => Ok(reply(StatusCode::BAD_REQUEST)),
    }
}

/// The single uncompressed message of a unary gRPC request body
/// (1 byte compression flag, 4 bytes big-endian length, message).
fn grpc_message(body: &[u8]) -> Option<&[u8]> {
    let (&[0, a, b, c, d], message) = body.split_first_chunk::<5>()? else { return None };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    message.get(..len)
}

fn reply(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    response
}

/// A unary gRPC answer: an empty `ExportTraceServiceResponse` and `grpc-status` in the trailers.
fn grpc_reply(grpc_status: u16) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(grpc_status));
    let body =
        Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])).with_trailers(std::future::ready(Some(Ok(trailers)))).boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<CollectedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource_attrs = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service_name = resource_attrs.get("service.name").cloned();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let status = match span.status {
                    Some(s) if s.code == ProtoStatusCode::Error as i32 => SpanStatus::Error(s.message),
                    Some(s) if s.code == ProtoStatusCode::Ok as i32 => SpanStatus::Ok,
                    _ => SpanStatus::Unset,
                };
                out.push(CollectedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    status,
                    service_name: service_name.clone(),
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(render).unwrap_or_default())).collect()
}

fn render(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(render).collect();
            format!("[{}]", items.join(","))
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::{Read as _, Write as _};

    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    use super::*;

    fn string_kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
            ..Default::default()
        }
    }

    /// A minimal HTTP/1.1 POST over a raw socket; returns the status line.
    fn post(receiver: &OtlpReceiver, path: &str, content_type: &str, body: &[u8]) -> String {
        let mut stream = std::net::TcpStream::connect(receiver.addr).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn decodes_posted_spans_and_wakes_waiters() {
        let receiver = OtlpReceiver::start().unwrap();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", "sm-worker")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        parent_span_id: vec![0x02; 8],
                        name: "job.process".into(),
                        kind: 5,
                        attributes: vec![
                            string_kv("job.id", "j-1"),
                            KeyValue {
                                key: "attempt".into(),
                                value: Some(AnyValue { value: Some(any_value::Value::IntValue(2)) }),
                                ..Default::default()
                            },
                        ],
                        status: Some(Status { message: "boom".into(), code: ProtoStatusCode::Error as i32 }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let status = post(&receiver, "/v1/traces", "application/x-protobuf", &request.encode_to_vec());
        assert!(status.contains("200"), "{status}");
        let span = receiver.wait_for_span(Duration::from_secs(10), |s| s.name == "job.process").unwrap();
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.parent_span_id.as_deref(), Some("0202020202020202"));
        assert_eq!(span.attr("job.id"), Some("j-1"));
        assert_eq!(span.attr("attempt"), Some("2"));
        assert_eq!(span.status, SpanStatus::Error("boom".into()));
        assert_eq!(span.service_name.as_deref(), Some("sm-worker"));
    }

    #[test]
    fn refuses_json_and_unknown_paths_and_times_out_with_what_it_saw() {
        let receiver = OtlpReceiver::start().unwrap();
        assert!(post(&receiver, "/v1/traces", "application/json", b"{}").contains("415"));
        assert!(post(&receiver, "/v1/metrics", "application/x-protobuf", b"").contains("404"));
        let err = receiver.wait_until(Duration::from_millis(50), |spans| !spans.is_empty()).unwrap_err();
        assert!(err.seen.is_empty());
    }
}
