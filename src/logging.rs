//! Logs the way Prometheus exporters do, on standard error: one line per event, either
//! logfmt (`ts=2026-11-25T14:12:11.123Z level=info source=runtime.rs:97 msg="..." key=value`)
//! or JSON with the same keys.
//!
//! `--log.level` applies to the exporter's own events. Other crates (the HTTP client and
//! server, TLS) log only warnings and errors: their debug output is noise to an operator,
//! and an HTTP client's debug lines may carry request URLs, which carry access tokens.
//!
//! The formatter is written here rather than taken from a logfmt crate because the keys
//! (`ts`, `level`, `msg`) must match what Prometheus users grep and parse for; tracing names
//! the message `message`, and the crates that format tracing events keep that name.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogLevel, LogSettings};

/// The crate whose events `--log.level` governs (the library and the binary share it).
const OWN_TARGET: &str = "dingtalk_exporter";

/// Installs the process-wide logger, writing to standard error. Fails if one is installed.
pub fn init(settings: LogSettings) -> Result<(), tracing_subscriber::util::TryInitError> {
    tracing_subscriber::registry()
        .with(layer(settings, io::stderr))
        .try_init()
}

/// The logging layer of [`init`], writing to `writer`: for tests that capture what the
/// exporter logs (see [`CapturedLogs`]).
pub fn layer<S, W>(settings: LogSettings, writer: W) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        // Span fields are kept as JSON text, which the line format reads back and merges.
        .fmt_fields(JsonFields::new())
        .event_format(LineFormat {
            format: settings.format,
        })
        .with_writer(writer)
        .with_filter(filter(settings.level))
}

/// A complete subscriber with the layer of [`init`], writing to `writer`; for
/// `tracing::subscriber::set_default` or `with_default` in tests.
pub fn subscriber<W>(settings: LogSettings, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry().with(layer(settings, writer))
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

fn filter(level: LogLevel) -> Targets {
    let own = level_filter(level);
    Targets::new()
        .with_target(OWN_TARGET, own)
        .with_default(own.min(LevelFilter::WARN))
}

/// Log lines in memory, for tests: pass a clone to [`layer`] or [`subscriber`] and read
/// [`CapturedLogs::text`] afterwards.
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn new() -> Self {
        CapturedLogs::default()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The writer of one log line into [`CapturedLogs`].
pub struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedWriter;

    fn make_writer(&'a self) -> CapturedWriter {
        CapturedWriter(self.0.clone())
    }
}

/// Formats one event as a logfmt or JSON line.
struct LineFormat {
    format: LogFormat,
}

impl<S> FormatEvent<S, JsonFields> for LineFormat
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = FieldCollector::default();
        event.record(&mut fields);

        let mut line: Vec<(String, Value)> = vec![
            (
                "ts".to_string(),
                Value::String(
                    chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string(),
                ),
            ),
            (
                "level".to_string(),
                Value::String(metadata.level().as_str().to_ascii_lowercase()),
            ),
        ];
        if let (Some(file), Some(number)) = (metadata.file(), metadata.line()) {
            line.push((
                "source".to_string(),
                Value::String(format!("{}:{number}", source_file(file))),
            ));
        }
        line.push((
            "msg".to_string(),
            Value::String(fields.message.take().unwrap_or_default()),
        ));
        line.append(&mut fields.fields);

        // Fields of the spans the event happened in, outermost first.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(recorded) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) =
                    serde_json::from_str::<Value>(recorded.fields.as_str())
                {
                    line.extend(span_fields);
                }
            }
        }

        match self.format {
            LogFormat::Logfmt => write_logfmt(&mut writer, &line)?,
            LogFormat::Json => {
                let object: Map<String, Value> = line.into_iter().collect();
                let text = serde_json::to_string(&object).map_err(|_| fmt::Error)?;
                writer.write_str(&text)?;
            }
        }
        writer.write_char('\n')
    }
}

/// `src/tracker/scheduler.rs` as `tracker/scheduler.rs`: the path inside its crate.
fn source_file(file: &str) -> &str {
    match file.rfind("src/") {
        Some(at) => &file[at + 4..],
        None => file,
    }
}

