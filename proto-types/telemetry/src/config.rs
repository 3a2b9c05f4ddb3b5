//! [`TelemetryConfig`]: every telemetry setting as a plain value, and its
//! parsing from the standard environment variables (`RUST_LOG`,
//! `LOG_FORMAT`, `OTEL_*`).
//!
//! Parsing is pure: [`TelemetryConfig::from_lookup`] takes a lookup
//! function, so tests never touch the process environment;
//! [`TelemetryConfig::from_env`] is the one place that reads it. Building
//! subscribers and exporters from a config is [`crate::init`]'s job.

use std::collections::BTreeMap;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line, with `trace_id` and `span_id` when inside a traced span.
    Json,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the default).
    #[default]
    HttpProtobuf,
    /// `grpc` (needs the crate's `grpc` feature, on by default, and a Tokio runtime at init).
    Grpc,
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// For `http/protobuf` the full URL spans are POSTed to, e.g.
    /// `http://jaeger:4318/v1/traces`; for `grpc` the collector's address,
    /// e.g. `http://jaeger:4317`.
    pub traces_endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
}

/// Which traces are recorded and exported (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SamplerConfig {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with `OTEL_TRACES_SAMPLER_ARG` (0.0..=1.0).
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default): follow the caller's decision, sample new roots.
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG`.
    ParentBasedTraceIdRatio(f64),
}

/// Every telemetry setting.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `service.name` of exported spans.
    pub service_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), without `service.name`.
    pub resource_attributes: BTreeMap<String, String>,
    /// An `EnvFilter` directive string (`RUST_LOG`), e.g. `info,sm_worker=debug`.
    pub log_filter: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Span export; `None` installs no OpenTelemetry layer at all.
    pub otlp: Option<OtlpConfig>,
    /// Sampling of new traces.
    pub sampler: SamplerConfig,
}

/// A telemetry environment variable holds a value we cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `LOG_FORMAT` is neither `json` nor `text`/`human`.
    #[error("LOG_FORMAT must be `json` or `text`, got `{0}`")]
    LogFormat(String),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` is neither `http/protobuf` nor `grpc`.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL `{0}` is not supported (use `http/protobuf` or `grpc`)")]
    Protocol(String),
    /// `OTEL_TRACES_SAMPLER` is unknown.
    #[error("OTEL_TRACES_SAMPLER `{0}` is not one of always_on, always_off, traceidratio, parentbased_*")]
    Sampler(String),
    /// `OTEL_TRACES_SAMPLER_ARG` is not a ratio in 0..=1.
    #[error("OTEL_TRACES_SAMPLER_ARG must be a number between 0 and 1, got `{0}`")]
    SamplerArg(String),
}

