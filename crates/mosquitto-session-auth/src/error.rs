//! The plugin's one error type: everything that can stop the plugin from starting, from
//! reloading its keys, or from saving its state file. Each message names the option or file at fault, because it is what
//! the operator reads in Mosquitto's log when the broker refuses to start.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown option plugin_opt_{0}")]
    UnknownOption(String),
    #[error("plugin_opt_{option} must be a whole number (0 or more), not {value:?}")]
    NotACount { option: String, value: String },
    #[error("plugin_opt_{option} must be true or false, not {value:?}")]
    NotABoolean { option: String, value: String },
    #[error("plugin_opt_{option} is no longer used: {why}")]
    RetiredOption { option: String, why: &'static str },
    #[error(
        "set only plugin_opt_allow_any_client_id (plugin_opt_require_client_id_match is its \
         older, inverted name)"
    )]
    ConflictingClientIdOptions,
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
    #[error(
        "state_file {path} is damaged ({problem}); it holds the closed sessions and the owners \
         of persistent client ids, so the plugin will not start without it: restore it from a \
         backup, or move it aside to start empty (sessions the service closed are then admitted \
         again until it republishes them on reconnecting)"
    )]
    DamagedStateFile { path: PathBuf, problem: String },
    #[error(
        "cannot write state_file {path}: {source} (the directory must exist and be writable by \
         the user Mosquitto runs as; set plugin_opt_state_file)"
    )]
    UnwritableStateFile {
        path: PathBuf,
        source: std::io::Error,
    },
}
