//! The exporter's own metrics: DingTalk calls, tokens, polling, the monthly count, reloads,
//! build and process. The handles are private; the parts of the exporter change them only
//! through the named recording methods below, so every place that records an event is easy
//! to find and the label values of each metric are set in one spot.
//!
//! Task series are not here: the exposition renders them from a snapshot at each scrape.

use std::time::Duration;

use prometheus::core::{Collector, Desc, MetricVec, MetricVecBuilder};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
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
    /// `dingtalk_api_month_calls`, and `{app,corp}` for each corp of a third-party app
    month_calls: IntGauge,
    corp_month_calls: IntGaugeVec,
    /// `dingtalk_token_refreshes_total{app}` (`{app,corp}` for third-party apps, as below)
    token_refreshes: PerApp<IntCounterVec>,
    /// `dingtalk_token_refresh_failures_total{app}`
    token_refresh_failures: PerApp<IntCounterVec>,
    /// `dingtalk_token_expiry_timestamp_seconds{app}`
    token_expiry: PerApp<GaugeVec>,
    /// `dingtalk_up{app}`
    up: PerApp<IntGaugeVec>,
    /// `dingtalk_last_poll_success_timestamp_seconds{app}`
    last_poll_success: PerApp<GaugeVec>,
    /// `dingtalk_poll_lag_seconds`
    poll_lag: Gauge,
    /// `dingtalk_config_last_reload_successful`
    config_reload_successful: IntGauge,
    /// `dingtalk_ha_owner{app}`, `dingtalk_ha_lease_renewals_total{app}`,
    /// `dingtalk_ha_lease_losses_total{app}` (`{app,corp}` for third-party apps): only with a
    /// shared database, so registered with the first lease event.
    leases: std::sync::OnceLock<LeaseMetrics>,
    /// `dingtalk_config_last_reload_success_timestamp_seconds`
    config_reload_timestamp: Gauge,
    /// `dingtalk_web_config_last_reload_successful`
    web_config_reload_successful: IntGauge,
    /// `dingtalk_task_calls`
    task_calls: Histogram,
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

/// The lease metrics of a replica sharing a database with others, per app (per corp, for
/// third-party apps: each corp is leased apart).
struct LeaseMetrics {
    owner: PerApp<IntGaugeVec>,
    renewals: PerApp<IntCounterVec>,
    losses: PerApp<IntCounterVec>,
}

impl LeaseMetrics {
    fn new(registry: &Registry) -> LeaseMetrics {
        let owner = PerApp::<IntGaugeVec>::new(|labels| {
            IntGaugeVec::new(
                Opts::new(
                    "dingtalk_ha_owner",
                    "1 for each app (and corp, for third-party apps) whose polling this replica owns now under its lease in the shared database, else 0.",
                ),
                labels,
            )
            .expect("valid metric")
        });
        let renewals = PerApp::<IntCounterVec>::new(|labels| {
            IntCounterVec::new(
                Opts::new(
                    "dingtalk_ha_lease_renewals_total",
                    "Leases on an app's (a corp's, for third-party apps) polling taken or renewed by this replica.",
                ),
                labels,
            )
            .expect("valid metric")
        });
        let losses = PerApp::<IntCounterVec>::new(|labels| {
            IntCounterVec::new(
                Opts::new(
                    "dingtalk_ha_lease_losses_total",
                    "Leases on an app's (a corp's, for third-party apps) polling this replica lost without handing them back: not renewed in time (the database was unreachable) or taken by another replica.",
                ),
                labels,
            )
            .expect("valid metric")
        });
        for collector in [
            Box::new(owner.collector()) as Box<dyn prometheus::core::Collector>,
            Box::new(renewals.collector()),
            Box::new(losses.collector()),
        ] {
            registry.register(collector).expect("unique metric");
        }
        LeaseMetrics {
            owner,
            renewals,
            losses,
        }
    }
}

