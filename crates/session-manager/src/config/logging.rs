//! How the service logs.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LoggingConfig {
    /// Log output format. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "ISM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Refused joins: the first from a client network or for a session is logged at
    /// once; repeats within this many seconds are counted and logged as one line per
    /// source at the end of the interval.
    #[arg(long, env = "ISM_REFUSAL_LOG_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub refusal_log_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable; coloured only when stderr is a terminal and NO_COLOR is not set.
    Pretty,
    /// One JSON object per line.
    Json,
}
