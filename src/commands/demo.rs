//! `dingtalk-exporter demo`: the whole thing on one machine with no DingTalk account.
//!
//! Starts the simulator on loopback, the exporter against it, and keeps registering sample
//! tasks of every kind (fast, slow, stalled, waiting to start, never starting, too large for
//! `getsendresult`, unknown to DingTalk), so that every metric and every dashboard panel
//! has data. A small share of the simulator's answers are faults (busy, a gateway's 502,
//! truncated JSON) and its tokens live ten minutes, so the error and token panels move too.
//! Beside the internal app runs a third-party app (an ISV suite) authorised by two corps,
//! each with its own token, quota and budget, so the `corp` series have data as well.
//! A tracking proxy runs in front of the simulator, and a sample sender sends through it
//! now and then, so the proxy's metrics and proxy-tracked tasks show as well.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::cli::DemoArgs;
use crate::assembly;
use crate::clock::now_ms;
use crate::config::{self, AppConfig, Config, CorpSettings, DemoTarget, ProxySettings, TokenApi};
use crate::secret::Secret;
use crate::simulator::{
    Behaviour, DEMO_AGENT_ID, DEMO_APP_KEY, DEMO_APP_SECRET, FaultConfig, FaultKind, SimConfig,
    SimCorp, SimSuite, Simulator, Timeline,
};
use crate::tracker::{NewTask, TaskKey, TaskSource, Tracker};

/// Share of the simulator's answers that are faults during the demo.
const DEMO_FAULT_PROBABILITY: f64 = 0.02;

/// The demo simulator's token lifetime: short, so token refreshes show on the dashboard.
const DEMO_TOKEN_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// Where the demo's tracking proxy listens: loopback, on a port the OS picks.
const DEMO_PROXY_LISTEN_ADDRESS: &str = "127.0.0.1:0";

/// The demo's third-party app and its credentials at the simulator.
const DEMO_SUITE_APP: &str = "isv-suite";
const DEMO_SUITE_KEY: &str = "suitedemo";
const DEMO_SUITE_SECRET: &str = "simulator-demo-suite-secret";

/// The corps that authorised the demo's suite: corp id, `corp` label, agent id.
const DEMO_CORPS: [(&str, &str, i64); 2] = [
    ("dingdemoacme", "acme", DEMO_AGENT_ID + 1),
    ("dingdemoglobex", "globex", DEMO_AGENT_ID + 2),
];

