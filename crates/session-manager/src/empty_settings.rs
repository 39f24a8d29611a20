//! Empty environment values count as unset. Compose passes every variable its file names,
//! as an empty string when `.env` leaves it empty; clap would refuse an empty path or
//! number, and the AWS SDK takes an empty `AWS_REGION` or `AWS_ENDPOINT_URL` as set. The
//! binary removes those variables before anything reads them, so `docker compose exec
//! session-manager session-manager <command>` behaves like the entrypoint.

use std::ffi::OsStr;

/// Is `name` a variable the binary (or a library it uses) reads as a setting?
fn is_setting(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("ISM_")
        || name.starts_with("AWS_")
        || name == "MQTT_AUTH_MODE"
        || name == "RUST_LOG"
}

/// Removes every setting whose value is empty. Call it first thing in `main`, while the
/// process has a single thread (removing variables races with threads reading them).
pub fn unset_empty_settings() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| value.is_empty() && is_setting(name))
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        std::env::remove_var(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_recognised_by_name() {
        for name in [
            "ISM_SIGNING_KEY_FILE",
            "AWS_REGION",
            "MQTT_AUTH_MODE",
            "RUST_LOG",
        ] {
            assert!(is_setting(OsStr::new(name)), "{name}");
        }
        for name in ["PATH", "HOME", "TLS_DIR", "XISM_A"] {
            assert!(!is_setting(OsStr::new(name)), "{name}");
        }
    }
}
