//! The command line: the subcommands `demo`, `simulate` and `track` and their flags; the
//! exporter's own flags are [`crate::config::flags`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::flags::{DemoFlags, ExporterFlags};
use crate::duration::PromDuration;

/// The whole command line of `dingtalk-exporter`.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "dingtalk-exporter",
    version,
    about = "Prometheus exporter for the delivery progress of DingTalk work notifications",
    long_about = "Prometheus exporter for the delivery progress of DingTalk work notifications.\n\n\
        Tracks asyncsend_v2 tasks registered through its API (or listed in --config.file), \
        polls DingTalk's getsendprogress within its rate limits and monthly call quota, and \
        serves what it last saw on the metrics path. Without a subcommand it runs the exporter.",
    // Exporter flags before a subcommand would be silently ignored by it; refuse them.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub exporter: ExporterFlags,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Run the simulator and the exporter against it, with sample tasks of every kind, on
    /// one machine and without a DingTalk account.
    Demo(DemoArgs),
    /// Run only the simulator of DingTalk's API, for integration tests and benchmarks.
    Simulate(super::simulate::SimulatorArgs),
    /// Register a task with a running exporter through its API.
    Track(TrackArgs),
}

/// Flags of `dingtalk-exporter demo`: the exporter's settings without the DingTalk app, and
/// how busy the demo is.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub settings: DemoFlags,

    /// How often the demo registers a new batch of sample tasks.
    #[arg(
        long = "demo.task-interval",
        env = "DINGTALK_EXPORTER_DEMO_TASK_INTERVAL",
        value_name = "DURATION",
        default_value = "20s",
        help_heading = "Demo"
    )]
    pub task_interval: PromDuration,
}

/// Flags of `dingtalk-exporter track`: registers one task with a running exporter.
#[derive(clap::Args, Clone, Debug)]
pub struct TrackArgs {
    /// Base URL of the running exporter.
    #[arg(
        long = "exporter.url",
        env = "DINGTALK_EXPORTER_URL",
        default_value = "http://127.0.0.1:10050"
    )]
    pub exporter_url: String,
    /// The agent (app) that sent the message.
    // Negative numbers are read as values, so that `--agent-id -5` gets a range error
    // instead of "unexpected argument".
    #[arg(long = "agent-id", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(1..))]
    pub agent_id: i64,
    /// The task_id asyncsend_v2 returned.
    #[arg(long = "task-id", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(1..))]
    pub task_id: i64,
    /// A name for people, shown on the dashboard (`dingtalk_task_info{name}`).
    #[arg(long)]
    pub name: Option<String>,
    /// How many people the message was sent to; the exporter predicts from it when the
    /// delivery ends and asks DingTalk then.
    #[arg(long, value_name = "COUNT")]
    pub recipients: Option<u64>,
    /// File holding the bearer token the exporter's `--web.api-token-file` requires.
    #[arg(
        long = "web.api-token-file",
        env = "DINGTALK_EXPORTER_WEB_API_TOKEN_FILE"
    )]
    pub api_token_file: Option<PathBuf>,
}
