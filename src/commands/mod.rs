//! The commands of the binary, on top of everything else: the exporter itself (no
//! subcommand), `--config.check`, `demo`, `simulate`, `track` and `send`. Each parses nothing (the
//! [`cli`] does) and builds the running exporter only through [`crate::assembly`].

pub mod cli;
pub mod demo;
pub mod send;
pub mod simulate;
pub mod track;

use crate::assembly;
use crate::config::{self, flags::ExporterFlags};
use crate::http::WebConfig;
use crate::logging;

use cli::{Cli, Command};

/// What became of a command: `Err` carries the message for standard error.
pub enum Outcome {
    Success,
    /// `--config.check` found problems (already printed).
    Invalid,
    /// `send` sent the message but could not register its task (already said).
    SentNotTracked,
}

/// Runs the command the command line names.
pub async fn run(cli: Cli) -> Result<Outcome, String> {
    match cli.command {
        None if cli.exporter.config_check => Ok(check(&cli.exporter)),
        None => run_exporter(cli.exporter).await.map(|()| Outcome::Success),
        Some(Command::Demo(args)) => demo::run(args).await.map(|()| Outcome::Success),
        Some(Command::Simulate(args)) => simulate::run(args).await.map(|()| Outcome::Success),
        Some(Command::Track(args)) => track::run(&args).await.map(|summary| {
            println!("{summary}");
            Outcome::Success
        }),
        Some(Command::Send(args)) => send::run(&args).await,
    }
}

/// `--config.check`: validates the flags, the config file and the web config file, and
/// says what is wrong or what would be used.
fn check(flags: &ExporterFlags) -> Outcome {
    let report = config::check(flags, &WebConfig::check_file);
    if report.valid {
        println!("{}", report.text);
        Outcome::Success
    } else {
        eprintln!("{}", report.text);
        Outcome::Invalid
    }
}

/// The exporter: runs until SIGTERM or Ctrl-C, reloads on SIGHUP.
async fn run_exporter(flags: ExporterFlags) -> Result<(), String> {
    let config = config::load(&flags)
        .map_err(|errors| format!("invalid configuration (nothing was started):\n{errors}"))?;
    logging::init(config.log).map_err(|err| format!("cannot set up logging: {err}"))?;
    for warning in config::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let source = Box::new(move || config::load(&flags).map_err(|errors| errors.to_string()));
    let running = assembly::start(config, source).await?;
    assembly::termination().await;
    tracing::info!("shutting down: finishing requests and polls in flight");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}
