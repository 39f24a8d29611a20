//! The server-side monitor: whether the service watches every session's traffic through
//! its broker link, and whether it logs payloads.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Monitor")]
pub struct MonitorConfig {
    /// `log`: the broker link subscribes to every session's traffic and logs topic,
    /// session, size, QoS and retain of each message, with per-session counters on
    /// `/metrics`. `off`: nothing is watched (the live message stream of one session,
    /// `GET /api/v1/sessions/{id}/messages`, works either way). Needs the broker link.
    #[arg(long, env = "ISM_MONITOR", value_enum, default_value_t = MonitorMode::Off)]
    pub monitor: MonitorMode,

    /// Log each message's payload too (`1`/`true`/`yes`); only with ISM_MONITOR=log.
    /// Payloads may carry personal data: the log then holds it.
    #[arg(long, env = "ISM_MONITOR_PAYLOADS", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub monitor_payloads: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MonitorMode {
    /// Watch nothing.
    Off,
    /// Log and count every message of every session.
    Log,
}
