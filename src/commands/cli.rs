//! The command line: the subcommands `demo`, `simulate`, `track` and `send` and their flags; the
//! exporter's own flags are [`crate::config::flags`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::flags::{AppFlags, DemoFlags, ExporterFlags};
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
    /// Send a work notification (asyncsend_v2) with an app's credentials, then register
    /// its task with a running exporter; prints the task_id.
    Send(SendArgs),
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

/// Flags of `dingtalk-exporter send`: the message, its recipients, the app's credentials
/// (resolved like the exporter's: flags, environment, `--config.file`) and the exporter
/// that tracks it.
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(true)
    .args(["user_ids", "dept_ids", "all_users"])))]
#[command(group(clap::ArgGroup::new("content").args(["text", "msg_file"])))]
pub struct SendArgs {
    /// The agent (app) that sends; its credentials are those of the config file's app with
    /// this agent_id, else the `--dingtalk.*` app.
    #[arg(long = "agent-id", value_name = "ID")]
    pub agent_id: i64,
    /// Recipients by user id, comma-separated (at most 5,000).
    #[arg(long = "user-ids", value_name = "IDS")]
    pub user_ids: Option<String>,
    /// Recipients by department id, comma-separated.
    #[arg(long = "dept-ids", value_name = "IDS")]
    pub dept_ids: Option<String>,
    /// Send to every user of the organisation.
    #[arg(long = "all-users")]
    pub all_users: bool,
    /// The text of a text message; without --text or --msg-file the text is read from
    /// standard input.
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
    /// A JSON file holding the `msg` object (any kind: markdown, action_card, oa, ...);
    /// `-` reads it from standard input.
    #[arg(long = "msg-file", value_name = "FILE")]
    pub msg_file: Option<PathBuf>,
    /// The task's name on the dashboard. [default: the message's title, or its kind]
    #[arg(long)]
    pub name: Option<String>,
    /// Print the request that would be sent (without the access token) and send nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// YAML config file of the exporter, for its apps and credentials.
    #[arg(
        long = "config.file",
        env = "DINGTALK_EXPORTER_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,
    #[command(flatten)]
    pub app: AppFlags,
    /// Base URL of the running exporter that tracks the task.
    #[arg(
        long = "exporter.url",
        env = "DINGTALK_EXPORTER_URL",
        default_value = "http://127.0.0.1:10050"
    )]
    pub exporter_url: String,
    /// File holding the bearer token the exporter's `--web.api-token-file` requires.
    #[arg(
        long = "web.api-token-file",
        env = "DINGTALK_EXPORTER_WEB_API_TOKEN_FILE"
    )]
    pub api_token_file: Option<PathBuf>,
}
