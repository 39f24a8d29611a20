//! The `session-manager` binary: parse the command line, run the command.

use std::process::ExitCode;

use clap::Parser as _;
use session_manager::config::{Cli, Command};
use session_manager::{admin_auth, certs, export_key, keygen, startup, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().into_command() {
        Command::Serve(config) => {
            telemetry::init(config.log_format);
            startup::serve(*config).await
        }
        Command::Keygen(args) => keygen::run(&args).map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
        Command::Certs(args) => certs::run(&args).map(|files| {
            for path in [
                files.ca_cert,
                files.ca_key,
                files.server_cert,
                files.server_key,
            ] {
                println!("{}", path.display());
            }
        }),
        Command::ExportPublicKey(args) => export_key::run(&args).await.map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
        Command::HashAdminKey => admin_auth::hash_admin_key_command().map(|phc| println!("{phc}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "session-manager failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
