//! The exporter's own metrics and the `/metrics` exposition.
//!
//! API counters, latencies and token state are long-lived `prometheus` collectors in
//! [`Telemetry`]. Task series are not: they are rendered afresh from a snapshot of the tracked
//! tasks at each scrape, so a task's series vanish by themselves when its retention ends.

use std::collections::HashMap;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::exporter::Exporter;
use crate::tracker::{SendStatus, Task, TaskState};

/// Counters and gauges about DingTalk calls, tokens, polling and the exporter itself.
pub struct Telemetry {
    pub registry: Registry,
    /// `dingtalk_api_requests_total{api}`
    pub api_requests: IntCounterVec,
    /// `dingtalk_api_errors_total{api,errcode}`
    pub api_errors: IntCounterVec,
    /// `dingtalk_api_request_duration_seconds{api}`
    pub api_duration: HistogramVec,
    /// `dingtalk_api_month_calls`
    pub month_calls: IntGauge,
    /// `dingtalk_token_refreshes_total{app}`
    pub token_refreshes: IntCounterVec,
    /// `dingtalk_token_refresh_failures_total{app}`
    pub token_refresh_failures: IntCounterVec,
    /// `dingtalk_token_expiry_timestamp_seconds{app}`
    pub token_expiry: GaugeVec,
    /// `dingtalk_up{app}`
    pub up: IntGaugeVec,
    /// `dingtalk_last_poll_success_timestamp_seconds{app}`
    pub last_poll_success: GaugeVec,
    /// `dingtalk_poll_lag_seconds`
    pub poll_lag: Gauge,
    /// `dingtalk_config_last_reload_successful`
    pub config_reload_successful: IntGauge,
    /// `dingtalk_config_last_reload_success_timestamp_seconds`
    pub config_reload_timestamp: Gauge,
}

