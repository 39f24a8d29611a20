//! The join path's defences: brute-force lockouts, the per-session join quota and the
//! refusal floor.

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Join limits")]
pub struct LimitsConfig {
    /// Wrong PINs for one session within the failure window before it is locked.
    #[arg(long, env = "ISM_SESSION_MAX_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub session_max_failures: u32,

    /// Failed joins from one client address within the failure window before it is locked.
    #[arg(long, env = "ISM_IP_MAX_FAILURES", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ip_max_failures: u32,

    /// Window over which failed joins are counted, in seconds.
    #[arg(long, env = "ISM_FAILURE_WINDOW_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub failure_window_secs: u64,

    /// How long a locked session or client address gets 429, in seconds.
    #[arg(long, env = "ISM_LOCKOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lockout_secs: u64,

    /// Most failure counters kept per table (session ids, client networks). When full,
    /// the oldest counters of unknown ids make room; live sessions' counters are never
    /// dropped, so the lockout never switches off.
    #[arg(long, env = "ISM_THROTTLE_CAPACITY", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub throttle_capacity: u64,

    /// Prefix length under which IPv6 clients are counted as one network for failed joins.
    #[arg(long, env = "ISM_IPV6_PREFIX_LEN", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_prefix_len: u8,

    /// The earliest a refused join is answered after it arrived, in milliseconds, so that
    /// its timing does not tell live sessions from unknown ones. Unset: calibrated at
    /// start-up (4 x one argon2 verification, at least 100 ms).
    #[arg(long, env = "ISM_JOIN_REFUSAL_FLOOR_MS",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub join_refusal_floor_ms: Option<u64>,

    /// Successful joins one session accepts per minute (a burst up to this, refilled
    /// evenly); beyond it 429 with Retry-After. 0: no limit.
    #[arg(long, env = "ISM_JOIN_QUOTA_PER_SESSION", default_value_t = 600)]
    pub join_quota_per_session: u32,
}
