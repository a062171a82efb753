//! The `dingtalk-exporter` binary: parses the command line and runs the command; everything
//! else is the library.

use std::process::ExitCode;

use clap::Parser;
use dingtalk_exporter::commands::{self, Outcome, cli::Cli};

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
    match tokio.block_on(commands::run(cli)) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Invalid) => ExitCode::FAILURE,
        // The message went out; only its registration failed. Exit 3 lets a script tell
        // this apart from a failed send, which it may retry.
        Ok(Outcome::SentNotTracked) => ExitCode::from(3),
        Err(err) => {
            eprintln!("dingtalk-exporter: {err}");
            ExitCode::FAILURE
        }
    }
}