/// Collects an event's fields as JSON values, the message apart.
#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Vec<(String, Value)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(text) => text,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

impl Visit for FieldCollector {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.push(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::String(format!("{value:?}")));
    }
}

/// `key=value` pairs separated by spaces; values quoted when they must be, as go-logfmt
/// does, so existing logfmt parsers read them back.
fn write_logfmt(writer: &mut Writer<'_>, line: &[(String, Value)]) -> fmt::Result {
    for (index, (key, value)) in line.iter().enumerate() {
        if index > 0 {
            writer.write_char(' ')?;
        }
        for c in key.chars() {
            writer.write_char(if c <= ' ' || c == '=' || c == '"' {
                '_'
            } else {
                c
            })?;
        }
        writer.write_char('=')?;
        match value {
            Value::String(text) => write_logfmt_value(writer, text)?,
            other => write_logfmt_value(writer, &other.to_string())?,
        }
    }
    Ok(())
}

fn write_logfmt_value(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    let needs_quotes = text.is_empty()
        || text
            .chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if !needs_quotes {
        return writer.write_str(text);
    }
    writer.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => writer.write_str("\\\"")?,
            '\\' => writer.write_str("\\\\")?,
            '\n' => writer.write_str("\\n")?,
            '\r' => writer.write_str("\\r")?,
            '\t' => writer.write_str("\\t")?,
            c if c.is_control() => write!(writer, "\\u{:04x}", c as u32)?,
            c => writer.write_char(c)?,
        }
    }
    writer.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(level: LogLevel, format: LogFormat) -> LogSettings {
        LogSettings { level, format }
    }

    /// A logfmt line carries ts, level, source and msg first, then the event's fields, with
    /// values quoted only where logfmt needs it.
    #[test]
    fn logfmt_lines_look_like_prometheus_exporters() {
        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(
            subscriber(settings(LogLevel::Info, LogFormat::Logfmt), logs.clone()),
            || {
                tracing::info!(
                    agent_id = 42_i64,
                    app = "hr",
                    note = "a \"b\"\nc",
                    "task registered"
                );
            },
        );
        let text = logs.text();
        let line = text.trim_end();
        assert!(line.starts_with("ts=20"), "{line}");
        assert!(line.contains(" level=info source=logging.rs:"), "{line}");
        assert!(
            line.ends_with(r#"msg="task registered" agent_id=42 app=hr note="a \"b\"\nc""#),
            "{line}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    /// A JSON line holds the same keys, and the fields of enclosing spans.
    #[test]
    fn json_lines_hold_the_same_keys_and_span_fields() {
        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(
            subscriber(settings(LogLevel::Debug, LogFormat::Json), logs.clone()),
            || {
                let _poll = tracing::info_span!("poll", task_id = 7_i64).entered();
                tracing::debug!(progress = 0.5, "answer");
            },
        );
        let line: Value = serde_json::from_str(logs.text().trim_end()).unwrap();
        assert_eq!(line["level"], "debug");
        assert_eq!(line["msg"], "answer");
        assert_eq!(line["progress"], 0.5);
        assert_eq!(line["task_id"], 7);
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }

    /// Events below --log.level are dropped; other crates log warnings and errors only.
    #[test]
    fn level_filters_own_events_and_quiets_other_crates() {
        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(
            subscriber(settings(LogLevel::Debug, LogFormat::Logfmt), logs.clone()),
            || {
                tracing::debug!("own debug");
                tracing::debug!(target: "reqwest::connect", "dependency debug");
                tracing::warn!(target: "hyper::proto", "dependency warning");
            },
        );
        let text = logs.text();
        assert!(text.contains("own debug"), "{text}");
        assert!(!text.contains("dependency debug"), "{text}");
        assert!(text.contains("dependency warning"), "{text}");

        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(
            subscriber(settings(LogLevel::Warn, LogFormat::Logfmt), logs.clone()),
            || {
                tracing::info!("own info");
                tracing::warn!("own warning");
            },
        );
        let text = logs.text();
        assert!(!text.contains("own info"), "{text}");
        assert!(text.contains("own warning"), "{text}");
    }
}
