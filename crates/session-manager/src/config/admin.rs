//! Who may use the admin API, and what a session created there gets by default.

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Admin API")]
pub struct AdminConfig {
    /// argon2id PHC string of the admin API key (`session-manager hash-admin-key` prints
    /// one, single-quoted; one pair of surrounding single quotes is ignored). When set,
    /// every admin route needs `Authorization: Bearer <key>` (the original service's routes
    /// excepted with `ISM_ADMIN_COMPAT_WITHOUT_KEY`).
    #[arg(long, env = "ISM_ADMIN_API_KEY_HASH", hide_env_values = true)]
    pub admin_api_key_hash: Option<String>,

    /// Allow an unauthenticated admin API on a non-loopback address (`1`/`true`/`yes`).
    #[arg(long, env = "ISM_ADMIN_INSECURE", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub admin_insecure: bool,

    /// Hosts the admin API answers to (`Host` header), comma-separated names or IPs, each
    /// optionally with `:port`; `*` for any. Unset: localhost, 127.0.0.1, ::1 and the
    /// admin bind address, on any port.
    #[arg(long, env = "ISM_ADMIN_ALLOWED_HOSTS", value_delimiter = ',')]
    pub admin_allowed_hosts: Vec<String>,

    /// Let the original service's admin routes (`/api/createSession`, `/api/closeSession`,
    /// `/api/conductorRequest`) through without the admin key (`1`/`true`/`yes`), for the
    /// original admin client, which sends none, on a trusted network. The `Host`/origin
    /// checks still apply; the `/api/v1/` routes keep needing the key.
    #[arg(long, env = "ISM_ADMIN_COMPAT_WITHOUT_KEY", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub admin_compat_without_key: bool,

    /// `max_clients` of sessions created without one (admin API and compat route).
    /// 0: no limit.
    #[arg(long, env = "ISM_DEFAULT_MAX_CLIENTS", default_value_t = 1000)]
    pub default_max_clients: u32,
}
