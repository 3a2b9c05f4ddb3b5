//! JSON log lines that carry the OpenTelemetry `trace_id` and `span_id` of
//! the span they were logged in, so a log line leads to its trace.
//!
//! [`JsonWithTraceIds`] wraps `tracing-subscriber`'s own JSON formatter
//! (timestamp, level, target, fields, current span, span list: unchanged)
//! and splices two string fields before the closing brace. The ids come
//! from the OpenTelemetry context that `tracing-opentelemetry` activates on
//! span entry, so nothing is looked up in span extensions and nothing is
//! added without an OpenTelemetry layer. Chosen over a third-party JSON
//! subscriber because it is ~40 lines on top of the maintained formatter
//! and does not pin another crate to our `tracing-opentelemetry` version.
//! Not a general JSON log library: no field renaming, no flattening options.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `tracing-subscriber`'s JSON event format plus `trace_id` and `span_id`.
#[derive(Debug)]
pub struct JsonWithTraceIds {
    inner: Format<Json>,
}

impl Default for JsonWithTraceIds {
    fn default() -> Self {
        Self { inner: Format::default().json().with_current_span(true).with_span_list(false) }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        JsonFields: for<'w> FormatFields<'w>,
    {
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let span_context = span.span_context();
        if span_context.is_valid() {
            splice_ids(&mut line, &span_context.trace_id().to_string(), &span_context.span_id().to_string());
        }
        writer.write_str(&line)
    }
}

/// Inserts `,"trace_id":"..","span_id":".."` before the final `}` of a JSON
/// object line. Ids are lowercase hex, so they need no escaping.
fn splice_ids(line: &mut String, trace_id: &str, span_id: &str) {
    let Some(close) = line.rfind('}') else { return };
    let fields = format!(r#","trace_id":"{trace_id}","span_id":"{span_id}""#);
    line.insert_str(close, &fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_added_inside_the_object_keeping_the_newline() {
        let mut line = "{\"level\":\"INFO\",\"fields\":{\"message\":\"hi\"}}\n".to_owned();
        splice_ids(&mut line, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
        assert_eq!(
            line,
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"hi\"},\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"span_id\":\"b7ad6b7169203331\"}\n"
        );
    }
}
