//! The `session-manager` binary itself: `--help`, `keygen`, `hash-admin-key`, and `serve`
//! started with no setup at all, announcing its ports and stopping cleanly on SIGTERM.

use std::io::Write as _;
use std::process::{Command, Stdio};

use clap::CommandFactory as _;
use serde_json::Value;
use session_manager::Cli;
use session_token::KeySet;
use test_support::service::{self, Launch, Service};
use test_support::session_api;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(service::binary())
        .args(args)
        .output()
        .expect("run session-manager")
}

#[test]
fn help_documents_every_environment_variable() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // The list comes from the command line's own definition, so a new option cannot be
    // left out of it.
    let variables: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert!(variables.len() >= 35, "{variables:?}");
    for variable in &variables {
        assert!(
            help.contains(variable.as_str()),
            "--help does not mention {variable}"
        );
    }
    for subcommand in ["serve", "keygen", "hash-admin-key"] {
        assert!(
            help.contains(subcommand),
            "--help does not mention {subcommand}"
        );
    }
}

fn openssl() -> Command {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "openssl is missing: install it with `apt-get install -y openssl` (scripts/test does)"
    );
    Command::new("openssl")
}

#[test]
fn keygen_writes_rsa_files_that_fit_together() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let output = run(&["keygen", "--out", out.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in [
        "private_key.pem",
        "public_key.pem",
        "jwks.json",
        "public_key.der",
    ] {
        assert!(out.join(name).exists(), "{name} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join("private_key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    }
    let jwks = std::fs::read_to_string(out.join("jwks.json")).unwrap();
    let from_jwks = KeySet::from_jwks_json(&jwks).unwrap();
    let from_pem =
        KeySet::from_public_key_pem(&std::fs::read(out.join("public_key.pem")).unwrap()).unwrap();
    assert_eq!(
        from_jwks.kids().collect::<Vec<_>>(),
        from_pem.kids().collect::<Vec<_>>()
    );

    // public_key.der is PKCS#1 RSAPublicKey DER with the same modulus as the PEM.
    let der_modulus = openssl()
        .args([
            "rsa",
            "-RSAPublicKey_in",
            "-inform",
            "DER",
            "-noout",
            "-modulus",
            "-in",
        ])
        .arg(out.join("public_key.der"))
        .output()
        .unwrap();
    assert!(
        der_modulus.status.success(),
        "{}",
        String::from_utf8_lossy(&der_modulus.stderr)
    );
    let pem_modulus = openssl()
        .args(["rsa", "-pubin", "-noout", "-modulus", "-in"])
        .arg(out.join("public_key.pem"))
        .output()
        .unwrap();
    assert!(pem_modulus.status.success());
    assert_eq!(der_modulus.stdout, pem_modulus.stdout);
    let private_check = openssl()
        .args(["pkey", "-noout", "-in"])
        .arg(out.join("private_key.pem"))
        .output()
        .unwrap();
    assert!(private_check.status.success());

    // Never overwrites.
    let again = run(&["keygen", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
}

#[test]
fn keygen_writes_es256_files_without_der() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&[
        "keygen",
        "--out",
        dir.path().to_str().unwrap(),
        "--alg",
        "ES256",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("public_key.der").exists());
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("jwks.json")).unwrap())
            .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
}

#[test]
fn hash_admin_key_reads_stdin_and_prints_an_argon2id_phc_string() {
    let printed = printed_hash("my-admin-key\n");
    let phc = printed
        .trim()
        .strip_prefix('\'')
        .and_then(|phc| phc.strip_suffix('\''))
        .expect("the hash is printed in single quotes");
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let hash = PasswordHash::new(phc).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"my-admin-key", &hash)
        .is_ok());
}

#[test]
fn hash_admin_key_generates_a_key_when_stdin_is_empty() {
    let output = Command::new(service::binary())
        .arg("hash-admin-key")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let key = stderr.lines().last().unwrap().trim();
    let phc = String::from_utf8(output.stdout).unwrap();
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let hash = PasswordHash::new(phc.trim().trim_matches('\'')).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(key.as_bytes(), &hash)
        .is_ok());
}

