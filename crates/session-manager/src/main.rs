//! The `session-manager` binary: clear the environment of empty settings, parse the
//! command line, run the command on a tokio runtime.

use std::process::ExitCode;

use clap::Parser as _;
use session_manager::Cli;

fn main() -> ExitCode {
    // Before any thread exists: removing variables is only sound while single-threaded.
    session_manager::unset_empty_settings();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(session_manager::run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "session-manager failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
