//! `dingtalk-exporter simulate`: the simulator as a process of its own, for users'
//! integration tests and for benchmarks.

use std::net::SocketAddr;

use clap::{Args, FromArgMatches};

use crate::duration::PromDuration;
use crate::secret::Secret;
use crate::simulator::{
    Behaviour, ExpiryStyle, FaultConfig, FaultKind, SimApp, SimConfig, SimCorp, SimSuite, Simulator,
};

/// Flags of the `simulate` subcommand.
#[derive(Args, Clone, Debug)]
pub struct SimulatorArgs {
    /// Where to listen (`host:port`; `:port` means every interface).
    #[arg(long = "listen-address", default_value = "127.0.0.1:10051", value_parser = parse_listen_address)]
    pub listen_address: SocketAddr,
    /// An app `gettoken` accepts, as `KEY:SECRET`; repeat for several apps. Without it, the
    /// demo app `dingsimdemo` with secret `simulator-demo-secret`.
    #[arg(long = "app", value_name = "KEY:SECRET", value_parser = parse_app)]
    pub apps: Vec<SimApp>,
    /// A third-party app (suite) whose corps get tokens from the corp-token APIs, as
    /// `SUITE_KEY:SUITE_SECRET:SUITE_TICKET`; repeat for several suites.
    #[arg(long = "suite", value_name = "KEY:SECRET:TICKET", value_parser = parse_suite)]
    pub suites: Vec<SimSuite>,
    /// A corp that authorised a suite, as `SUITE_KEY:CORP_ID:AGENT_ID` with an optional
    /// `:MONTHLY_QUOTA` (default: --monthly-quota); repeat for several corps.
    #[arg(long = "corp", value_name = "SUITE_KEY:CORP_ID:AGENT_ID[:QUOTA]", value_parser = parse_corp)]
    pub corps: Vec<(String, SimCorp)>,
    /// How long an access token lives.
    #[arg(long = "token-lifetime", default_value = "2h")]
    pub token_lifetime: PromDuration,
    /// What calls with an expired or unknown token get: `flat` (42001 / 40014) or `wrapped`
    /// (88 with sub_code 40014).
    #[arg(long = "token-expiry-style", value_enum, default_value_t = ExpiryStyle::Wrapped)]
    pub token_expiry_style: ExpiryStyle,
    /// Calls per second per app per API before errcode 90018; 0 for no limit.
    #[arg(long = "qps-limit", default_value_t = 20)]
    pub qps_limit: u32,
    /// Metered calls per calendar month before errcode 90020; 0 for no limit.
    #[arg(long = "monthly-quota", default_value_t = 0)]
    pub monthly_quota: u64,
    /// How long after creation a task can be queried (40035 after that).
    #[arg(long = "query-window", default_value = "24h")]
    pub query_window: PromDuration,
    /// Chance (0 to 1) that a successful answer has `"errcode":"0"`, numbers as strings
    /// and no request_id.
    #[arg(long = "quirks", default_value_t = 0.0)]
    pub quirks: f64,
    /// Recipients a send (asyncsend_v2, sendbytemplate) delivers to per minute: its task
    /// lasts its recipient count at this pace. 0: every send lasts the default script's 5 s.
    #[arg(long = "send-pace", value_name = "RECIPIENTS_PER_MINUTE", default_value_t = crate::simulator::DINGTALK_SEND_PACE_PER_MINUTE)]
    pub send_pace: u32,
    /// Chance (0 to 1) that a request gets a fault.
    #[arg(long = "fault-probability", default_value_t = 0.0)]
    pub fault_probability: f64,
    /// The fault kinds to draw from, comma-separated; all of them by default.
    #[arg(long = "faults", value_enum, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// How long a `slow` fault delays the answer.
    #[arg(long = "slow-delay", default_value = "15s")]
    pub slow_delay: PromDuration,
    /// Seed of the fault and quirk draws, to repeat a run; random by default.
    #[arg(long = "seed")]
    pub seed: Option<u64>,
}

impl Default for SimulatorArgs {
    /// The flags' defaults, as `simulate` without flags gets them.
    fn default() -> Self {
        let command = SimulatorArgs::augment_args(clap::Command::new("simulate"));
        let matches = command
            .try_get_matches_from(["simulate"])
            .expect("the simulate flags have valid defaults");
        SimulatorArgs::from_arg_matches(&matches).expect("the simulate flags have valid defaults")
    }
}

fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse()
        .map_err(|_| format!("{text:?} is not host:port, e.g. 127.0.0.1:10051"))
}

fn parse_app(text: &str) -> Result<SimApp, String> {
    match text.split_once(':') {
        Some((key, secret)) if !key.is_empty() && !secret.is_empty() => {
            Ok(SimApp::new(key, secret))
        }
        _ => Err("an app is KEY:SECRET, both non-empty".to_string()),
    }
}

fn parse_suite(text: &str) -> Result<SimSuite, String> {
    let parts: Vec<&str> = text.splitn(3, ':').collect();
    match parts[..] {
        [key, secret, ticket] if !key.is_empty() && !secret.is_empty() && !ticket.is_empty() => {
            Ok(SimSuite {
                suite_key: key.to_string(),
                suite_secret: Secret::new(secret),
                suite_ticket: ticket.to_string(),
                corps: Vec::new(),
            })
        }
        _ => Err("a suite is SUITE_KEY:SUITE_SECRET:SUITE_TICKET, all non-empty".to_string()),
    }
}

fn parse_corp(text: &str) -> Result<(String, SimCorp), String> {
    let usage = "a corp is SUITE_KEY:CORP_ID:AGENT_ID or SUITE_KEY:CORP_ID:AGENT_ID:MONTHLY_QUOTA";
    let parts: Vec<&str> = text.split(':').collect();
    let (suite_key, corp_id, agent_id, quota) = match parts[..] {
        [suite_key, corp_id, agent_id] => (suite_key, corp_id, agent_id, "0"),
        [suite_key, corp_id, agent_id, quota] => (suite_key, corp_id, agent_id, quota),
        _ => return Err(usage.to_string()),
    };
    let agent_id = agent_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("{usage}; AGENT_ID is a positive integer"))?;
    let monthly_quota = quota
        .parse::<u64>()
        .map_err(|_| format!("{usage}; MONTHLY_QUOTA is a whole number"))?;
    if suite_key.is_empty() || corp_id.is_empty() {
        return Err(usage.to_string());
    }
    Ok((
        suite_key.to_string(),
        SimCorp {
            corp_id: corp_id.to_string(),
            agent_id,
            monthly_quota,
        },
    ))
}

impl SimulatorArgs {
    /// The suites with their corps, as the flags name them.
    fn suites(&self) -> Result<Vec<SimSuite>, String> {
        let mut suites = self.suites.clone();
        for (suite_key, corp) in &self.corps {
            let suite = suites
                .iter_mut()
                .find(|suite| &suite.suite_key == suite_key)
                .ok_or_else(|| {
                    format!("--corp names suite {suite_key:?}, which no --suite gives")
                })?;
            suite.corps.push(corp.clone());
        }
        Ok(suites)
    }

