//! The plugin's settings, parsed from the `plugin_opt_*` lines of `mosquitto.conf`, and
//! loading the verification keys they point at.
//!
//! Parsing is strict: an unknown option, a repeated one, a missing key or an unreadable key
//! file is an error, so a typo stops the broker at start instead of silently weakening it.

use std::path::{Path, PathBuf};

use session_token::{KeySet, TokenVerifier};

use crate::error::PluginError;
use crate::token_cache::DEFAULT_TOKEN_CACHE_SIZE;

/// Where the verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document, as the session manager publishes it; tokens pick a key by `kid`.
    JwksFile(PathBuf),
    /// A single RSA or P-256 public key in PEM form.
    PublicKeyFile(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub keys: KeySource,
    /// The `iss` every token must carry, when set.
    pub issuer: Option<String>,
    /// Devices may connect with any client id that is not reserved and not held by another
    /// session (clients that make up a random id), not just the scoped id or their name.
    pub allow_any_client_id: bool,
    /// Disconnect clients whose token has expired.
    pub disconnect_after_expire: bool,
    /// Where the plugin keeps what must survive a broker restart: closed sessions until
    /// their end, and the owners of persistent client sessions.
    pub state_file: PathBuf,
    /// How many verified tokens are kept so reconnects skip the signature check; 0 turns
    /// the cache off.
    pub token_cache_size: usize,
}

/// The default state file: in Debian's (and the broker image's) Mosquitto data directory,
/// next to `mosquitto.db`, writable by the `mosquitto` user the broker runs as.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/mosquitto/mosquitto-session-auth.state";

impl PluginConfig {
    /// Parses the options Mosquitto hands over, keys without the `plugin_opt_` prefix.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PluginError> {
        let mut jwks_file = None;
        let mut public_key_file = None;
        let mut issuer = None;
        let mut allow_any_client_id = None;
        let mut require_client_id_match = None;
        let mut disconnect_after_expire = None;
        let mut state_file = None;
        let mut token_cache_size = None;

        for (key, value) in options {
            let value = value.trim();
            match key {
                "jwks_file" => set_once(&mut jwks_file, key, non_empty(key, value)?)?,
                "public_key_file" => set_once(&mut public_key_file, key, non_empty(key, value)?)?,
                "issuer" => set_once(&mut issuer, key, non_empty(key, value)?)?,
                "allow_any_client_id" => {
                    set_once(&mut allow_any_client_id, key, parse_bool(key, value)?)?
                }
                // The older, inverted name of `allow_any_client_id`.
                "require_client_id_match" => {
                    set_once(&mut require_client_id_match, key, parse_bool(key, value)?)?
                }
                "disconnect_after_expire" => {
                    set_once(&mut disconnect_after_expire, key, parse_bool(key, value)?)?
                }
                "state_file" => set_once(&mut state_file, key, non_empty(key, value)?)?,
                "token_cache_size" => {
                    set_once(&mut token_cache_size, key, parse_count(key, value)?)?
                }
                "revocation_retention_secs" => {
                    return Err(PluginError::RetiredOption {
                        option: key.to_owned(),
                        why: "each closed session is now refused exactly until the end the \
                              service sends with it; remove the line",
                    })
                }
                other => return Err(PluginError::UnknownOption(other.to_owned())),
            }
        }

        let keys = match (jwks_file, public_key_file) {
            (Some(path), None) => KeySource::JwksFile(PathBuf::from(path)),
            (None, Some(path)) => KeySource::PublicKeyFile(PathBuf::from(path)),
            (None, None) => return Err(PluginError::MissingKey),
            (Some(_), Some(_)) => return Err(PluginError::ConflictingKeys),
        };
        let allow_any_client_id = match (allow_any_client_id, require_client_id_match) {
            (Some(_), Some(_)) => return Err(PluginError::ConflictingClientIdOptions),
            (Some(allow), None) => allow,
            (None, Some(require)) => !require,
            (None, None) => false,
        };
        Ok(PluginConfig {
            keys,
            issuer,
            allow_any_client_id,
            disconnect_after_expire: disconnect_after_expire.unwrap_or(true),
            state_file: PathBuf::from(state_file.unwrap_or_else(|| DEFAULT_STATE_FILE.to_owned())),
            token_cache_size: token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE),
        })
    }

    /// Reads the key file(s) and builds a verifier with the configured issuer.
    pub fn load_verifier(&self) -> Result<TokenVerifier, PluginError> {
        let keys = self.keys.load()?;
        let verifier = TokenVerifier::new(keys);
        Ok(match &self.issuer {
            Some(issuer) => verifier.with_issuer(issuer.clone()),
            None => verifier,
        })
    }
}

impl KeySource {
    /// Reads and parses the keys; called at start and again on every reload.
    pub fn load(&self) -> Result<KeySet, PluginError> {
        match self {
            KeySource::JwksFile(path) => {
                let text = read("jwks_file", path)?;
                let json = String::from_utf8_lossy(&text);
                KeySet::from_jwks_json(&json).map_err(|source| PluginError::BadKey {
                    option: "jwks_file",
                    path: path.clone(),
                    source,
                })
            }
            KeySource::PublicKeyFile(path) => {
                let pem = read("public_key_file", path)?;
                KeySet::from_public_key_pem(&pem).map_err(|source| PluginError::BadKey {
                    option: "public_key_file",
                    path: path.clone(),
                    source,
                })
            }
        }
    }
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::UnreadableFile {
        option,
        path: path.to_owned(),
        source,
    })
}

