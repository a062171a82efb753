//! The `dingtalk-exporter` binary: command-line parsing only; everything else is the library.

use std::process::ExitCode;

use clap::Parser;
use dingtalk_exporter::cli::{Cli, Command, ExporterFlags};
use dingtalk_exporter::{config, demo, logging, runtime, simulator, track};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(err) => {
            eprintln!("dingtalk-exporter: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        None if cli.exporter.config_check => return check(&cli.exporter),
        None => tokio.block_on(run_exporter(cli.exporter)),
        Some(Command::Demo(args)) => tokio.block_on(demo::run(args)),
        Some(Command::Simulate(args)) => tokio.block_on(simulator::run(args)),
        Some(Command::Track(args)) => tokio.block_on(track::run(&args)).map(|summary| {
            println!("{summary}");
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dingtalk-exporter: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--config.check`: validates the flags and the config file and says what is wrong.
fn check(flags: &ExporterFlags) -> ExitCode {
    let report = config::check(flags);
    if report.valid {
        println!("{}", report.text);
        ExitCode::SUCCESS
    } else {
        eprintln!("{}", report.text);
        ExitCode::FAILURE
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
    let running = runtime::start(config, source).await?;
    runtime::termination().await;
    tracing::info!("shutting down: finishing requests and polls in flight");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}
