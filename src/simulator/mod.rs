//! Simulator of DingTalk's API (being written).

/// Flags of the `simulate` subcommand.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SimulatorArgs {}
