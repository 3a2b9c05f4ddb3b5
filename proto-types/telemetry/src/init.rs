//! Building the process's `tracing` subscriber from a [`TelemetryConfig`]:
//! an `EnvFilter` (`RUST_LOG`), a human or JSON log layer, and, only when
//! an OTLP endpoint is configured, a `tracing-opentelemetry` layer feeding
//! a batch span exporter. [`TelemetryGuard`] flushes and shuts the exporter
//! down (bounded) when dropped.
//!
//! [`init`] / [`init_with`] install the subscriber globally (once per
//! process, from `main`); [`build`] / [`build_with_writer`] return it as a
//! [`Dispatch`] for tests to scope with `tracing::dispatcher::with_default`.
//! Without an endpoint no exporter, batch thread or OpenTelemetry layer exists.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{ConfigError, LogFormat, OtlpConfig, OtlpProtocol, SamplerConfig, TelemetryConfig};
use crate::json::JsonWithTraceIds;

/// Upper bound on flushing spans when the guard drops, so shutdown never hangs on a dead collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An environment variable holds an unusable value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `RUST_LOG` is not a valid filter.
    #[error("RUST_LOG is not a valid filter")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built (bad endpoint URL, ...).
    #[error("could not build the OTLP span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized(#[source] tracing_subscriber::util::TryInitError),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` but this build has no `grpc` feature.
    #[error("OTLP over gRPC is not built in (enable the sm-telemetry `grpc` feature) or use http/protobuf")]
    GrpcNotBuilt,
    /// The gRPC exporter must be built inside a Tokio runtime (it spawns its connection task there).
    #[error("OTLP over gRPC must be initialised inside a Tokio runtime")]
    GrpcNeedsRuntime,
    /// Flushing spans to the collector failed or timed out.
    #[error("could not flush spans")]
    Flush(#[source] OTelSdkError),
}

impl TelemetryError {
    /// Whether the environment holds a bad setting (bad variable, `RUST_LOG`,
    /// endpoint URL, or a protocol this build lacks): binaries exit with
    /// status 64 on these, and with 1 on the others.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::Filter(_) | Self::Exporter(_) | Self::GrpcNotBuilt)
    }
}

/// Keeps the span exporter alive; dropping it flushes pending spans and
/// shuts the exporter down (at most a few seconds). Hold it in `main`
/// until the process is about to exit.
#[derive(Debug)]
#[must_use = "dropping the guard shuts span export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (blocking). A no-op without an exporter.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        match &self.provider {
            Some(provider) => provider.force_flush().map_err(TelemetryError::Flush),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Nothing left to report the failure to: the subscriber may be gone.
            let _ = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

/// Reads the standard environment variables (see
/// [`TelemetryConfig::from_lookup`]) and installs the global subscriber.
/// `default_service_name` is used unless `OTEL_SERVICE_NAME` (or
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
pub fn init(default_service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    init_with(&TelemetryConfig::from_env(default_service_name)?)
}

/// Installs the global subscriber built from `config` (logs to stdout).
pub fn init_with(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (dispatch, guard) = build(config)?;
    dispatch.try_init().map_err(TelemetryError::AlreadyInitialized)?;
    Ok(guard)
}

/// The subscriber `config` describes, logging to stdout, not installed.
/// Human logs are coloured only when stdout is a terminal (never in files
/// or `kubectl logs`).
pub fn build(config: &TelemetryConfig) -> Result<(Dispatch, TelemetryGuard), TelemetryError> {
    use std::io::IsTerminal as _;
    build_inner(config, std::io::stdout, std::io::stdout().is_terminal())
}

/// The subscriber `config` describes, logging to `writer`, not installed.
/// Tests scope it with `tracing::dispatcher::with_default(&dispatch, ..)`.
/// Human logs written this way carry no colour codes.
pub fn build_with_writer<W>(config: &TelemetryConfig, writer: W) -> Result<(Dispatch, TelemetryGuard), TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build_inner(config, writer, false)
}

fn build_inner<W>(config: &TelemetryConfig, writer: W, ansi: bool) -> Result<(Dispatch, TelemetryGuard), TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.log_filter).map_err(TelemetryError::Filter)?;
    let provider = config.otlp.as_ref().map(|otlp| tracer_provider(config, otlp)).transpose()?;
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer().with_tracer(p.tracer(env!("CARGO_PKG_NAME"))).with_tracked_inactivity(false)
    });
    let (human, json) = match config.log_format {
        LogFormat::Human => (Some(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer)), None),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonWithTraceIds::default())
                    .with_writer(writer),
            ),
        ),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(otel_layer).with(human).with(json);
    Ok((Dispatch::new(subscriber), TelemetryGuard { provider }))
}