impl TelemetryConfig {
    /// Defaults for a service: `info` logs, human format, no export, parent-based sampling.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            resource_attributes: BTreeMap::new(),
            log_filter: "info".to_owned(),
            log_format: LogFormat::Human,
            otlp: None,
            sampler: SamplerConfig::default(),
        }
    }

    /// The same config exporting spans over OTLP/HTTP to `traces_endpoint`
    /// (a full URL ending in `/v1/traces`).
    pub fn with_otlp_http(mut self, traces_endpoint: impl Into<String>) -> Self {
        self.otlp = Some(OtlpConfig { traces_endpoint: traces_endpoint.into(), protocol: OtlpProtocol::HttpProtobuf });
        self
    }

    /// The same config exporting spans over OTLP/gRPC to `endpoint` (e.g. `http://jaeger:4317`).
    pub fn with_otlp_grpc(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp = Some(OtlpConfig { traces_endpoint: endpoint.into(), protocol: OtlpProtocol::Grpc });
        self
    }

    /// Reads the process environment (see [`TelemetryConfig::from_lookup`]).
    pub fn from_env(default_service_name: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(default_service_name, |key| std::env::var(key).ok())
    }

    /// Builds a config from `lookup(name)` of the standard variables:
    /// `RUST_LOG`, `LOG_FORMAT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended),
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SDK_DISABLED`.
    /// Empty values count as unset.
    pub fn from_lookup(
        default_service_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |key: &str| lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut config = Self::new(default_service_name);
        if let Some(filter) = get("RUST_LOG") {
            config.log_filter = filter;
        }
        config.log_format = match get("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("text" | "human" | "pretty" | "full") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(ConfigError::LogFormat(other.to_owned())),
        };
        let mut attributes = parse_resource_attributes(get("OTEL_RESOURCE_ATTRIBUTES").as_deref().unwrap_or(""));
        if let Some(name) = attributes.remove("service.name") {
            config.service_name = name;
        }
        if let Some(name) = get("OTEL_SERVICE_NAME") {
            config.service_name = name;
        }
        config.resource_attributes = attributes;
        config.sampler =
            parse_sampler(get("OTEL_TRACES_SAMPLER").as_deref(), get("OTEL_TRACES_SAMPLER_ARG").as_deref())?;

        let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => return Err(ConfigError::Protocol(other.to_owned())),
        };
        let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                OtlpProtocol::Grpc => base,
            })
        });
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if let (Some(traces_endpoint), false) = (endpoint, disabled) {
            config.otlp = Some(OtlpConfig { traces_endpoint, protocol });
        }
        Ok(config)
    }
}

/// `k1=v1,k2=v2` (the `OTEL_RESOURCE_ATTRIBUTES` format); malformed pairs are skipped.
fn parse_resource_attributes(raw: &str) -> BTreeMap<String, String> {
    raw.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerConfig, ConfigError> {
    let ratio = || -> Result<f64, ConfigError> {
        match arg {
            None => Ok(1.0),
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| ConfigError::SamplerArg(raw.to_owned())),
        }
    };
    Ok(match name {
        None | Some("parentbased_always_on") => SamplerConfig::ParentBasedAlwaysOn,
        Some("always_on") => SamplerConfig::AlwaysOn,
        Some("always_off") => SamplerConfig::AlwaysOff,
        Some("traceidratio") => SamplerConfig::TraceIdRatio(ratio()?),
        Some("parentbased_always_off") => SamplerConfig::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
        Some(other) => return Err(ConfigError::Sampler(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        TelemetryConfig::from_lookup("sm-api", |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn empty_environment_means_info_human_logs_and_no_export() {
        let c = parse(&[]).unwrap();
        assert_eq!(c, TelemetryConfig::new("sm-api"));
        assert_eq!(c.log_filter, "info");
        assert!(c.otlp.is_none());
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
    }

    #[test]
    fn base_endpoint_gets_the_traces_path_and_signal_endpoint_wins() {
        let c = parse(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/")]).unwrap();
        assert_eq!(c.otlp.unwrap().traces_endpoint, "http://jaeger:4318/v1/traces");
        let c = parse(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom"),
        ])
        .unwrap();
        assert_eq!(c.otlp.unwrap().traces_endpoint, "http://collector:4318/custom");
    }

    #[test]
    fn sdk_disabled_turns_export_off() {
        let c = parse(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"), ("OTEL_SDK_DISABLED", "true")]).unwrap();
        assert!(c.otlp.is_none());
    }

    #[test]
    fn grpc_uses_the_base_endpoint_and_unknown_protocols_are_refused() {
        let c = parse(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://j:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        let otlp = c.unwrap().otlp.unwrap();
        assert_eq!((otlp.traces_endpoint.as_str(), otlp.protocol), ("http://j:4317", OtlpProtocol::Grpc));
        let err =
            parse(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://j:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(err.unwrap_err(), ConfigError::Protocol("http/json".into()));
    }

    #[test]
    fn service_name_precedence_env_over_attributes_over_default() {
        let c = parse(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs, deployment.environment=prod")]).unwrap();
        assert_eq!(c.service_name, "from-attrs");
        assert_eq!(c.resource_attributes.get("deployment.environment").map(String::as_str), Some("prod"));
        assert!(!c.resource_attributes.contains_key("service.name"));
        let c = parse(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"), ("OTEL_SERVICE_NAME", "sm-api-eu")])
            .unwrap();
        assert_eq!(c.service_name, "sm-api-eu");
    }

    #[test]
    fn samplers_and_ratio_are_parsed_and_bad_values_refused() {
        let c = parse(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.25")]);
        assert_eq!(c.unwrap().sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
        assert_eq!(parse(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap().sampler, SamplerConfig::AlwaysOff);
        let bad = parse(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]);
        assert_eq!(bad.unwrap_err(), ConfigError::SamplerArg("2".into()));
        assert!(matches!(parse(&[("OTEL_TRACES_SAMPLER", "xray")]), Err(ConfigError::Sampler(_))));
    }

    #[test]
    fn log_format_json_and_level_from_rust_log() {
        let c = parse(&[("LOG_FORMAT", "JSON"), ("RUST_LOG", "debug,hyper=warn")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "debug,hyper=warn");
        assert!(matches!(parse(&[("LOG_FORMAT", "xml")]), Err(ConfigError::LogFormat(_))));
    }
}
