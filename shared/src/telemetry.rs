//! Logging: one JSON object per line on stdout in Cloud Logging's structured format
//! (`severity`, `message`, `time`, plus the event's and its spans' fields), or a human-readable
//! format on a terminal. The job's last line is `Job completed successfully` or
//! `Job execution failed`; the deployment's log-based metrics match on those messages.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The final message of a successful job (matched by a log-based metric).
pub const JOB_SUCCEEDED: &str = "Job completed successfully";
/// The final message of a failed job (matched by a log-based metric).
pub const JOB_FAILED: &str = "Job execution failed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    #[default]
    Auto,
    /// One Cloud Logging JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The job and the orchestrator: their logs are their output.
    Stdout,
    /// jobctl: stdout holds the command's own output.
    Stderr,
}

/// Installs the global subscriber on stdout. The level comes from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    init_with(format, LogTarget::Stdout, "info");
}

/// Installs the global subscriber writing to `target`; `auto` is JSON unless `target` is a
/// terminal. The level comes from `RUST_LOG`, else `default_level`.
pub fn init_with(format: LogFormat, target: LogTarget, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let terminal = match target {
        LogTarget::Stdout => std::io::stdout().is_terminal(),
        LogTarget::Stderr => std::io::stderr().is_terminal(),
    };
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
        };
        registry.with(CloudLoggingLayer::new(out)).try_init()
    } else {
        let out = match target {
            LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
            LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
        };
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false).with_ansi(terminal).with_writer(out))
            .try_init()
    };
}

/// Fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_string(), Value::String(value.to_string()));
    }
}

/// Writes Cloud Logging structured JSON lines.
pub struct CloudLoggingLayer<W: Write + Send + 'static> {
    out: Mutex<W>,
}

impl<W: Write + Send + 'static> CloudLoggingLayer<W> {
    pub fn new(w: W) -> Self {
        CloudLoggingLayer { out: Mutex::new(w) }
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, W> Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Write + Send + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut map = Map::new();
        attrs.record(&mut JsonVisitor(&mut map));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(map));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(f) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        // Outer spans first so inner spans and the event itself override.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &f.0 {
                        fields.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));
        let message = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let mut line = Map::new();
        line.insert("severity".into(), severity(event.metadata().level()).into());
        line.insert("message".into(), message.into());
        line.insert("time".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into());
        line.insert("target".into(), event.metadata().target().into());
        for (k, v) in fields {
            line.entry(k).or_insert(v);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_cloud_logging_json_with_span_fields() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(CloudLoggingLayer::new(buf.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", config = "sales", run_id = 7);
            let _g = span.enter();
            tracing::warn!(rows = 42u64, "loaded");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["severity"], "WARNING");
        assert_eq!(v["message"], "loaded");
        assert_eq!(v["config"], "sales");
        assert_eq!(v["run_id"], 7);
        assert_eq!(v["rows"], 42);
    }
}
