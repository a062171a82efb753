//! The exporter's own metrics: DingTalk calls, tokens, polling, the monthly count, reloads,
//! build and process. The handles are private; the parts of the exporter change them only
//! through the named recording methods below, so every place that records an event is easy
//! to find and the label values of each metric are set in one spot.
//!
//! Task series are not here: the exposition renders them from a snapshot at each scrape.

use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Counters and gauges about DingTalk calls, tokens, polling and the exporter itself.
pub struct Telemetry {
    registry: Registry,
    /// `dingtalk_api_requests_total{api}`
    api_requests: IntCounterVec,
    /// `dingtalk_api_errors_total{api,errcode}`
    api_errors: IntCounterVec,
    /// `dingtalk_api_request_duration_seconds{api}`
    api_duration: HistogramVec,
    /// `dingtalk_api_month_calls`
    month_calls: IntGauge,
    /// `dingtalk_token_refreshes_total{app}`
    token_refreshes: IntCounterVec,
    /// `dingtalk_token_refresh_failures_total{app}`
    token_refresh_failures: IntCounterVec,
    /// `dingtalk_token_expiry_timestamp_seconds{app}`
    token_expiry: GaugeVec,
    /// `dingtalk_up{app}`
    up: IntGaugeVec,
    /// `dingtalk_last_poll_success_timestamp_seconds{app}`
    last_poll_success: GaugeVec,
    /// `dingtalk_poll_lag_seconds`
    poll_lag: Gauge,
    /// `dingtalk_config_last_reload_successful`
    config_reload_successful: IntGauge,
    /// `dingtalk_config_last_reload_success_timestamp_seconds`
    config_reload_timestamp: Gauge,
    /// `dingtalk_web_config_last_reload_successful`
    web_config_reload_successful: IntGauge,
    /// The tracking proxy's metrics, registered only when the proxy runs.
    proxy: ProxyMetrics,
}

/// The tracking proxy's families. They exist only in an exporter that runs the proxy (see
/// [`Telemetry::start_proxy_series`]), so an exporter without it does not publish zeros
/// that look like a proxy seeing no traffic.
struct ProxyMetrics {
    /// `dingtalk_proxy_requests_total{api,result}`
    requests: IntCounterVec,
    /// `dingtalk_proxy_request_duration_seconds{api}`
    duration: HistogramVec,
    /// `dingtalk_proxy_tracked_total`
    tracked: prometheus::IntCounter,
    /// `dingtalk_proxy_track_failures_total{reason}`
    track_failures: IntCounterVec,
    /// `dingtalk_proxy_month_calls`
    month_calls: IntGauge,
}

