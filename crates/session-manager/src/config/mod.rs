//! The service's settings, grouped by the part of the service that reads them. Each group
//! is its own clap `Args` struct, flattened into [`Config`], so a component is handed
//! only its group (the signers get [`SigningConfig`] and [`KmsConfig`], the listeners
//! [`ListenConfig`], ...) and a new setting goes into the group of the part it tunes.
//!
//! Every option is also an environment variable (compose-friendly; an empty value counts
//! as unset), and the defaults start a working development service with no setup at all.
//! `--help` is the reference; `docs/CONFIGURATION.md` explains the same options for
//! operators, and a test walks the command definition to keep both complete.
//! Secret text is held in [`SecretText`], which never prints itself.
//!
//! The subcommands and their own arguments live in `cli/`.

mod admin;
mod broker;
mod client_certificates;
mod conductor;
mod kms;
mod limits;
mod listen;
mod logging;
mod monitor;
mod secret;
mod signing;
mod store;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser as _};

pub use admin::AdminConfig;
pub use broker::{BrokerConfig, BrokerUrl};
pub use client_certificates::ClientCertificatesConfig;
pub use conductor::ConductorConfig;
pub use kms::KmsConfig;
pub use limits::LimitsConfig;
pub use listen::ListenConfig;
pub use logging::{LogFormat, LoggingConfig};
pub use monitor::{MonitorConfig, MonitorMode};
pub use secret::SecretText;
pub use signing::{AuthMode, JwtAlgorithm, SigningConfig};
pub use store::StoreSettings;
pub use webhooks::{WebhookTargets, WebhooksConfig};

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub signing: SigningConfig,
    #[command(flatten)]
    pub listen: ListenConfig,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub admin: AdminConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub kms: KmsConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    pub logging: LoggingConfig,
    #[command(flatten)]
    pub webhooks: WebhooksConfig,
    #[command(flatten)]
    pub monitor: MonitorConfig,
    #[command(flatten)]
    pub client_certificates: ClientCertificatesConfig,
    #[command(flatten)]
    pub conductor: ConductorConfig,
}

impl Config {
    /// The defaults, as `serve` with no flags and no environment would have them; tests
    /// start from here and change what they need.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        /// The service's options alone, without the subcommands.
        #[derive(clap::Parser)]
        struct ServeOptions {
            #[command(flatten)]
            config: Config,
        }
        let mut config = ServeOptions::parse_from(["session-manager"]).config;
        config.store.data_dir = data_dir;
        config.listen.admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.listen.public_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}