impl Telemetry {
    fn leases(&self) -> &LeaseMetrics {
        self.leases
            .get_or_init(|| LeaseMetrics::new(&self.registry))
    }

    /// Whether this replica owns the polling of `app` (of its `corp`, for a third-party app)
    /// now (`dingtalk_ha_owner`). The renewal and loss counters exist from then on, so
    /// `increase()` sees their first event.
    pub fn record_lease_owner(&self, app: &str, corp: Option<&str>, owner: bool) {
        let leases = self.leases();
        leases.owner.series(app, corp).set(i64::from(owner));
        leases.renewals.series(app, corp);
        leases.losses.series(app, corp);
    }

    /// A lease on the polling of `app` (of its `corp`) was taken or renewed.
    pub fn record_lease_renewal(&self, app: &str, corp: Option<&str>) {
        self.leases().renewals.series(app, corp).inc();
    }

    /// A lease on the polling of `app` (of its `corp`) was lost.
    pub fn record_lease_loss(&self, app: &str, corp: Option<&str>) {
        self.leases().losses.series(app, corp).inc();
    }

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
        let corp_month_calls = IntGaugeVec::new(
            Opts::new(
                "dingtalk_api_month_calls",
                "Metered DingTalk API calls made this calendar month (Asia/Shanghai), kept across restarts.",
            ),
            &["app", "corp"],
        )
        .expect("valid metric");
        let token_refreshes = PerApp::<IntCounterVec>::new(|labels| {
            IntCounterVec::new(
                Opts::new(
                    "dingtalk_token_refreshes_total",
                    "Access token fetches by app (and corp, for third-party apps).",
                ),
                labels,
            )
            .expect("valid metric")
        });
        let token_refresh_failures = PerApp::<IntCounterVec>::new(|labels| {
            IntCounterVec::new(
                Opts::new(
                    "dingtalk_token_refresh_failures_total",
                    "Failed access token fetches by app (and corp, for third-party apps).",
                ),
                labels,
            )
            .expect("valid metric")
        });
        let token_expiry = PerApp::<GaugeVec>::new(|labels| {
            GaugeVec::new(
                Opts::new(
                    "dingtalk_token_expiry_timestamp_seconds",
                    "When the cached access token of an app (of a corp, for third-party apps) expires.",
                ),
                labels,
            )
            .expect("valid metric")
        });
        let up = PerApp::<IntGaugeVec>::new(|labels| {
            IntGaugeVec::new(
                Opts::new(
                "dingtalk_up",
                "1 when the last DingTalk call of an app (of a corp, for third-party apps) reached DingTalk and was authenticated, else 0.",
            ),
                labels,
            )
            .expect("valid metric")
        });
        let last_poll_success = PerApp::<GaugeVec>::new(|labels| {
            GaugeVec::new(
                Opts::new(
                    "dingtalk_last_poll_success_timestamp_seconds",
                    "When a poll of a task of an app (of a corp, for third-party apps) last got a successful answer.",
                ),
                labels,
            )
            .expect("valid metric")
        });
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
        let task_calls = Histogram::with_opts(
            HistogramOpts::new(
                "dingtalk_task_calls",
                "Metered DingTalk calls that DingTalk answered for each task that ended (finished with its recipients asked, invalid or expired): what a delivery costs of the monthly quota.",
            )
            .buckets(vec![
                1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 40.0, 60.0, 100.0, 200.0, 300.0,
            ]),
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
            Box::new(Merged {
                shown: Box::new(month_calls.clone()),
                beside: Box::new(corp_month_calls.clone()),
            }),
            Box::new(token_refreshes.collector()),
            Box::new(token_refresh_failures.collector()),
            Box::new(token_expiry.collector()),
            Box::new(up.collector()),
            Box::new(last_poll_success.collector()),
            Box::new(poll_lag.clone()),
            Box::new(config_reload_successful.clone()),
            Box::new(config_reload_timestamp.clone()),
            Box::new(web_config_reload_successful.clone()),
            Box::new(task_calls.clone()),
            Box::new(build_info),
            Box::new(ProcessMetrics::for_self()),
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
            corp_month_calls,
            token_refreshes,
            token_refresh_failures,
            token_expiry,
            up,
            last_poll_success,
            poll_lag,
            config_reload_successful,
            config_reload_timestamp,
            leases: std::sync::OnceLock::new(),
            web_config_reload_successful,
            task_calls,
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

    /// A task ended with `calls` metered calls that DingTalk answered spent on it.
    pub fn record_task_calls(&self, calls: u64) {
        self.task_calls.observe(calls as f64);
    }

    /// The series of these APIs exist from the start, so `rate()` and alerts see a 0 before
    /// the first call instead of a missing series.
    pub fn start_api_series<'a>(&self, apis: impl IntoIterator<Item = &'a str>) {
        for api in apis {
            self.api_requests.with_label_values(&[api]);
        }
    }