impl Telemetry {
    /// Creates and registers every collector, plus the process metrics and build info.
    pub fn new() -> Telemetry {
        let registry = Registry::new();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "dingtalk_api_requests_total",
                "Calls made to DingTalk's API by the exporter's background poller (scrapes never call DingTalk).",
            ),
            &["api"],
        )
        .expect("valid metric");
        let api_errors = IntCounterVec::new(
            Opts::new(
                "dingtalk_api_errors_total",
                "Failed DingTalk API calls by errcode: a known DingTalk code (the sub_code for 88), other, or transport, http, decode, ip_banned.",
            ),
            &["api", "errcode"],
        )
        .expect("valid metric");
        let api_duration = HistogramVec::new(
            HistogramOpts::new(
                "dingtalk_api_request_duration_seconds",
                "Latency of DingTalk API calls.",
            )
            .buckets(vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["api"],
        )
        .expect("valid metric");
        let month_calls = IntGauge::new(
            "dingtalk_api_month_calls",
            "Metered DingTalk API calls made this calendar month (Asia/Shanghai), kept across restarts.",
        )
        .expect("valid metric");
        let token_refreshes = IntCounterVec::new(
            Opts::new(
                "dingtalk_token_refreshes_total",
                "Access token fetches (gettoken) by app.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let token_refresh_failures = IntCounterVec::new(
            Opts::new(
                "dingtalk_token_refresh_failures_total",
                "Failed access token fetches by app.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let token_expiry = GaugeVec::new(
            Opts::new(
                "dingtalk_token_expiry_timestamp_seconds",
                "When the cached access token of an app expires.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let up = IntGaugeVec::new(
            Opts::new(
                "dingtalk_up",
                "1 when the app's last DingTalk call reached DingTalk and was authenticated, else 0.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let last_poll_success = GaugeVec::new(
            Opts::new(
                "dingtalk_last_poll_success_timestamp_seconds",
                "When a poll of an app's task last got a successful answer.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let poll_lag = Gauge::new(
            "dingtalk_poll_lag_seconds",
            "How far behind its schedule the most overdue task poll is.",
        )
        .expect("valid metric");
        let config_reload_successful = IntGauge::new(
            "dingtalk_config_last_reload_successful",
            "Whether the last configuration reload succeeded.",
        )
        .expect("valid metric");
        let config_reload_timestamp = Gauge::new(
            "dingtalk_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "dingtalk_exporter_build_info",
                "Always 1; the version and revision of the running exporter.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), build_revision()])
            .set(1);

        for collector in [
            Box::new(api_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(api_errors.clone()),
            Box::new(api_duration.clone()),
            Box::new(month_calls.clone()),
            Box::new(token_refreshes.clone()),
            Box::new(token_refresh_failures.clone()),
            Box::new(token_expiry.clone()),
            Box::new(up.clone()),
            Box::new(last_poll_success.clone()),
            Box::new(poll_lag.clone()),
            Box::new(config_reload_successful.clone()),
            Box::new(config_reload_timestamp.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // The API series exist from the start, so rate() and alerts see a 0 before the first
        // failure instead of a missing series.
        for api in crate::dingtalk::Api::ALL {
            api_requests.with_label_values(&[api.as_str()]);
        }

        Telemetry {
            registry,
            api_requests,
            api_errors,
            api_duration,
            month_calls,
            token_refreshes,
            token_refresh_failures,
            token_expiry,
            up,
            last_poll_success,
            poll_lag,
            config_reload_successful,
            config_reload_timestamp,
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

/// The git revision the binary was built from, when the build knew it.
pub fn build_revision() -> &'static str {
    option_env!("DINGTALK_EXPORTER_REVISION").unwrap_or("unknown")
}

/// The `Content-Type` of the exposition: Prometheus text format 0.0.4.
pub const TEXT_FORMAT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the whole `/metrics` exposition at `now_ms`: the long-lived collectors of
/// [`Telemetry`], then the task series built from the tracked tasks.
pub fn render_metrics(exporter: &Exporter, now_ms: i64) -> String {
    render_metrics_parts(exporter, now_ms).concat()
}

/// [`render_metrics`] as consecutive pieces of text, one per metric family group, for the
/// server to send without first copying them into one string (at 100,000 tasks the
/// exposition is tens of megabytes; a second copy would double the scrape's memory).
pub fn render_metrics_parts(exporter: &Exporter, now_ms: i64) -> Vec<String> {
    let telemetry = TextEncoder::new()
        .encode_to_string(&exporter.telemetry().registry.gather())
        .unwrap_or_else(|err| format!("# the exporter's own metrics failed to encode: {err}\n"));
    let mut parts = vec![telemetry];
    parts.extend(TaskSeries::render(exporter, now_ms));
    parts
}

/// A task metric family: every one is a gauge.
struct Family {
    name: &'static str,
    help: &'static str,
    /// Bytes of one sample line with typical ids (10-digit agent, 12-digit task), rounded
    /// up, to size the buffer before rendering. Erring high is cheap: reserved pages that are
    /// never written are never touched.
    line_bytes: usize,
    /// Samples per published task when the family applies to it.
    samples_per_task: usize,
}

const PROGRESS_RATIO: Family = Family {
    name: "dingtalk_task_progress_ratio",
    help: "Delivery progress of a tracked task (progress_in_percent / 100) from DingTalk's last answer. The exporter polls DingTalk in the background; scrapes never call DingTalk.",
    line_bytes: 90,
    samples_per_task: 1,
};
const STATUS: Family = Family {
    name: "dingtalk_task_status",
    help: "DingTalk's status of a tracked task as a state set: 1 for the current status (not_started, in_progress, completed), 0 for the others. From the last background poll; scrapes never call DingTalk.",
    line_bytes: 100,
    samples_per_task: 3,
};
const INFO: Family = Family {
    name: "dingtalk_task_info",
    help: "Always 1; labels name the app whose credentials poll a tracked task and the task's name.",
    line_bytes: 140,
    samples_per_task: 1,
};
const CREATED: Family = Family {
    name: "dingtalk_task_created_timestamp_seconds",
    help: "When a tracked task was registered with the exporter.",
    line_bytes: 120,
    samples_per_task: 1,
};
const LAST_POLL: Family = Family {
    name: "dingtalk_task_last_poll_timestamp_seconds",
    help: "When DingTalk last answered about a tracked task. The exporter polls in the background; scrapes never call DingTalk.",
    line_bytes: 120,
    samples_per_task: 1,
};
const LAST_PROGRESS_CHANGE: Family = Family {
    name: "dingtalk_task_last_progress_change_timestamp_seconds",
    help: "When a tracked task's progress or status last changed (its registration before that); a stalled delivery stops moving it.",
    line_bytes: 135,
    samples_per_task: 1,
};
const LAST_ERRCODE: Family = Family {
    name: "dingtalk_task_last_errcode",
    help: "DingTalk's errcode for the last poll of a tracked task (the sub_code for 88), 0 when it succeeded.",
    line_bytes: 90,
    samples_per_task: 1,
};
const RECIPIENTS: Family = Family {
    name: "dingtalk_task_recipients",
    help: "Recipients of a finished task by result (read, unread, failed, forbidden, invalid), from DingTalk's getsendresult, fetched once in the background.",
    line_bytes: 100,
    samples_per_task: 5,
};

/// The task families in the order they are exposed.
const TASK_FAMILIES: [&Family; 8] = [
    &PROGRESS_RATIO,
    &STATUS,
    &INFO,
    &CREATED,
    &LAST_POLL,
    &LAST_PROGRESS_CHANGE,
    &LAST_ERRCODE,
    &RECIPIENTS,
];

const TASKS_BY_STATE: Family = Family {
    name: "dingtalk_tasks",
    help: "Tasks tracked by the exporter by state (active, completed, invalid, expired).",
    line_bytes: 40,
    samples_per_task: 0,
};
const MONTH_CALL_BUDGET: Family = Family {
    name: "dingtalk_api_month_call_budget",
    help: "The configured budget of metered DingTalk calls per calendar month (--dingtalk.monthly-call-budget).",
    line_bytes: 40,
    samples_per_task: 0,
};

/// The task series of one scrape, written straight as text from the tracked tasks: no
/// per-series objects, so a scrape at 100,000 tasks costs little more than the text itself.
struct TaskSeries {
    /// One buffer per entry of [`TASK_FAMILIES`]: one pass over the tasks fills them all, so
    /// every family shows the same snapshot, and each family's lines stay together.
    samples: [String; 8],
    by_state: [usize; 4],
}

impl TaskSeries {
    fn render(exporter: &Exporter, now_ms: i64) -> Vec<String> {
        let config = exporter.config();
        let retention_ms =
            i64::try_from(config.poll.task_retention.as_millis()).unwrap_or(i64::MAX);
        let tracker = exporter.tracker();
        let expected_tasks = tracker.len();
        let mut series = TaskSeries {
            samples: TASK_FAMILIES.map(|family| {
                String::with_capacity(expected_tasks * family.samples_per_task * family.line_bytes)
            }),
            by_state: [0; 4],
        };
        // The `app` label of an agent's tasks; there are few agents, so each is resolved once.
        let mut apps: HashMap<i64, String> = HashMap::new();
        let mut key_labels = String::with_capacity(64);
        tracker.for_each(|task| {
            series.by_state[state_index(task.state)] += 1;
            if !task.is_published(now_ms, retention_ms) {
                return;
            }
            let app = apps
                .entry(task.key.agent_id)
                .or_insert_with(|| exporter.app_name(task.key.agent_id));
            key_labels.clear();
            key_labels.push_str("agent_id=\"");
            push_int(&mut key_labels, task.key.agent_id);
            key_labels.push_str("\",task_id=\"");
            push_int(&mut key_labels, task.key.task_id);
            key_labels.push('"');
            series.add_task(task, app, &key_labels);
        });

        let mut parts = Vec::with_capacity(TASK_FAMILIES.len() + 1);
        for (family, samples) in TASK_FAMILIES.iter().zip(series.samples) {
            if samples.is_empty() {
                continue;
            }
            let mut header = String::with_capacity(family.help.len() + 2 * family.name.len() + 24);
            push_header(&mut header, family);
            parts.push(header);
            parts.push(samples);
        }

        let mut summary = String::with_capacity(1024);
        push_header(&mut summary, &TASKS_BY_STATE);
        for (state, count) in TaskState::ALL.into_iter().zip(series.by_state) {
            summary.push_str(TASKS_BY_STATE.name);
            summary.push_str("{state=\"");
            summary.push_str(state.as_str());
            summary.push_str("\"} ");
            push_integer_value(&mut summary, count as i64);
            summary.push('\n');
        }
        let budget = config.dingtalk.monthly_call_budget;
        if budget > 0 {
            push_header(&mut summary, &MONTH_CALL_BUDGET);
            summary.push_str(MONTH_CALL_BUDGET.name);
            summary.push(' ');
            push_integer_value(&mut summary, i64::try_from(budget).unwrap_or(i64::MAX));
            summary.push('\n');
        }
        parts.push(summary);
        parts
    }

    fn add_task(&mut self, task: &Task, app: &str, key_labels: &str) {
        let [
            progress,
            status,
            info,
            created,
            last_poll,
            last_change,
            errcode,
            recipients,
        ] = &mut self.samples;
        if let Some(ratio) = task.progress_ratio {
            push_sample(
                progress,
                &PROGRESS_RATIO,
                key_labels,
                &[],
                Sample::Ratio(ratio),
            );
        }
        if let Some(current) = task.status {
            for candidate in SendStatus::ALL {
                let labels = [("status", candidate.as_str())];
                let value = Sample::Count(i64::from(candidate == current));
                push_sample(status, &STATUS, key_labels, &labels, value);
            }
        }
        let labels = [("app", app), ("name", task.name.as_str())];
        push_sample(info, &INFO, key_labels, &labels, Sample::Count(1));
        let registered = Sample::TimestampMs(task.created_at_ms);
        push_sample(created, &CREATED, key_labels, &[], registered);
        if let Some(polled) = task.last_poll_at_ms {
            let polled = Sample::TimestampMs(polled);
            push_sample(last_poll, &LAST_POLL, key_labels, &[], polled);
        }
        let changed = Sample::TimestampMs(task.last_progress_change_at_ms);
        push_sample(last_change, &LAST_PROGRESS_CHANGE, key_labels, &[], changed);
        if let Some(code) = task.last_errcode {
            push_sample(errcode, &LAST_ERRCODE, key_labels, &[], Sample::Count(code));
        }
        if let Some(counts) = task.recipients {
            for (result, count) in [
                ("read", counts.read),
                ("unread", counts.unread),
                ("failed", counts.failed),
                ("forbidden", counts.forbidden),
                ("invalid", counts.invalid),
            ] {
                let count = Sample::Count(i64::try_from(count).unwrap_or(i64::MAX));
                push_sample(
                    recipients,
                    &RECIPIENTS,
                    key_labels,
                    &[("result", result)],
                    count,
                );
            }
        }
    }
}

/// A sample value, kept in the form it comes in so the common cases (integers and
/// millisecond times) are formatted without floating-point conversion.
#[derive(Clone, Copy)]
enum Sample {
    Ratio(f64),
    Count(i64),
    TimestampMs(i64),
}

impl Sample {
    fn push_to(self, out: &mut String) {
        match self {
            Sample::Ratio(value) => push_value(out, value),
            Sample::Count(count) => push_integer_value(out, count),
            Sample::TimestampMs(ms) => push_timestamp_ms(out, ms),
        }
    }
}

fn state_index(state: TaskState) -> usize {
    match state {
        TaskState::Active => 0,
        TaskState::Completed => 1,
        TaskState::Invalid => 2,
        TaskState::Expired => 3,
    }
}

fn push_header(out: &mut String, family: &Family) {
    // The HELP texts are constants without backslashes or newlines, so they need no escaping.
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(family.help);
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push_str(" gauge\n");
}

/// Appends `name{<key_labels>,<label>="<value>",...} <value>\n`.
fn push_sample(
    out: &mut String,
    family: &Family,
    key_labels: &str,
    labels: &[(&str, &str)],
    value: Sample,
) {
    out.push_str(family.name);
    out.push('{');
    out.push_str(key_labels);
    for (label, label_value) in labels {
        out.push(',');
        out.push_str(label);
        out.push_str("=\"");
        push_escaped_label_value(out, label_value);
        out.push('"');
    }
    out.push_str("} ");
    value.push_to(out);
    out.push('\n');
}

/// Escapes a label value as text format 0.0.4 requires: backslash, double quote and line
/// feed; everything else (any UTF-8) goes in as it is.
pub fn push_escaped_label_value(out: &mut String, value: &str) {
    if !value
        .bytes()
        .any(|byte| matches!(byte, b'\\' | b'"' | b'\n'))
    {
        out.push_str(value);
        return;
    }
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

fn push_int(out: &mut String, value: i64) {
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

/// Appends a sample value formatted as Prometheus' Go client does (`strconv.FormatFloat(v,
/// 'g', -1, 64)`): the shortest digits that read back exactly, in exponent form when the
/// decimal exponent is below -4 or at least 6 (`1.7462304e+09`, `0.25`, `40035`), and
/// `NaN`, `+Inf`, `-Inf`.
pub fn push_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value == 0.0 {
        out.push('0');
        return;
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "1.7462304e9", "-2.5e-1".
    let mut scientific = StackText::new();
    {
        use std::fmt::Write;
        // 40 bytes hold any f64 in `{:e}` form (at most 24 characters).
        let _ = write!(scientific, "{value:e}");
    }
    let text = scientific.as_str();
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let mut digits = StackText::new();
    for byte in mantissa.bytes().filter(u8::is_ascii_digit) {
        digits.push_byte(byte);
    }
    push_decimal(out, negative, digits.as_str(), exponent);
}

/// Any decimal of at most 15 significant digits reads back from an f64 unchanged (DBL_DIG),
/// so for integers below this bound their own digits are the shortest round-trip digits.
const EXACT_DIGITS_BOUND: u64 = 1_000_000_000_000_000;

/// Appends `count` as [`push_value`] would, without going through floating point.
pub fn push_integer_value(out: &mut String, count: i64) {
    push_scaled_integer(out, count, 0);
}

/// Appends a Unix-milliseconds time as seconds, as [`push_value`] would format
/// `ms / 1000.0`: the digits of `ms` with the decimal point moved, no float formatting.
pub fn push_timestamp_ms(out: &mut String, ms: i64) {
    push_scaled_integer(out, ms, 3);
}

/// Appends `value / 10^scale` in the Go client's format.
fn push_scaled_integer(out: &mut String, value: i64, scale: i32) {
    let magnitude = value.unsigned_abs();
    if magnitude >= EXACT_DIGITS_BOUND {
        push_value(out, value as f64 / 10f64.powi(scale));
        return;
    }
    if magnitude == 0 {
        out.push('0');
        return;
    }
    let mut digits = StackText::new();
    {
        use std::fmt::Write;
        let _ = write!(digits, "{magnitude}");
    }
    let digits = digits.as_str();
    let significant = digits.trim_end_matches('0');
    let exponent = digits.len() as i32 - 1 - scale;
    push_decimal(out, value < 0, significant, exponent);
}

/// Lays out the decimal `0.d1d2d3... × 10^(exponent+1)` (`digits` without leading or
/// trailing zeros, at least one) the way Go's `%g` with shortest precision does.
fn push_decimal(out: &mut String, negative: bool, digits: &str, exponent: i32) {
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(if exponent < 0 { "e-" } else { "e+" });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        push_int(out, i64::from(magnitude));
        return;
    }
    // Plain form: the decimal point sits `exponent + 1` digits into `digits`.
    let point = exponent + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

/// A small text buffer on the stack, so formatting a sample value allocates nothing.
struct StackText {
    bytes: [u8; 40],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            bytes: [0; 40],
            len: 0,
        }
    }

    fn push_byte(&mut self, byte: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        // Only whole ASCII characters are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        if self.len + text.len() > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text.as_bytes());
        self.len += text.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> String {
        let mut out = String::new();
        push_value(&mut out, v);
        out
    }

    /// Sample values read exactly like the Go client's (`strconv.FormatFloat(v, 'g', -1, 64)`).
    #[test]
    fn values_are_formatted_like_prometheus_go_client() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.25, "0.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (40035.0, "40035"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1_746_230_400.0, "1.7462304e+09"),
            (1_746_230_400.123, "1.746230400123e+09"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (input, expected) in cases {
            assert_eq!(value(input), expected, "formatting {input:?}");
        }
    }

    /// Integers and millisecond times format exactly as their float values would.
    #[test]
    fn integer_paths_match_float_formatting() {
        let mut numbers = vec![
            0i64, 1, -1, 7, 10, 40035, 99_999, 100_000, 999_999, 1_000_000,
        ];
        numbers.extend([
            1_234_567,
            10_000_000_000,
            999_999_999_999_999,
            1_000_000_000_000_000,
        ]);
        numbers.extend([
            1_777_000_000_000,
            1_777_000_000_123,
            1_777_000_060_500,
            -1_500,
            1,
        ]);
        numbers.extend([i64::MAX, i64::MIN, 5, 50, 4_000, 123_456_789_012]);
        for number in numbers {
            let mut integer = String::new();
            push_integer_value(&mut integer, number);
            assert_eq!(integer, value(number as f64), "count {number}");
            let mut timestamp = String::new();
            push_timestamp_ms(&mut timestamp, number);
            assert_eq!(timestamp, value(number as f64 / 1000.0), "{number} ms");
        }
    }

    proptest::proptest! {
        /// For any count or millisecond time, the integer paths agree with float formatting.
        #[test]
        fn integer_paths_agree_with_floats(number in proptest::num::i64::ANY) {
            let mut integer = String::new();
            push_integer_value(&mut integer, number);
            proptest::prop_assert_eq!(integer, value(number as f64));
            let mut timestamp = String::new();
            push_timestamp_ms(&mut timestamp, number);
            proptest::prop_assert_eq!(timestamp, value(number as f64 / 1000.0));
        }

        /// The same for times in the range real timestamps take (before the year 2500).
        #[test]
        fn timestamps_agree_with_floats(ms in 0i64..16_725_225_600_000) {
            let mut timestamp = String::new();
            push_timestamp_ms(&mut timestamp, ms);
            proptest::prop_assert_eq!(timestamp, value(ms as f64 / 1000.0));
        }
    }

    /// Every formatted value parses back to the same number.
    #[test]
    fn formatted_values_round_trip() {
        for input in [0.37, 1.0 / 3.0, 12.5, 99.99, 1e21, 1e-300, 123456.789] {
            assert_eq!(value(input).parse::<f64>().unwrap(), input);
        }
    }

    /// Label values escape exactly backslash, double quote and line feed.
    #[test]
    fn label_values_are_escaped_per_text_format() {
        let mut out = String::new();
        push_escaped_label_value(&mut out, "a\\b\"c\nd\té");
        assert_eq!(out, "a\\\\b\\\"c\\nd\té");
    }
}