    /// The simulator configuration these flags describe.
    pub fn config(&self) -> Result<SimConfig, String> {
        let seed = self.seed.unwrap_or_else(rand::random);
        let config = SimConfig {
            listen: self.listen_address,
            apps: if self.apps.is_empty() {
                vec![SimApp::demo()]
            } else {
                self.apps.clone()
            },
            suites: self.suites()?,
            seed,
            behaviour: Behaviour {
                token_lifetime_ms: self.token_lifetime.as_millis(),
                expiry_style: self.token_expiry_style,
                qps_limit: self.qps_limit,
                monthly_quota: self.monthly_quota,
                query_window_ms: self.query_window.as_millis(),
                quirks: self.quirks,
                send_pace_per_minute: self.send_pace,
                ..Behaviour::default()
            },
            faults: FaultConfig {
                probability: self.fault_probability,
                kinds: self.faults.clone(),
                slow_delay_ms: self.slow_delay.as_millis() as u64,
                limit: None,
            },
            ..SimConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM.
pub async fn run(args: SimulatorArgs) -> Result<(), String> {
    let config = args.config()?;
    let app_keys: Vec<&str> = config.apps.iter().map(|app| app.app_key.as_str()).collect();
    let app_keys = app_keys.join(", ");
    let seed = config.seed;
    let simulator = Simulator::start(config).await?;
    // A reader that stops reading (`simulate | head -1`, a script that only wanted the
    // address) must not stop the simulator: write errors of the banner are ignored.
    let banner = format!(
        "DingTalk API simulator listening on {url}\n  apps: {app_keys}\n  fault and quirk seed: {seed}\n  \
         control API: {url}/_sim/ (stats, tasks, faults, behaviour, expire-tokens, suite-ticket, tokens)\n",
        url = simulator.url()
    );
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes());
        let _ = stdout.flush();
    }
    stop_signal().await?;
    simulator.shutdown().await;
    Ok(())
}

async fn stop_signal() -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|why| format!("cannot listen for SIGTERM: {why}"))?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(|why| format!("cannot listen for Ctrl-C: {why}")),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map_err(|why| format!("cannot listen for Ctrl-C: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `simulate` without flags serves the demo app on 127.0.0.1:10051 with DingTalk's limits.
    #[test]
    fn defaults_describe_the_documented_simulator() {
        let args = SimulatorArgs::default();
        assert_eq!(args.listen_address, "127.0.0.1:10051".parse().unwrap());
        let config = args.config().unwrap();
        assert_eq!(config.apps, vec![SimApp::demo()]);
        assert_eq!(config.behaviour.qps_limit, 20);
        assert_eq!(config.behaviour.token_lifetime_ms, 7_200_000);
        assert_eq!(config.behaviour.query_window_ms, 86_400_000);
        assert_eq!(config.faults.probability, 0.0);
    }

    /// Apps, fault kinds and durations are read from their flags.
    #[test]
    fn flags_configure_the_simulator() {
        let command = SimulatorArgs::augment_args(clap::Command::new("simulate"));
        let matches = command
            .try_get_matches_from([
                "simulate",
                "--listen-address",
                ":0",
                "--app",
                "k1:s1",
                "--app",
                "k2:s:2",
                "--faults",
                "html502,punish-html,drop",
                "--fault-probability",
                "0.5",
                "--token-lifetime",
                "90s",
                "--token-expiry-style",
                "flat",
                "--seed",
                "7",
            ])
            .unwrap();
        let config = SimulatorArgs::from_arg_matches(&matches)
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(config.listen, "0.0.0.0:0".parse().unwrap());
        assert_eq!(
            config.apps,
            vec![SimApp::new("k1", "s1"), SimApp::new("k2", "s:2")]
        );
        assert_eq!(
            config.faults.kinds,
            [FaultKind::Html502, FaultKind::PunishHtml, FaultKind::Drop]
        );
        assert_eq!(config.behaviour.token_lifetime_ms, 90_000);
        assert_eq!(config.behaviour.expiry_style, ExpiryStyle::Flat);
        assert_eq!(config.seed, 7);
    }

    /// An `--app` without both a key and a secret is refused.
    #[test]
    fn malformed_apps_are_refused() {
        assert!(parse_app("only-a-key").is_err());
        assert!(parse_app(":secret").is_err());
        assert!(parse_app("key:").is_err());
    }

    /// Probabilities out of range are refused.
    #[test]
    fn out_of_range_probabilities_are_refused() {
        let args = SimulatorArgs {
            fault_probability: 2.0,
            ..SimulatorArgs::default()
        };
        assert!(args.config().is_err());
    }

    /// Suites and their corps come from --suite and --corp; a corp of an unknown suite is
    /// refused.
    #[test]
    fn suite_and_corp_flags_configure_third_party_apps() {
        let parse = |args: &[&str]| {
            let command = SimulatorArgs::augment_args(clap::Command::new("simulate"));
            let matches = command
                .try_get_matches_from(std::iter::once("simulate").chain(args.iter().copied()))
                .unwrap();
            SimulatorArgs::from_arg_matches(&matches).unwrap().config()
        };
        let config = parse(&[
            "--suite",
            "suite1:secret:ticket",
            "--corp",
            "suite1:dingone:11",
            "--corp",
            "suite1:dingtwo:12:300",
        ])
        .unwrap();
        assert_eq!(config.suites.len(), 1);
        assert_eq!(config.suites[0].suite_ticket, "ticket");
        assert_eq!(
            config.suites[0].corps[1],
            SimCorp {
                corp_id: "dingtwo".into(),
                agent_id: 12,
                monthly_quota: 300
            }
        );
        assert!(parse(&["--corp", "nosuch:dingone:11"]).is_err());
    }
}