impl ProxyMetrics {
    fn new() -> ProxyMetrics {
        ProxyMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "dingtalk_proxy_requests_total",
                    "Requests the tracking proxy relayed to DingTalk, by API and result (ok, dingtalk_error, upstream_error, refused).",
                ),
                &["api", "result"],
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "dingtalk_proxy_request_duration_seconds",
                    "Time from a request reaching the tracking proxy until DingTalk's answer headers are relayed back, by API.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["api"],
            )
            .expect("valid metric"),
            tracked: prometheus::IntCounter::new(
                "dingtalk_proxy_tracked_total",
                "Sends relayed by the tracking proxy that it registered as tracked tasks.",
            )
            .expect("valid metric"),
            track_failures: IntCounterVec::new(
                Opts::new(
                    "dingtalk_proxy_track_failures_total",
                    "Sends relayed by the tracking proxy that it could not register as tasks, by reason; the send itself went through.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            month_calls: IntGauge::new(
                "dingtalk_proxy_month_calls",
                "Metered DingTalk calls of other applications relayed by the tracking proxy this calendar month (Asia/Shanghai), kept across restarts; they count against the same organisation quota.",
            )
            .expect("valid metric"),
        }
    }
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
        let web_config_reload_successful = IntGauge::new(
            "dingtalk_web_config_last_reload_successful",
            "Whether the last change of the --web.config.file was put in force (1, also without a web config file); 0 while a broken, empty or authentication-weakening file is refused and the previous web config stays.",
        )
        .expect("valid metric");
        web_config_reload_successful.set(1);
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
            Box::new(web_config_reload_successful.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
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
            web_config_reload_successful,
            proxy: ProxyMetrics::new(),
        }
    }

    /// Publishes the tracking proxy's families, with a zero series for each of its APIs,
    /// results and failure reasons (all bounded sets), so `rate()` and alerts see a 0
    /// before the first event instead of a missing series. Call once, when the proxy starts.
    pub fn start_proxy_series(&self, apis: &[&str], results: &[&str], reasons: &[&str]) {
        let proxy = &self.proxy;
        for collector in [
            Box::new(proxy.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(proxy.duration.clone()),
            Box::new(proxy.tracked.clone()),
            Box::new(proxy.track_failures.clone()),
            Box::new(proxy.month_calls.clone()),
        ] {
            // Registered already (a second proxy in one process): the series are shared.
            let _ = self.registry.register(collector);
        }
        for api in apis {
            for result in results {
                proxy.requests.with_label_values(&[api, result]);
            }
        }
        for reason in reasons {
            proxy.track_failures.with_label_values(&[reason]);
        }
    }

    /// One request the proxy handled: its API and result, and how long until the answer's
    /// head went back (`None` for a request refused before reaching DingTalk).
    pub fn record_proxy_request(&self, api: &str, result: &str, elapsed: Option<Duration>) {
        self.proxy.requests.with_label_values(&[api, result]).inc();
        if let Some(elapsed) = elapsed {
            self.proxy
                .duration
                .with_label_values(&[api])
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The proxy registered a send as a task.
    pub fn record_proxy_tracked(&self) {
        self.proxy.tracked.inc();
    }

    /// The proxy relayed a send but could not register it, for `reason`.
    pub fn record_proxy_track_failure(&self, reason: &str) {
        self.proxy.track_failures.with_label_values(&[reason]).inc();
    }

    /// The metered calls the proxy relayed this quota month.
    pub fn record_proxy_month_calls(&self, calls: u64) {
        self.proxy
            .month_calls
            .set(i64::try_from(calls).unwrap_or(i64::MAX));
    }

    /// The series of these APIs exist from the start, so `rate()` and alerts see a 0 before
    /// the first call instead of a missing series.
    pub fn start_api_series<'a>(&self, apis: impl IntoIterator<Item = &'a str>) {
        for api in apis {
            self.api_requests.with_label_values(&[api]);
        }
    }

    /// The token series of an app exist from the moment its client is built.
    pub fn start_app_series(&self, app: &str) {
        self.token_refreshes.with_label_values(&[app]);
        self.token_refresh_failures.with_label_values(&[app]);
    }

    /// An app removed by a reload no longer has series.
    pub fn forget_app(&self, app: &str) {
        let _ = self.up.remove_label_values(&[app]);
        let _ = self.token_expiry.remove_label_values(&[app]);
        let _ = self.last_poll_success.remove_label_values(&[app]);
        let _ = self.token_refreshes.remove_label_values(&[app]);
        let _ = self.token_refresh_failures.remove_label_values(&[app]);
    }

    /// One DingTalk call that went out: its latency, and its error label when it failed
    /// (a DingTalk errcode, `other`, `transport`, `http`, `decode` or `ip_banned`).
    pub fn record_call(&self, api: &str, elapsed: Duration, error: Option<&str>) {
        self.api_requests.with_label_values(&[api]).inc();
        self.api_duration
            .with_label_values(&[api])
            .observe(elapsed.as_secs_f64());
        if let Some(errcode) = error {
            self.api_errors.with_label_values(&[api, errcode]).inc();
        }
    }

    /// A token fetch began for `app`.
    pub fn record_token_refresh(&self, app: &str) {
        self.token_refreshes.with_label_values(&[app]).inc();
    }

    /// A token fetch for `app` got a token valid until `expires_at_s` (Unix seconds).
    pub fn record_token_issued(&self, app: &str, expires_at_s: f64) {
        self.token_expiry
            .with_label_values(&[app])
            .set(expires_at_s);
    }

    /// A token fetch for `app` failed (not merely held back).
    pub fn record_token_refresh_failure(&self, app: &str) {
        self.token_refresh_failures.with_label_values(&[app]).inc();
    }

    /// Whether `app`'s last call reached DingTalk and was authenticated (`dingtalk_up`).
    pub fn record_reachability(&self, app: &str, up: bool) {
        self.up.with_label_values(&[app]).set(i64::from(up));
    }

    /// A poll of one of `app`'s tasks got a successful answer at `at_s` (Unix seconds).
    pub fn record_poll_success(&self, app: &str, at_s: f64) {
        self.last_poll_success.with_label_values(&[app]).set(at_s);
    }

    /// How far behind its schedule the most overdue poll is.
    pub fn record_poll_lag(&self, lag_s: f64) {
        self.poll_lag.set(lag_s);
    }

    /// The metered calls counted this quota month.
    pub fn record_month_calls(&self, calls: u64) {
        self.month_calls
            .set(i64::try_from(calls).unwrap_or(i64::MAX));
    }

    /// The outcome of loading the configuration (at start or on reload) at `at_s`.
    pub fn record_config_load(&self, successful: bool, at_s: f64) {
        self.config_reload_successful.set(i64::from(successful));
        if successful {
            self.config_reload_timestamp.set(at_s);
        }
    }

    /// Whether the last change of the web config file was put in force.
    pub fn record_web_config_reload(&self, put_in_force: bool) {
        self.web_config_reload_successful
            .set(i64::from(put_in_force));
    }

    /// Every collector's current samples, for tests and tools that read values back.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The exposition text of every collector here.
    pub fn encode_text(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|err| format!("# the exporter's own metrics failed to encode: {err}\n"))
    }

    /// The value of one series as published, by metric name and labels (all of them, in
    /// any order); `None` when there is no such series. For tests and tools: the exporter
    /// itself never reads its metrics back.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = self
            .registry
            .gather()
            .into_iter()
            .find(|family| family.name() == name)?;
        family
            .get_metric()
            .iter()
            .find(|metric| {
                metric.get_label().len() == labels.len()
                    && labels.iter().all(|(label, value)| {
                        metric
                            .get_label()
                            .iter()
                            .any(|pair| pair.name() == *label && pair.value() == *value)
                    })
            })
            .map(|metric| {
                if metric.get_counter().has_value() {
                    metric.get_counter().value()
                } else {
                    metric.get_gauge().value()
                }
            })
    }

    /// `dingtalk_api_month_calls` as published.
    pub fn month_calls(&self) -> i64 {
        self.month_calls.get()
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
