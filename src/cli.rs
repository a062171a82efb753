//! The command line: the exporter's flags (each with an environment twin) and the
//! subcommands `demo`, `simulate` and `track`.

use std::path::PathBuf;

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
    #[arg(long = "agent-id")]
    pub agent_id: i64,
    /// The task_id asyncsend_v2 returned.
    #[arg(long = "task-id")]
    pub task_id: i64,
    /// A name for people, shown on the dashboard (`dingtalk_task_info{name}`).
    #[arg(long)]
    pub name: Option<String>,
    /// File holding the bearer token the exporter's `--web.api-token-file` requires.
    #[arg(
        long = "web.api-token-file",
        env = "DINGTALK_EXPORTER_WEB_API_TOKEN_FILE"
    )]
    pub api_token_file: Option<PathBuf>,
}
