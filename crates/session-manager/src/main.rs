//! The `session-manager` binary: parse the command line, run the command.

use std::process::ExitCode;

use clap::Parser as _;
use session_manager::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    match session_manager::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "session-manager failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
