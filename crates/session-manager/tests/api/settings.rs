//! The settings as the compose stack hands them over: every variable named in
//! `docker-compose.yaml`, empty when `.env` leaves it empty, must work with every
//! subcommand; and every variable the binary reads is shown in `.env.example` and passed
//! through by `docker-compose.yaml`, except the few the image fixes or that are secrets.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory as _;
use session_manager::Cli;
use test_support::service::Launch;

const REPOSITORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(relative: &str) -> String {
    let path = Path::new(REPOSITORY).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every environment variable the command line reads, from its own definition.
fn variables_the_binary_reads() -> BTreeSet<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// The session-manager service's `environment:` entries in `docker-compose.yaml`, as
/// (name, value) pairs.
fn compose_environment() -> Vec<(String, String)> {
    let compose = read("docker-compose.yaml");
    let mut lines = compose
        .lines()
        .skip_while(|line| *line != "  session-manager:")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with("   "))
        .skip_while(|line| *line != "    environment:")
        .skip(1);
    let mut entries = Vec::new();
    for line in lines.by_ref() {
        if !line.starts_with("      ") {
            break;
        }
        let entry = line.trim();
        if entry.starts_with('#') {
            continue;
        }
        let (name, value) = entry
            .split_once(':')
            .unwrap_or_else(|| panic!("unexpected compose line {line:?}"));
        entries.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    assert!(
        entries.len() > 10,
        "no environment found in docker-compose.yaml"
    );
    entries
}

/// Settings deliberately absent from `.env.example` and not taken from `.env` by compose.
const NOT_IN_ENV_FILE: &[(&str, &str)] = &[
    (
        "ISM_ADMIN_ADDR",
        "the image fixes it; publish the port with ADMIN_BIND/ADMIN_PORT",
    ),
    (
        "ISM_PUBLIC_ADDR",
        "the image fixes it; the proxy is the way in",
    ),
    ("ISM_DATA_DIR", "the image fixes it to its data volume"),
    ("ISM_LOG_FORMAT", "the stack logs JSON lines"),
    ("ISM_TRUSTED_PROXIES", "compose derives it from PROXY_IPV4"),
    (
        "ISM_SIGNING_KEY",
        "a private key must not sit in .env; use ISM_SIGNING_KEY_FILE",
    ),
    (
        "ISM_BROKER_CONTROL_URL",
        "the stack's own broker; compose sets it",
    ),
];

#[test]
fn every_setting_is_in_env_example_and_passed_through_by_compose() {
    let env_example = read(".env.example");
    let compose = compose_environment();
    let exceptions: BTreeSet<&str> = NOT_IN_ENV_FILE.iter().map(|(name, _)| *name).collect();
    let mut problems = Vec::new();
    for name in variables_the_binary_reads() {
        if exceptions.contains(name.as_str()) {
            continue;
        }
        let shown = env_example
            .lines()
            .any(|line| line.starts_with(&format!("{name}=")));
        if !shown {
            problems.push(format!(".env.example lacks `{name}=`"));
        }
        let passed = compose.iter().any(|(entry, value)| {
            entry == &name
                && (value.starts_with(&format!("${{{name}:-"))
                    || value.starts_with(&format!("${{{name}}}")))
        });
        if !passed {
            problems.push(format!(
                "docker-compose.yaml does not pass `{name}: ${{{name}...}}` to session-manager"
            ));
        }
    }
    for (name, _reason) in NOT_IN_ENV_FILE {
        assert!(
            variables_the_binary_reads().contains(*name),
            "{name} is listed as an exception but the binary no longer reads it"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every variable compose passes to the service, plus everything the binary reads and the
/// AWS settings, set to the empty string: what `docker compose exec` sees with an `.env`
/// that leaves them empty.
fn empty_compose_environment() -> Vec<String> {
    let mut names: BTreeSet<String> = compose_environment()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.extend(variables_the_binary_reads());
    names.extend(
        [
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "RUST_LOG",
            "MQTT_AUTH_MODE",
        ]
        .map(str::to_owned),
    );
    // Where the image fixes a value it is never empty; the test keeps loopback ports.
    names.remove("ISM_ADMIN_ADDR");
    names.remove("ISM_PUBLIC_ADDR");
    names.remove("ISM_DATA_DIR");
    names.into_iter().collect()
}

fn launch_with_empty_settings(data_dir: &Path) -> Launch {
    let mut launch = Launch::new().data_dir(data_dir);
    for name in empty_compose_environment() {
        launch = launch.env(&name, "");
    }
    launch
}

#[test]
fn every_subcommand_runs_with_the_settings_compose_leaves_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let commands: [Vec<String>; 4] = [
        vec![
            "keygen".into(),
            "--out".into(),
            dir.path().join("keys").display().to_string(),
        ],
        vec![
            "certs".into(),
            "--out".into(),
            dir.path().join("tls").display().to_string(),
        ],
        vec!["hash-admin-key".into()],
        vec![
            "export-public-key".into(),
            "--out".into(),
            dir.path().join("public").display().to_string(),
        ],
    ];
    for args in commands {
        let output = launch_with_empty_settings(&data).output(&args);
        assert!(
            output.status.success(),
            "{args:?} failed with empty settings: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(dir.path().join("public/public_key.pem").exists());
}

#[tokio::test]
async fn serve_runs_with_the_settings_compose_leaves_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = launch_with_empty_settings(&dir.path().join("data"))
        .try_start()
        .unwrap_or_else(|refusal| panic!("serve refused empty settings: {refusal}"));
    service.wait_until_answering().await;
    let status = service.terminate();
    assert!(status.success(), "exit status {status}");
}
