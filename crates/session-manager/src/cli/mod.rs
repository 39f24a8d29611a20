//! The command line: [`Cli`] (the subcommand, or the options of `serve` when none is
//! named) and [`run`], which carries out the command. One file per subcommand that is
//! not the service itself; the service's settings live in `config/`.

mod certs;
mod export_public_key;
mod keygen;
mod token;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::Error;
use crate::{admin_auth, startup, telemetry};

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
    command: Option<Command>,

    /// Options of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    serve: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve(Box<Config>),
    /// Write a new signing key pair: private_key.pem, public_key.pem, jwks.json and,
    /// for RSA, public_key.der (PKCS#1, the form older broker plugins read).
    Keygen(keygen::KeygenArgs),
    /// Print the argon2id PHC string for ISM_ADMIN_API_KEY_HASH, in single quotes so it can
    /// go into a .env file as is. Reads the key from stdin; with an empty stdin (or a
    /// terminal) a random key is generated and printed first.
    HashAdminKey,
    /// Write a development CA and a server certificate signed by it (ca.pem, ca.key,
    /// server.pem, server.key) for nginx and the broker's TLS listener, and the client CA
    /// (client-ca.pem, client-ca.key); `certs client-ca` writes the client CA alone.
    Certs(certs::CertsArgs),
    /// Write the public key the configured mode signs with (local key or AWS KMS key) as
    /// public_key.pem and jwks.json, for the broker. Takes the same options as `serve`.
    ExportPublicKey(Box<export_public_key::ExportPublicKeyArgs>),
    /// Issue, list or revoke service tokens (for trusted backends) through the running
    /// service's admin API.
    Token(token::TokenArgs),
}

impl Cli {
    /// The command to run; `serve` when none was named.
    fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(Box::new(self.serve)))
    }
}

/// Runs the command `cli` names; files a command writes are printed one per line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let print_paths = |paths: Vec<std::path::PathBuf>| {
        for path in paths {
            println!("{}", path.display());
        }
    };
    match cli.into_command() {
        Command::Serve(config) => {
            telemetry::init(config.logging.log_format);
            startup::serve(*config).await
        }
        Command::Keygen(args) => keygen::run(&args).map(print_paths),
        Command::Certs(args) => certs::run(&args).map(print_paths),
        Command::ExportPublicKey(args) => export_public_key::run(&args).await.map(print_paths),
        Command::HashAdminKey => admin_auth::hash_admin_key_command()
            .map(|phc| println!("{}", admin_auth::quoted_for_env_file(&phc))),
        Command::Token(args) => token::run(&args).await.map(|answer| {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;
    use crate::config::{AuthMode, JwtAlgorithm};

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every environment variable the command line reads, from its own definition.
    fn environment_variables() -> BTreeSet<String> {
        Cli::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn configuration_md_documents_exactly_the_environment_variables() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIGURATION.md");
        let text = std::fs::read_to_string(path).expect("read docs/CONFIGURATION.md");
        // The reference table: one row per variable, its name in the first cell.
        let documented: BTreeSet<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
            .filter(|name| name.starts_with("ISM_") || name.starts_with("MQTT_"))
            .collect();
        let defined = environment_variables();
        let undocumented: Vec<_> = defined.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&defined).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "docs/CONFIGURATION.md is out of date: missing {undocumented:?}, no longer read {stale:?}"
        );
        assert!(defined.len() >= 35, "{defined:?}");
    }

    #[test]
    fn no_arguments_means_serve_with_defaults() {
        let command = Cli::try_parse_from(["session-manager"])
            .unwrap()
            .into_command();
        let Command::Serve(config) = command else {
            panic!("expected serve");
        };
        assert_eq!(config.listen.admin_addr.to_string(), "127.0.0.1:50001");
        assert_eq!(config.listen.public_addr.to_string(), "127.0.0.1:8888");
        assert_eq!(config.signing.auth_mode, AuthMode::DevJwtAuth);
        assert_eq!(config.signing.jwt_alg, JwtAlgorithm::Rs256);
        assert_eq!(config.signing.issuer, "ism");
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
                cli.map(|cli| cli.serve.admin.admin_insecure).ok(),
                Some(expected),
                "{value}"
            );
        }
        let cli = Cli::try_parse_from(["session-manager", "--admin-insecure"]).unwrap();
        assert!(cli.serve.admin.admin_insecure);
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
            .listen
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
        assert_eq!(config.signing.auth_mode, AuthMode::DevNoAuth);
        assert_eq!(config.signing.jwt_alg, JwtAlgorithm::Es256);
    }

    #[test]
    fn the_signing_key_never_shows_in_debug_output() {
        let cli =
            Cli::try_parse_from(["session-manager", "--signing-key", "PRIVATE-KEY-TEXT"]).unwrap();
        assert!(!format!("{cli:?}").contains("PRIVATE-KEY-TEXT"));
    }
}
