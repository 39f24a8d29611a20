//! How the service logs.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LoggingConfig {
    /// Log output format. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "ISM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable; coloured only when stderr is a terminal and NO_COLOR is not set.
    Pretty,
    /// One JSON object per line.
    Json,
}