/// Starts `serve` in `dir` with no configuration but free ports.
fn start_serve(dir: &std::path::Path) -> Service {
    Launch::new().current_dir(dir).start()
}

#[tokio::test]
async fn serve_works_with_no_setup_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = start_serve(dir.path());
    let admin = service.admin_addr;
    let public = service.public_addr;
    let client = reqwest::Client::new();
    let created: Value = session_api::json_answer(
        client
            .post(format!("http://{admin}/api/v1/sessions"))
            .json(&serde_json::json!({})),
    )
    .await;
    let response = client
        .post(format!(
            "http://{public}/api/v1/sessions/{}/join",
            created["id"].as_str().unwrap()
        ))
        .json(&serde_json::json!({"pin": created["pin"], "client": "cli-test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let jwks_before = session_api::jwks(&client, &format!("http://{public}")).await;
    assert!(dir.path().join("data/dev_signing_key_rs256.pem").exists());

    let status = service.signal_and_wait("-TERM");
    assert!(status.success(), "exit status {status}");
    let stderr = service.log();
    assert!(
        stderr.contains("generated a development signing key"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(created["pin"].as_str().unwrap()),
        "the PIN was logged"
    );
    for line in stderr.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line {line:?}: {e}"));
    }

    // Second start: same key, same session.
    let mut service = start_serve(dir.path());
    let public = service.public_addr;
    let jwks_after = session_api::jwks(&client, &format!("http://{public}")).await;
    assert_eq!(jwks_before, jwks_after);
    let response = client
        .post(format!(
            "http://{public}/api/v1/sessions/{}/join",
            created["id"].as_str().unwrap()
        ))
        .json(&serde_json::json!({"pin": created["pin"], "client": "cli-test-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let status = service.signal_and_wait("-TERM");
    assert!(status.success());
    let stderr = service.log();
    assert!(
        !stderr.contains(token["token"].as_str().unwrap()),
        "the token was logged"
    );
}

#[test]
fn bad_configuration_fails_with_a_message() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(service::binary())
        .args([
            "serve",
            "--admin-addr",
            "0.0.0.0:0",
            "--public-addr",
            "127.0.0.1:0",
        ])
        .env_remove("ISM_ADMIN_INSECURE")
        .env_remove("ISM_ADMIN_API_KEY_HASH")
        .env("ISM_DATA_DIR", data_dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ISM_ADMIN_INSECURE"));
}

#[test]
fn serve_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = start_serve(dir.path());
    let status = service.signal_and_wait("-INT");
    assert!(status.success(), "exit status {status}");
    let stderr = service.log();
    assert!(stderr.contains("SIGINT"), "{stderr}");
}

/// What `hash-admin-key` prints for `key`, byte for byte (the trailing newline dropped).
fn printed_hash(key: &str) -> String {
    let mut child = Command::new(service::binary())
        .arg("hash-admin-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

#[tokio::test]
async fn the_printed_hash_works_as_is_and_without_its_quotes() {
    let printed = printed_hash("door-key");
    assert!(
        printed.starts_with("'$argon2id$") && printed.ends_with('\''),
        "{printed}"
    );
    let unquoted = printed.trim_matches('\'').to_owned();
    for configured in [&printed, &unquoted] {
        let dir = tempfile::tempdir().unwrap();
        let service = Launch::new()
            .data_dir(&dir.path().join("data"))
            .env("ISM_ADMIN_API_KEY_HASH", configured)
            .start();
        service.wait_until_answering().await;
        let http = reqwest::Client::new();
        let sessions = format!("{}/api/v1/sessions", service.admin);
        let refused = http.get(&sessions).send().await.unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
        let accepted = http
            .get(&sessions)
            .bearer_auth("door-key")
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), reqwest::StatusCode::OK, "{configured}");
        assert!(service.terminate().success());
    }
}
