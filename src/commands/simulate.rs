//! `dingtalk-exporter simulate`: the simulator as a process of its own, for users'
//! integration tests and for benchmarks.

use std::net::SocketAddr;

use clap::{Args, FromArgMatches};

use crate::duration::PromDuration;
use crate::simulator::{
    Behaviour, ExpiryStyle, FaultConfig, FaultKind, SimApp, SimConfig, Simulator,
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

impl SimulatorArgs {
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
    println!("DingTalk API simulator listening on {}", simulator.url());
    println!("  apps: {app_keys}");
    println!("  fault and quirk seed: {seed}");
    println!(
        "  control API: {}/_sim/ (stats, tasks, faults, behaviour, expire-tokens, tokens)",
        simulator.url()
    );
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
}
