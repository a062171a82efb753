//! The exporter's own metrics and the `/metrics` exposition.
//!
//! API counters, latencies and token state are long-lived `prometheus` collectors in
//! [`Telemetry`]. Task series are not: they are rendered afresh from a snapshot of the tracked
//! tasks at each scrape, so a task's series vanish by themselves when its retention ends.

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

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