    /// The token series of an app (of a corp, for a third-party app) exist from the moment
    /// its client is built.
    pub fn start_app_series(&self, app: &str, corp: Option<&str>) {
        self.token_refreshes.series(app, corp);
        self.token_refresh_failures.series(app, corp);
    }

    /// An app (or a third-party app's corp) removed by a reload no longer has series.
    pub fn forget_app(&self, app: &str, corp: Option<&str>) {
        self.up.remove(app, corp);
        self.token_expiry.remove(app, corp);
        self.last_poll_success.remove(app, corp);
        self.token_refreshes.remove(app, corp);
        self.token_refresh_failures.remove(app, corp);
        if let Some(corp) = corp {
            let _ = self.corp_month_calls.remove_label_values(&[app, corp]);
        }
        if let Some(leases) = self.leases.get() {
            leases.owner.remove(app, corp);
            leases.renewals.remove(app, corp);
            leases.losses.remove(app, corp);
        }
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

    /// A token fetch began for `app` (`corp` of a third-party app).
    pub fn record_token_refresh(&self, app: &str, corp: Option<&str>) {
        self.token_refreshes.series(app, corp).inc();
    }

    /// A token fetch got a token valid until `expires_at_s` (Unix seconds).
    pub fn record_token_issued(&self, app: &str, corp: Option<&str>, expires_at_s: f64) {
        self.token_expiry.series(app, corp).set(expires_at_s);
    }

    /// A token fetch failed (not merely held back).
    pub fn record_token_refresh_failure(&self, app: &str, corp: Option<&str>) {
        self.token_refresh_failures.series(app, corp).inc();
    }

    /// Whether the last call reached DingTalk and was authenticated (`dingtalk_up`).
    pub fn record_reachability(&self, app: &str, corp: Option<&str>, up: bool) {
        self.up.series(app, corp).set(i64::from(up));
    }

    /// A poll of one of the app's (corp's) tasks got a successful answer at `at_s`.
    pub fn record_poll_success(&self, app: &str, corp: Option<&str>, at_s: f64) {
        self.last_poll_success.series(app, corp).set(at_s);
    }

    /// How far behind its schedule the most overdue poll is.
    pub fn record_poll_lag(&self, lag_s: f64) {
        self.poll_lag.set(lag_s);
    }

    /// The metered calls counted this quota month: the organisation's of the internal apps
    /// (`scope` `None`), or one third-party corp's (`Some((app, corp))`).
    pub fn record_month_calls(&self, scope: Option<(&str, &str)>, calls: u64) {
        let calls = i64::try_from(calls).unwrap_or(i64::MAX);
        match scope {
            None => self.month_calls.set(calls),
            Some((app, corp)) => self
                .corp_month_calls
                .with_label_values(&[app, corp])
                .set(calls),
        }
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

/// A per-app metric: labelled `app` for internal apps, `app` and `corp` for the corps of
/// third-party apps, published as one family.
struct PerApp<V> {
    apps: V,
    corps: V,
}

impl<T: MetricVecBuilder> PerApp<MetricVec<T>>
where
    MetricVec<T>: Collector + Clone + 'static,
{
    fn new(build: impl Fn(&[&str]) -> MetricVec<T>) -> Self {
        PerApp {
            apps: build(&["app"]),
            corps: build(&["app", "corp"]),
        }
    }

    fn series(&self, app: &str, corp: Option<&str>) -> T::M {
        match corp {
            None => self.apps.with_label_values(&[app]),
            Some(corp) => self.corps.with_label_values(&[app, corp]),
        }
    }

    fn remove(&self, app: &str, corp: Option<&str>) {
        let _ = match corp {
            None => self.apps.remove_label_values(&[app]),
            Some(corp) => self.corps.remove_label_values(&[app, corp]),
        };
    }

    fn collector(&self) -> Merged {
        Merged {
            shown: Box::new(self.apps.clone()),
            beside: Box::new(self.corps.clone()),
        }
    }
}

/// Two collectors of one metric name with different label names, registered as one: the
/// registry refuses a second descriptor of a name with other labels, but merges the samples
/// of every collector into one family when gathering.
struct Merged {
    shown: Box<dyn Collector>,
    beside: Box<dyn Collector>,
}

impl Collector for Merged {
    fn desc(&self) -> Vec<&Desc> {
        self.shown.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.shown.collect();
        families.extend(
            self.beside
                .collect()
                .into_iter()
                .filter(|family| !family.get_metric().is_empty()),
        );
        families
    }
}

/// The git revision the binary was built from, when the build knew it.
pub fn build_revision() -> &'static str {
    option_env!("DINGTALK_EXPORTER_REVISION").unwrap_or("unknown")
}

/// The standard process metrics, with `process_cpu_seconds_total` to the microsecond:
/// the Prometheus crate's collector counts whole seconds, so the CPU of an idle exporter
/// (a few milliseconds a minute) would look flat for minutes and then jump.
struct ProcessMetrics {
    standard: prometheus::process_collector::ProcessCollector,
}

impl ProcessMetrics {
    const CPU: &'static str = "process_cpu_seconds_total";

    fn for_self() -> ProcessMetrics {
        ProcessMetrics {
            standard: prometheus::process_collector::ProcessCollector::for_self(),
        }
    }
}

impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.standard.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.standard.collect();
        let Some(seconds) = cpu_seconds() else {
            return families;
        };
        let cpu = prometheus::Counter::with_opts(Opts::new(
            Self::CPU,
            "Total user and system CPU time spent in seconds.",
        ))
        .expect("a valid metric name");
        cpu.inc_by(seconds);
        let precise = cpu.collect();
        families.retain(|family| family.name() != Self::CPU);
        families.extend(precise);
        families
    }
}

/// User plus system CPU time of this process so far, in seconds (microsecond resolution).
#[cfg(unix)]
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given, which lives for the call.
    let result = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so it filled the struct.
    let usage = unsafe { usage.assume_init() };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

#[cfg(not(unix))]
fn cpu_seconds() -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `process_cpu_seconds_total` moves in fractions of a second, so a briefly busy
    /// exporter shows on the CPU panel instead of a flat line.
    #[test]
    fn process_cpu_seconds_move_below_a_second() {
        let telemetry = Telemetry::new();
        let cpu = || {
            telemetry
                .sample("process_cpu_seconds_total", &[])
                .expect("process_cpu_seconds_total is exposed")
        };
        let before = cpu();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spin = 0u64;
        let after = loop {
            spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(7));
            let now = cpu();
            if now != before {
                break now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CPU counter never moved"
            );
        };
        let step = after - before;
        assert!(
            step > 0.0 && step < 0.5,
            "the CPU counter moved by {step}s at once"
        );
        assert_eq!(
            telemetry
                .encode_text()
                .matches("# TYPE process_cpu_seconds_total counter")
                .count(),
            1
        );
    }
}
