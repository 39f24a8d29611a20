//! The sessions' conductors: how often a running one beats.

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Conductors")]
pub struct ConductorConfig {
    /// Seconds between two heartbeats of a started `active` conductor (its retained state
    /// on `/{sid}/$conductor/state`; needs ISM_BROKER_CONTROL_URL).
    #[arg(long, env = "ISM_CONDUCTOR_TICK_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub conductor_tick_secs: u64,
}