fn set_once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), PluginError> {
    if slot.replace(value).is_some() {
        return Err(PluginError::DuplicateOption(key.to_owned()));
    }
    Ok(())
}

fn non_empty(key: &str, value: &str) -> Result<String, PluginError> {
    if value.is_empty() {
        return Err(PluginError::EmptyOption(key.to_owned()));
    }
    Ok(value.to_owned())
}

fn parse_count(key: &str, value: &str) -> Result<usize, PluginError> {
    value.parse().map_err(|_| PluginError::NotACount {
        option: key.to_owned(),
        value: value.to_owned(),
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, PluginError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(PluginError::NotABoolean {
            option: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUBLIC: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../session-token/tests/fixtures/rsa_public.pem"
    );

    #[test]
    fn defaults_apply_when_only_a_key_is_given() {
        let config = PluginConfig::from_options([("jwks_file", "/etc/ism/jwks.json")])
            .expect("valid options");
        assert_eq!(
            config,
            PluginConfig {
                keys: KeySource::JwksFile("/etc/ism/jwks.json".into()),
                issuer: None,
                allow_any_client_id: false,
                disconnect_after_expire: true,
                state_file: DEFAULT_STATE_FILE.into(),
                token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
            }
        );
    }

    #[test]
    fn every_option_is_read() {
        let config = PluginConfig::from_options([
            ("public_key_file", " /k.pem "),
            ("issuer", "ism"),
            ("allow_any_client_id", "true"),
            ("disconnect_after_expire", "FALSE"),
            ("state_file", "/data/plugin.state"),
            ("token_cache_size", "0"),
        ])
        .expect("valid options");
        assert_eq!(config.token_cache_size, 0);
        assert_eq!(config.keys, KeySource::PublicKeyFile("/k.pem".into()));
        assert_eq!(config.issuer.as_deref(), Some("ism"));
        assert!(config.allow_any_client_id);
        assert!(!config.disconnect_after_expire);
        assert_eq!(config.state_file, PathBuf::from("/data/plugin.state"));
    }

    #[test]
    fn the_older_client_id_option_still_reads() {
        let read = |value| {
            PluginConfig::from_options([("jwks_file", "/j"), ("require_client_id_match", value)])
                .expect("valid options")
                .allow_any_client_id
        };
        assert!(read("false"));
        assert!(!read("true"));
    }

    #[test]
    fn mistakes_are_errors_that_name_the_option() {
        let message = |options: &[(&str, &str)]| {
            PluginConfig::from_options(options.iter().copied())
                .expect_err("options are invalid")
                .to_string()
        };
        assert!(message(&[("jwks_file", "/j"), ("isuer", "ism")]).contains("plugin_opt_isuer"));
        assert!(message(&[]).contains("plugin_opt_jwks_file"));
        assert!(message(&[("jwks_file", "/a"), ("public_key_file", "/b")]).contains("only one"));
        assert!(message(&[("jwks_file", "/a"), ("jwks_file", "/b")]).contains("twice"));
        assert!(message(&[("jwks_file", "")]).contains("plugin_opt_jwks_file is empty"));
        assert!(message(&[("jwks_file", "/a"), ("state_file", "")]).contains("state_file"));
        assert!(message(&[("jwks_file", "/a"), ("token_cache_size", "-1")])
            .contains("plugin_opt_token_cache_size must be a whole number"));
        assert!(
            message(&[("jwks_file", "/a"), ("disconnect_after_expire", "maybe")])
                .contains("plugin_opt_disconnect_after_expire must be true or false")
        );
        assert!(message(&[
            ("jwks_file", "/a"),
            ("allow_any_client_id", "true"),
            ("require_client_id_match", "true"),
        ])
        .contains("plugin_opt_allow_any_client_id"));
        let retired = message(&[("jwks_file", "/a"), ("revocation_retention_secs", "3600")]);
        assert!(
            retired.contains("plugin_opt_revocation_retention_secs is no longer used"),
            "{retired}"
        );
    }

    #[test]
    fn an_unreadable_key_file_is_named() {
        let config = PluginConfig::from_options([("jwks_file", "/nonexistent/jwks.json")])
            .expect("valid options");
        let message = config
            .load_verifier()
            .expect_err("file is missing")
            .to_string();
        assert!(
            message.contains("jwks_file /nonexistent/jwks.json"),
            "{message}"
        );
    }

    #[test]
    fn a_file_without_a_key_is_named() {
        let config =
            PluginConfig::from_options([("jwks_file", RSA_PUBLIC)]).expect("valid options");
        let message = config
            .load_verifier()
            .expect_err("PEM is no JWKS")
            .to_string();
        assert!(message.contains("holds no usable key"), "{message}");
    }

    #[test]
    fn a_pem_public_key_loads() {
        let config =
            PluginConfig::from_options([("public_key_file", RSA_PUBLIC)]).expect("valid options");
        assert_eq!(config.load_verifier().expect("key loads").keys().len(), 1);
    }
}
