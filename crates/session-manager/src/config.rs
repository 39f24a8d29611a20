//! Command line and configuration: one typed struct per subcommand, parsed by clap.
//!
//! Every option of `serve` is also an environment variable (compose-friendly), and the
//! defaults start a working development service with no setup at all. `--help` is the
//! reference; `docs/CONFIGURATION.md` explains the same options for operators.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

/// IoT Session Manager: PIN-protected MQTT sessions and the tokens that join them.
#[derive(Debug, Parser)]
#[command(
    name = "session-manager",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve(Box<Config>),
    /// Write a new signing key pair: private_key.pem, public_key.pem, jwks.json and,
    /// for RSA, public_key.der (PKCS#1, the form older broker plugins read).
    Keygen(KeygenArgs),
    /// Print the argon2id PHC string for ISM_ADMIN_API_KEY_HASH. Reads the key from stdin;
    /// with an empty stdin (or a terminal) a random key is generated and printed first.
    HashAdminKey,
    /// Write a development CA and a server certificate signed by it (ca.pem, ca.key,
    /// server.pem, server.key) for nginx and the broker's TLS listener.
    Certs(crate::certs::CertsArgs),
    /// Write the public key the configured mode signs with (local key or AWS KMS key) as
    /// public_key.pem and jwks.json, for the broker. Takes the same options as `serve`.
    ExportPublicKey(Box<crate::export_key::ExportPublicKeyArgs>),
}

impl Cli {
    /// The command to run; `serve` when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(Box::new(self.serve)))
    }
}

#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Directory to write the key files into (created if missing; existing files are
    /// never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Key algorithm.
    #[arg(long, value_enum, default_value_t = JwtAlgorithm::Rs256)]
    pub alg: JwtAlgorithm,
}

/// How devices authenticate to the broker, and so how the service issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum AuthMode {
    /// No signing: the "token" is the client name (the broker allows anonymous).
    DevNoAuth,
    /// JWTs signed by a local key (ISM_SIGNING_KEY, or a generated development key).
    DevJwtAuth,
    /// JWTs signed by an AWS KMS key (ISM_KMS_KEY_ID).
    KmsJwtAuth,
}

/// Signature algorithm of issued tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA 2048-bit keys when generated).
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

impl JwtAlgorithm {
    pub fn as_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Token mode.
    #[arg(long, env = "MQTT_AUTH_MODE", value_enum, default_value_t = AuthMode::DevJwtAuth)]
    pub auth_mode: AuthMode,

    /// Admin API address (trusted network only). Port 0 picks a free port.
    #[arg(long, env = "ISM_ADMIN_ADDR", default_value = "127.0.0.1:50001")]
    pub admin_addr: SocketAddr,

    /// Public API address (devices join here; the proxy serves it under /api/).
    #[arg(long, env = "ISM_PUBLIC_ADDR", default_value = "127.0.0.1:8888")]
    pub public_addr: SocketAddr,

