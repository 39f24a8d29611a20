//! The plugin's one error type: everything that can stop the plugin from starting or from
//! reloading its keys. Each message names the option or file at fault, because it is what
//! the operator reads in Mosquitto's log when the broker refuses to start.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown option plugin_opt_{0}")]
    UnknownOption(String),
    #[error("plugin_opt_{option} must be true or false, not {value:?}")]
    NotABoolean { option: String, value: String },
    #[error("plugin_opt_{option} must be a whole number of seconds above 0, not {value:?}")]
    NotSeconds { option: String, value: String },
    #[error("plugin_opt_{0} is given twice")]
    DuplicateOption(String),
    #[error("plugin_opt_{0} is empty")]
    EmptyOption(String),
    #[error("no key configured: set plugin_opt_jwks_file or plugin_opt_public_key_file")]
    MissingKey,
    #[error("set only one of plugin_opt_jwks_file and plugin_opt_public_key_file")]
    ConflictingKeys,
    #[error("cannot read {option} {path}: {source}")]
    UnreadableFile {
        option: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{option} {path} holds no usable key: {source}")]
    BadKey {
        option: &'static str,
        path: PathBuf,
        source: session_token::KeyError,
    },
}