/// The suite's app in the exporter's configuration: one entry per corp, tokens from the
/// unified API at the simulator, each corp with the free edition's quota as its budget.
fn with_demo_suite(mut config: Config, simulator_url: &str) -> Config {
    config.dingtalk.openapi_url = simulator_url.to_string();
    for (corp_id, name, agent_id) in DEMO_CORPS {
        config.apps.insert(
            0,
            AppConfig {
                name: DEMO_SUITE_APP.to_string(),
                agent_id: Some(agent_id),
                app_key: DEMO_SUITE_KEY.to_string(),
                app_secret: Secret::new(DEMO_SUITE_SECRET),
                api_url: simulator_url.to_string(),
                token_api: TokenApi::Unified,
                corp_id: Some(corp_id.to_string()),
                corp: Some(CorpSettings {
                    name: name.to_string(),
                    monthly_call_budget: config::DEMO_MONTHLY_CALL_BUDGET,
                    suite_ticket_file: None,
                }),
            },
        );
    }
    config
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    let simulator = Simulator::start(SimConfig {
        suites: vec![SimSuite {
            suite_key: DEMO_SUITE_KEY.to_string(),
            suite_secret: Secret::new(DEMO_SUITE_SECRET),
            suite_ticket: "demo-ticket".to_string(),
            corps: DEMO_CORPS
                .iter()
                .map(|(corp_id, _, agent_id)| SimCorp {
                    corp_id: corp_id.to_string(),
                    agent_id: *agent_id,
                    monthly_quota: 0,
                })
                .collect(),
        }],
        behaviour: Behaviour {
            token_lifetime_ms: DEMO_TOKEN_LIFETIME_MS,
            ..Behaviour::default()
        },
        faults: FaultConfig {
            probability: DEMO_FAULT_PROBABILITY,
            kinds: vec![FaultKind::Busy, FaultKind::Html502, FaultKind::Truncated],
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await?;

    // The demo's store is a scratch file unless --storage.path names one.
    let scratch = tempfile::tempdir()
        .map_err(|err| format!("cannot create the demo's scratch directory: {err}"))?;
    let target = DemoTarget {
        api_url: simulator.url().to_string(),
        app_key: DEMO_APP_KEY.to_string(),
        app_secret: Secret::new(DEMO_APP_SECRET),
        scratch_storage_path: scratch.path().join("demo.db"),
    };
    let simulator_url = simulator.url().to_string();
    let mut config = config::load_demo(&args.settings, target.clone())
        .map(|config| with_demo_suite(config, &simulator_url))
        .map_err(|err| err.to_string())?;
    config.proxy = ProxySettings {
        listen_address: Some(DEMO_PROXY_LISTEN_ADDRESS.to_string()),
        upstream_url: simulator_url.clone(),
    };
    // Another subscriber may already be installed (tests run the demo in-process).
    let _ = crate::logging::init(config.log);

    let reload_settings = args.settings.clone();
    let source = Box::new(move || {
        config::load_demo(&reload_settings, target.clone())
            .map(|config| with_demo_suite(config, &simulator_url))
            .map_err(|err| err.to_string())
    });
    let running = assembly::start(config, source).await?;

    let host = match running.address.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let base = format!("http://{host}:{}", running.address.port());
    let telemetry_path = running.exporter.config().web.telemetry_path.clone();
    println!(
        "dingtalk-exporter demo: the DingTalk simulator and the exporter are running. Ctrl-C stops both."
    );
    println!("  Landing page:        {base}/");
    println!("  Metrics:             {base}{telemetry_path}");
    println!("  Task API:            {base}/api/v1/tasks");
    println!("  DingTalk simulator:  {}/_sim/stats", simulator.url());
    let proxy_url = running
        .proxy_address
        .map(|address| format!("http://{address}"));
    if let Some(proxy_url) = &proxy_url {
        println!("  Tracking proxy:      {proxy_url}");
    }

    let simulator = Arc::new(simulator);
    let feeder = tokio::spawn(feed_sample_tasks(
        simulator.clone(),
        running.exporter.tracker().clone(),
        args.task_interval.0,
    ));

    let sender = proxy_url
        .map(|proxy_url| tokio::spawn(send_through_proxy(proxy_url, args.task_interval.0)));

    assembly::termination().await;
    tracing::info!(
        "demo stopping: no more sample tasks; finishing the polls and requests in flight"
    );
    feeder.abort();
    if let Some(sender) = sender {
        sender.abort();
    }
    running.stop().await;
    drop(scratch);
    tracing::info!("demo stopped: the exporter and the DingTalk simulator are down");
    Ok(())
}

/// The kinds of sample task, each with how the simulator plays it.
fn sample(kind: SampleKind, first_round: bool, rng: &mut StdRng) -> Option<Timeline> {
    let seed = rng.random();
    let timeline = match kind {
        SampleKind::Fast => Timeline {
            // The first one finishes quickly, so that recipient counts show within seconds.
            duration_ms: if first_round {
                10_000
            } else {
                rng.random_range(20_000..60_000)
            },
            recipients: 20,
            read: 12,
            failed: 1,
            forbidden: 1,
            invalid: 1,
            ..Timeline::default()
        },
        SampleKind::Slow => Timeline {
            duration_ms: rng.random_range(10 * 60_000..30 * 60_000),
            recipients: 80,
            read: 50,
            failed: 3,
            forbidden: 2,
            invalid: 2,
            ..Timeline::default()
        },
        // Stalls within half a minute: the exporter polls a delivery where it should end, so
        // a short one shows its stall (an answer that no longer moves) within a minute or two.
        SampleKind::Stalled => Timeline {
            duration_ms: 30_000,
            stall_at_percent: Some(rng.random_range(20..70) as f64),
            ..Timeline::default()
        },
        SampleKind::DelayedStart => Timeline {
            start_delay_ms: rng.random_range(60_000..180_000),
            duration_ms: 90_000,
            ..Timeline::default()
        },
        SampleKind::NeverStarting => Timeline::never_starting(),
        // More than 100 recipients: DingTalk refuses getsendresult for it.
        SampleKind::Large => Timeline {
            duration_ms: 90_000,
            ..Timeline::default()
        }
        .with_recipients(400),
        SampleKind::Invalid => return None,
    };
    Some(Timeline { seed, ..timeline })
}

#[derive(Clone, Copy, Debug)]
enum SampleKind {
    Fast,
    Slow,
    Stalled,
    DelayedStart,
    NeverStarting,
    Large,
    Invalid,
}

impl SampleKind {
    fn label(self) -> &'static str {
        match self {
            SampleKind::Fast => "fast",
            SampleKind::Slow => "slow",
            SampleKind::Stalled => "stalled",
            SampleKind::DelayedStart => "delayed start",
            SampleKind::NeverStarting => "never starting",
            SampleKind::Large => "large",
            SampleKind::Invalid => "invalid",
        }
    }
}

/// Registers one of every kind at once, then a couple of random ones every `interval`.
async fn feed_sample_tasks(simulator: Arc<Simulator>, tracker: Arc<Tracker>, interval: Duration) {
    let mut rng = StdRng::seed_from_u64(now_ms() as u64);
    let everything = [
        SampleKind::Fast,
        SampleKind::Slow,
        SampleKind::Stalled,
        SampleKind::DelayedStart,
        SampleKind::NeverStarting,
        SampleKind::Large,
        SampleKind::Invalid,
    ];
    let recurring = [
        SampleKind::Fast,
        SampleKind::Fast,
        SampleKind::Slow,
        SampleKind::Stalled,
        SampleKind::DelayedStart,
        SampleKind::Large,
        SampleKind::Invalid,
    ];
    let mut round = 0u64;
    loop {
        let kinds: Vec<SampleKind> = if round == 0 {
            everything.to_vec()
        } else {
            (0..2)
                .map(|_| recurring[rng.random_range(0..recurring.len())])
                .collect()
        };
        let mut batch = Vec::new();
        // The suite's corps get deliveries too: a fast and a slow one each at first, then
        // now and then a fast one for one of them.
        let corp_kinds: Vec<(i64, SampleKind)> = if round == 0 {
            DEMO_CORPS
                .iter()
                .flat_map(|(_, _, agent_id)| {
                    [(*agent_id, SampleKind::Fast), (*agent_id, SampleKind::Slow)]
                })
                .collect()
        } else {
            let (_, _, agent_id) = DEMO_CORPS[rng.random_range(0..DEMO_CORPS.len())];
            vec![(agent_id, SampleKind::Fast)]
        };
        for (agent_id, kind) in corp_kinds {
            let Some(timeline) = sample(kind, round == 0, &mut rng) else {
                continue;
            };
            let recipients = Some(u64::from(timeline.recipients));
            let task_id = simulator.add_task(agent_id, timeline);
            batch.push(NewTask {
                key: TaskKey { agent_id, task_id },
                name: format!(
                    "{} customer notice #{}",
                    kind.label(),
                    round * 10 + batch.len() as u64 + 1
                ),
                recipients,
                source: TaskSource::Api,
            });
        }
        for kind in kinds {
            let (task_id, recipients) = match sample(kind, round == 0, &mut rng) {
                Some(timeline) => {
                    let recipients = u64::from(timeline.recipients);
                    (
                        simulator.add_task(DEMO_AGENT_ID, timeline),
                        Some(recipients),
                    )
                }
                // An id DingTalk never issued: the exporter will be told 40035.
                None => (rng.random_range(9_000_000_000..9_999_999_999), None),
            };
            let name = format!(
                "{} notice #{}",
                kind.label(),
                round * 10 + batch.len() as u64 + 1
            );
            batch.push(NewTask {
                key: TaskKey {
                    agent_id: DEMO_AGENT_ID,
                    task_id,
                },
                name,
                recipients,
                source: TaskSource::Api,
            });
        }
        if let Err(err) = tracker.register(batch, now_ms()).await {
            tracing::warn!(error = %err, "the demo could not register sample tasks");
        }
        round += 1;
        tokio::time::sleep(interval).await;
    }
}

/// A sample sender that knows nothing of the exporter: it uses the tracking proxy as its
/// DingTalk base URL and sends a markdown notice every few intervals, which the proxy
/// tracks.
async fn send_through_proxy(proxy_url: String, interval: Duration) {
    let client = reqwest::Client::new();
    let mut round = 0u64;
    loop {
        round += 1;
        if let Err(err) = send_one(&client, &proxy_url, round).await {
            tracing::warn!(error = %err, "the demo's sample sender could not send through the proxy");
        }
        tokio::time::sleep(interval * 2).await;
    }
}

async fn send_one(client: &reqwest::Client, proxy_url: &str, round: u64) -> Result<(), String> {
    let token_url = reqwest::Url::parse_with_params(
        &format!("{proxy_url}/gettoken"),
        &[("appkey", DEMO_APP_KEY), ("appsecret", DEMO_APP_SECRET)],
    )
    .map_err(|err| err.to_string())?;
    let token: serde_json::Value = client
        .get(token_url)
        .send()
        .await
        .map_err(|err| err.without_url().to_string())?
        .json()
        .await
        .map_err(|err| err.without_url().to_string())?;
    let token = token["access_token"].as_str().unwrap_or_default();
    let send_url = reqwest::Url::parse_with_params(
        &format!("{proxy_url}/topapi/message/corpconversation/asyncsend_v2"),
        &[("access_token", token)],
    )
    .map_err(|err| err.to_string())?;
    let users: Vec<String> = (1..=30).map(|n| format!("sender-user{n:02}")).collect();
    client
        .post(send_url)
        .json(&serde_json::json!({
            "agent_id": DEMO_AGENT_ID,
            "userid_list": users.join(","),
            "msg": {"msgtype": "markdown", "markdown": {
                "title": format!("proxy-tracked notice #{round}"),
                "text": "A notice sent through the tracking proxy."
            }},
        }))
        .send()
        .await
        .map_err(|err| err.without_url().to_string())?;
    Ok(())
}