    /// Directory of the session journal and of the generated development key.
    #[arg(long, env = "ISM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Private signing key as PEM text (PKCS#8, PKCS#1 RSA or SEC1 P-256). When neither
    /// this nor ISM_SIGNING_KEY_FILE is set, a development key is generated into the data
    /// directory on first start and reused afterwards.
    #[arg(
        long,
        env = "ISM_SIGNING_KEY",
        hide_env_values = true,
        conflicts_with = "signing_key_file"
    )]
    pub signing_key: Option<String>,

    /// Path of a PEM private signing key (alternative to ISM_SIGNING_KEY).
    #[arg(long, env = "ISM_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// Signature algorithm; must fit the signing key.
    #[arg(long, env = "ISM_JWT_ALG", value_enum, default_value_t = JwtAlgorithm::Rs256)]
    pub jwt_alg: JwtAlgorithm,

    /// Lifetime of issued device tokens, in seconds.
    #[arg(long, env = "ISM_TOKEN_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl_secs: u64,

    /// `iss` claim of issued tokens (the broker plugin requires the same value).
    #[arg(long, env = "ISM_ISSUER", default_value = "ism")]
    pub issuer: String,

    /// Digits of generated session ids. Ids are never reused, so the id space bounds the
    /// sessions a deployment can ever create (90 % of 9·10^(n-1)).
    #[arg(long, env = "ISM_ID_LENGTH", default_value_t = 9,
          value_parser = clap::value_parser!(u64).range(1..=32))]
    pub id_length: u64,

    /// Accept the loss of the damaged session-journal range starting at this byte offset,
    /// which start-up refused because it may have held a close: every session open at that
    /// point is closed, to be safe. Only the offset named by that error has an effect.
    #[arg(long, env = "ISM_REPAIR_JOURNAL_AT")]
    pub repair_journal_at: Option<u64>,

    /// Digits of generated PINs (the original service used 3).
    #[arg(long, env = "ISM_PIN_LENGTH", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(3..=32))]
    pub pin_length: u64,

    /// Log output format. The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "ISM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// argon2id PHC string of the admin API key (`session-manager hash-admin-key` prints
    /// one). When set, every admin route needs `Authorization: Bearer <key>`.
    #[arg(long, env = "ISM_ADMIN_API_KEY_HASH", hide_env_values = true)]
    pub admin_api_key_hash: Option<String>,

    /// Allow an unauthenticated admin API on a non-loopback address (`1`/`true`/`yes`).
    #[arg(long, env = "ISM_ADMIN_INSECURE", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub admin_insecure: bool,

    /// Comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is trusted
    /// for the client address (e.g. `127.0.0.1,10.0.0.0/8`). Empty: never trusted.
    #[arg(long, env = "ISM_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_ip_net)]
    pub trusted_proxies: Vec<IpNet>,

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

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ISM_MAX_BODY_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u64).range(64..=16 * 1024 * 1024))]
    pub max_body_bytes: u64,

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

    /// `max_clients` of sessions created without one (admin API and compat route).
    /// 0: no limit.
    #[arg(long, env = "ISM_DEFAULT_MAX_CLIENTS", default_value_t = 1000)]
    pub default_max_clients: u32,

    /// Hosts the admin API answers to (`Host` header), comma-separated names or IPs, each
    /// optionally with `:port`; `*` for any. Unset: localhost, 127.0.0.1, ::1 and the
    /// admin bind address, on any port.
    #[arg(long, env = "ISM_ADMIN_ALLOWED_HOSTS", value_delimiter = ',')]
    pub admin_allowed_hosts: Vec<String>,

    /// Most connections open at once on the public port; further ones wait in the
    /// backlog. Lowered automatically to fit the open-files limit.
    #[arg(long, env = "ISM_PUBLIC_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub public_max_connections: u32,

    /// Most connections open at once on the admin port.
    #[arg(long, env = "ISM_ADMIN_MAX_CONNECTIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,

    /// Seconds a connection may take to send a request's headers (after opening, or
    /// after its previous response) before it is closed.
    #[arg(long, env = "ISM_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_secs: u64,

    /// Seconds a connection may go without a byte moving either way before it is closed.
    #[arg(long, env = "ISM_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub http_idle_timeout_secs: u64,

    /// KMS key id or ARN (kms_jwt_auth).
    #[arg(long, env = "ISM_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,

    /// Timeout of one KMS call, in milliseconds (kms_jwt_auth).
    #[arg(long, env = "ISM_KMS_TIMEOUT_MS", default_value_t = 2000)]
    pub kms_timeout_ms: u64,

    /// Most KMS signing calls in flight at once (kms_jwt_auth).
    #[arg(long, env = "ISM_KMS_MAX_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub kms_max_concurrency: u32,

    /// Broker listener for the revocation link, e.g. mqtt://127.0.0.1:1883. When set (and
    /// tokens are signed), closing a session disconnects its devices at once.
    #[arg(long, env = "ISM_BROKER_CONTROL_URL")]
    pub broker_control_url: Option<crate::revocation::BrokerUrl>,
}

impl Config {
    /// The defaults, as `serve` with no flags and no environment would have them; tests
    /// start from here and change what they need.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let Cli { serve, .. } = Cli::parse_from(["session-manager"]);
        Config {
            data_dir,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..serve
        }
    }
}

fn parse_ip_net(input: &str) -> Result<IpNet, String> {
    let input = input.trim();
    input
        .parse::<IpNet>()
        .or_else(|_| input.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{input:?} is neither an IP address nor a CIDR"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_means_serve_with_defaults() {
        let command = Cli::try_parse_from(["session-manager"])
            .unwrap()
            .into_command();
        let Command::Serve(config) = command else {
            panic!("expected serve");
        };
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:50001");
        assert_eq!(config.public_addr.to_string(), "127.0.0.1:8888");
        assert_eq!(config.auth_mode, AuthMode::DevJwtAuth);
        assert_eq!(config.jwt_alg, JwtAlgorithm::Rs256);
        assert_eq!(config.issuer, "ism");
    }

    #[test]
    fn admin_insecure_takes_the_usual_boolean_spellings() {
        for (value, expected) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("0", false),
            ("false", false),
        ] {
            let cli =
                Cli::try_parse_from(["session-manager", &format!("--admin-insecure={value}")]);
            assert_eq!(
                cli.map(|cli| cli.serve.admin_insecure).ok(),
                Some(expected),
                "{value}"
            );
        }
        let cli = Cli::try_parse_from(["session-manager", "--admin-insecure"]).unwrap();
        assert!(cli.serve.admin_insecure);
    }

    #[test]
    fn trusted_proxies_take_ips_and_cidrs() {
        let cli = Cli::try_parse_from([
            "session-manager",
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8, ::1",
        ])
        .unwrap();
        let nets: Vec<String> = cli
            .serve
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert!(Cli::try_parse_from(["session-manager", "--trusted-proxies", "nope"]).is_err());
    }

    #[test]
    fn modes_and_algorithms_use_the_documented_names() {
        let cli = Cli::try_parse_from([
            "session-manager",
            "serve",
            "--auth-mode",
            "dev_no_auth",
            "--jwt-alg",
            "ES256",
        ])
        .unwrap();
        let Command::Serve(config) = cli.into_command() else {
            panic!("expected serve");
        };
        assert_eq!(config.auth_mode, AuthMode::DevNoAuth);
        assert_eq!(config.jwt_alg, JwtAlgorithm::Es256);
    }
}