fn tracer_provider(config: &TelemetryConfig, otlp: &OtlpConfig) -> Result<SdkTracerProvider, TelemetryError> {
    // The exporter's HTTP client uses rustls; with both ring and aws-lc-rs
    // linked into one binary (kube pulls one, reqwest the other) rustls has
    // no default provider and building the client panics. Install ring once
    // per process (a second install is refused harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = match otlp.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(otlp.traces_endpoint.clone())
            .build()
            .map_err(TelemetryError::Exporter)?,
        OtlpProtocol::Grpc => grpc_exporter(&otlp.traces_endpoint)?,
    };
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes(config.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .with_sampler(sampler(config.sampler))
        .build())
}

#[cfg(feature = "grpc")]
fn grpc_exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TelemetryError::GrpcNeedsRuntime);
    }
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(TelemetryError::Exporter)
}

#[cfg(not(feature = "grpc"))]
fn grpc_exporter(_endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    Err(TelemetryError::GrpcNotBuilt)
}

fn sampler(config: SamplerConfig) -> Sampler {
    match config {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerConfig::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerConfig::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerConfig::ParentBasedTraceIdRatio(r) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink the test can read back.
    #[derive(Debug, Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    #[test]
    fn without_an_endpoint_nothing_is_exported_and_logs_still_flow() {
        let mut config = TelemetryConfig::new("sm-api");
        config.log_format = LogFormat::Json;
        let buffer = Buffer::default();
        let (dispatch, guard) = build_with_writer(&config, buffer.clone()).unwrap();
        assert!(!guard.is_exporting());
        guard.flush().unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let _span = tracing::info_span!("http.request", job.id = "j-1").entered();
            assert_eq!(crate::current_trace_context(), (None, None));
            tracing::info!(status = 202, "accepted");
            tracing::debug!("filtered out at the default level");
        });
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["fields"]["message"], "accepted");
        assert_eq!(lines[0]["span"]["name"], "http.request");
        assert!(lines[0].get("trace_id").is_none(), "no ids without tracing: {}", lines[0]);
    }

    /// Regression: human logs written to a file or pipe carried ANSI colour codes.
    #[test]
    fn human_logs_to_a_non_terminal_have_no_colour_codes() {
        let config = TelemetryConfig::new("sm-worker");
        let buffer = Buffer::default();
        let (dispatch, _guard) = build_with_writer(&config, buffer.clone()).unwrap();
        tracing::dispatcher::with_default(&dispatch, || tracing::info!(job = "j-1", "started"));
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("started") && text.contains("job=\"j-1\""), "{text}");
        assert!(!text.contains('\u{1b}'), "no escape codes: {text:?}");
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_id_of_the_current_span() {
        // The endpoint is never reached: no span is flushed before the guard drops
        // except at shutdown, which gives up on the closed port within its bound.
        let port = testkit::free_port().unwrap();
        let mut config = TelemetryConfig::new("sm-worker").with_otlp_http(format!("http://127.0.0.1:{port}/v1/traces"));
        config.log_format = LogFormat::Json;
        let buffer = Buffer::default();
        let (dispatch, guard) = build_with_writer(&config, buffer.clone()).unwrap();
        assert!(guard.is_exporting());
        let traceparent = tracing::dispatcher::with_default(&dispatch, || {
            let _span = tracing::info_span!("job.process").entered();
            tracing::warn!("retrying");
            crate::current_trace_context().0.unwrap()
        });
        let line = &buffer.lines()[0];
        assert_eq!(line["trace_id"].as_str().unwrap(), &traceparent[3..35]);
        assert_eq!(line["span_id"].as_str().unwrap(), &traceparent[36..52]);
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn a_bad_filter_or_endpoint_is_a_typed_error() {
        let mut config = TelemetryConfig::new("sm-api");
        config.log_filter = "info,[[[".into();
        assert!(matches!(build(&config), Err(TelemetryError::Filter(_))));
        let config = TelemetryConfig::new("sm-api").with_otlp_http("not a url");
        assert!(matches!(build(&config), Err(TelemetryError::Exporter(_))));
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn grpc_outside_a_tokio_runtime_is_refused_instead_of_panicking() {
        let config = TelemetryConfig::new("sm-api").with_otlp_grpc("http://127.0.0.1:4317");
        assert!(matches!(build(&config), Err(TelemetryError::GrpcNeedsRuntime)));
    }
}
