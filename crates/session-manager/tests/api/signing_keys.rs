//! Signing keys as deployments change them, against the real binary: `ISM_JWT_ALG`
//! changed after the first start (through the container entrypoint, run natively), a
//! supplied key of the other algorithm, and a key rotation with the previous public key
//! still published (`ISM_ADDITIONAL_PUBLIC_KEY_FILES`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use session_token::{KeySet, TokenVerifier};
use test_support::service::{Launch, Service};

use crate::helpers::{start_service, Api};

const ENTRYPOINT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deployment/session-manager/entrypoint.sh"
);

/// The entrypoint serving on loopback with its keys and certificates under `dir`.
async fn start_entrypoint(dir: &Path, alg: &str) -> (Service, Api) {
    let service = Launch::entrypoint(Path::new(ENTRYPOINT))
        .data_dir(&dir.join("data"))
        .env("KEYS_DIR", dir.join("keys"))
        .env("TLS_DIR", dir.join("tls"))
        .env("TLS_HOSTS", "localhost")
        .env("ISM_JWT_ALG", alg)
        .env("ISM_SIGNING_KEY_FILE", "")
        .log_file(dir.join(format!("entrypoint-{alg}.log")))
        .try_start()
        .unwrap_or_else(|refusal| panic!("the entrypoint did not start with {alg}: {refusal}"));
    service.wait_until_answering().await;
    let api = Api::new(service.admin.clone(), service.public.clone());
    (service, api)
}

/// The served JWKS: each key's (`alg`, `kid`).
async fn served_keys(api: &Api) -> Vec<(String, String)> {
    let jwks: Value = api.jwks().await.json().await.expect("jwks json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| {
            (
                key["alg"].as_str().expect("alg").to_owned(),
                key["kid"].as_str().expect("kid").to_owned(),
            )
        })
        .collect()
}

fn stop(service: Service) {
    let status = service.terminate();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_entrypoint_keeps_one_generated_key_per_algorithm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (service, api) = start_entrypoint(dir.path(), "RS256").await;
    let rsa = served_keys(&api).await;
    assert_eq!(rsa.len(), 1);
    assert_eq!(rsa[0].0, "RS256");
    stop(service);

    // Switching the algorithm must not crash-loop on the RSA key.
    let (service, api) = start_entrypoint(dir.path(), "ES256").await;
    let ec = served_keys(&api).await;
    assert_eq!(ec.len(), 1);
    assert_eq!(ec[0].0, "ES256");
    stop(service);

    // And back: the RSA key of the first start, so its tokens still verify.
    let (service, api) = start_entrypoint(dir.path(), "RS256").await;
    assert_eq!(served_keys(&api).await, rsa);
    stop(service);
    for alg in ["RS256", "ES256"] {
        assert!(dir
            .path()
            .join(format!("keys/{alg}/private_key.pem"))
            .exists());
    }
}

#[tokio::test]
async fn the_entrypoint_still_uses_a_key_from_older_versions_of_its_algorithm() {
    let dir = tempfile::tempdir().expect("temp dir");
    // What older versions left: one ES256 key at the top of the keys volume.
    let keys = dir.path().join("keys");
    let output = Launch::new().output([
        "keygen",
        "--out",
        &keys.display().to_string(),
        "--alg",
        "ES256",
    ]);
    assert!(output.status.success(), "{output:?}");
    let legacy: Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("jwks.json")).expect("jwks.json"))
            .expect("jwks json");
    let legacy_kid = legacy["keys"][0]["kid"].as_str().expect("kid").to_owned();

    let (service, api) = start_entrypoint(dir.path(), "ES256").await;
    assert_eq!(served_keys(&api).await, [("ES256".to_owned(), legacy_kid)]);
    stop(service);
    assert!(!keys.join("ES256").exists());

    let (service, api) = start_entrypoint(dir.path(), "RS256").await;
    assert_eq!(served_keys(&api).await[0].0, "RS256");
    stop(service);
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../session-token/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn a_supplied_key_decides_the_algorithm_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = fixture("rsa_private.pem");
    let service = start_service(
        dir.path(),
        &[("ISM_SIGNING_KEY_FILE", &key), ("ISM_JWT_ALG", "ES256")],
    );
    service.process.wait_until_answering().await;
    let keys = served_keys(&service).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0, "RS256");
    let created = service.create_session(json!({})).await;
    let joined = service.join_body(&created.id, &created.pin, "lamp").await;
    let header = jsonwebtoken::decode_header(joined["token"].as_str().expect("token"))
        .expect("a JWT header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let warnings: Vec<String> = service
        .log()
        .lines()
        .filter(|line| line.contains("\"level\":\"WARN\""))
        .filter(|line| line.contains("RS256") && line.contains("ES256"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "log:\n{}", service.log());
    service.stop();
}

/// `keygen` into `dir`: the key pair's private and public PEM files.
fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let output = Launch::new().output(["keygen", "--out", &dir.display().to_string()]);
    assert!(output.status.success(), "{output:?}");
    (dir.join("private_key.pem"), dir.join("public_key.pem"))
}

#[tokio::test]
async fn a_rotated_out_key_stays_published_and_its_tokens_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (old_private, old_public) = keygen(&dir.path().join("old"));
    let (new_private, _) = keygen(&dir.path().join("new"));

    let service = start_service(
        dir.path(),
        &[("ISM_SIGNING_KEY_FILE", &old_private.display().to_string())],
    );
    service.process.wait_until_answering().await;
    let old_kid = served_keys(&service).await[0].1.clone();
    let created = service.create_session(json!({"ttl_secs": 86400})).await;
    let old_token = service.join_body(&created.id, &created.pin, "before").await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    service.stop();

    let additional = format!("{},", old_public.display());
    let service = start_service(
        dir.path(),
        &[
            ("ISM_SIGNING_KEY_FILE", &new_private.display().to_string()),
            ("ISM_ADDITIONAL_PUBLIC_KEY_FILES", &additional),
        ],
    );
    service.process.wait_until_answering().await;
    let published = served_keys(&service).await;
    assert_eq!(published.len(), 2, "{published:?}");
    assert_ne!(
        published[0].1, old_kid,
        "the new key signs, so it comes first"
    );
    assert_eq!(published[1].1, old_kid);
    let new_token = service.join_body(&created.id, &created.pin, "after").await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let keys: KeySet = service.served_keys().await;
    let verifier = TokenVerifier::new(keys).with_issuer("ism");
    let now = test_support::now();
    let old_claims = verifier
        .verify(&old_token, now)
        .expect("the old key's token verifies");
    assert_eq!(old_claims.sub, "before");
    verifier
        .verify(&new_token, now)
        .expect("the new key's token verifies");
    service.stop();
}

#[test]
fn an_unreadable_or_invalid_additional_key_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("not-a-key.pem");
    std::fs::write(&garbage, "hello").expect("write");
    let missing = dir.path().join("missing-key.pem");
    for file in [&garbage, &missing] {
        let (status, log) = Launch::new()
            .data_dir(&dir.path().join("data"))
            .env("ISM_ADDITIONAL_PUBLIC_KEY_FILES", file)
            .run_to_exit();
        assert!(!status.success());
        assert!(
            log.contains(&file.display().to_string()),
            "the error does not name {}: {log}",
            file.display()
        );
    }
}
