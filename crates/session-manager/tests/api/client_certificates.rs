//! Joins that send a CSR get a client certificate around their token: signed by the
//! configured client CA, named after the session and client, valid no longer than the
//! token, the token in its private extension. A CSR the service will not sign is a 400;
//! a CSR where no client CA is configured a 501; a join without a CSR is unchanged.

use reqwest::StatusCode;
use serde_json::{json, Value};
use session_token::{token_extension_value, TOKEN_EXTENSION_OID};
use tempfile::TempDir;
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::helpers::{error_code, spawn_app_with, TestApp};

/// A client CA written into a temporary directory; the app is configured with it.
struct ClientCaFiles {
    dir: TempDir,
    cert_pem: String,
}

fn client_ca_files() -> ClientCaFiles {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let cert_pem = params.self_signed(&key).unwrap().pem();
    std::fs::write(dir.path().join("client-ca.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("client-ca.key"), key.serialize_pem()).unwrap();
    ClientCaFiles { dir, cert_pem }
}

async fn app_with_client_ca(files: &ClientCaFiles) -> TestApp {
    let dir = files.dir.path().to_owned();
    spawn_app_with(move |config| {
        config.client_certificates.client_ca_cert_file = Some(dir.join("client-ca.pem"));
        config.client_certificates.client_ca_key_file = Some(dir.join("client-ca.key"));
    })
    .await
}

/// A PEM CSR for a fresh P-256 key.
fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

fn fixture_csr(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/csr/{name}.csr",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

async fn join_with(app: &TestApp, session: &str, body: Value) -> reqwest::Response {
    app.join_request(session, &body).send().await.unwrap()
}

fn der_of(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

#[tokio::test]
async fn a_join_with_a_csr_gets_a_certificate_around_its_token() {
    let files = client_ca_files();
    let app = app_with_client_ca(&files).await;
    let created = app.create_session(json!({})).await;
    let response = join_with(
        &app,
        &created.id,
        json!({ "pin": created.pin, "client": "lamp", "csr": csr() }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let der = der_of(body["certificate"].as_str().unwrap());
    let (_, certificate) = X509Certificate::from_der(&der).unwrap();

    let names: Vec<&str> = certificate
        .subject()
        .iter_common_name()
        .map(|name| name.as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{}/lamp", created.id)]);
    assert_eq!(body["client_id"], format!("{}/lamp", created.id));

    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .unwrap()
        .claims;
    let validity = certificate.validity();
    assert_eq!(
        validity.not_before.timestamp(),
        claims["iat"].as_i64().unwrap()
    );
    assert_eq!(
        validity.not_after.timestamp(),
        claims["exp"].as_i64().unwrap()
    );

    let oid = Oid::from(&TOKEN_EXTENSION_OID).unwrap();
    let extension = certificate.get_extension_unique(&oid).unwrap().unwrap();
    assert!(!extension.critical);
    assert_eq!(extension.value, token_extension_value(token));

    let ca_der = der_of(&files.cert_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    certificate
        .verify_signature(Some(ca.public_key()))
        .expect("signed by the client CA");
}

#[tokio::test]
async fn the_certificate_ends_with_a_session_that_ends_before_the_token_would() {
    let files = client_ca_files();
    let app = app_with_client_ca(&files).await;
    let created = app.create_session(json!({ "ttl_secs": 90 })).await;
    let body: Value = join_with(
        &app,
        &created.id,
        json!({ "pin": created.pin, "client": "lamp", "csr": csr() }),
    )
    .await
    .json()
    .await
    .unwrap();
    let der = der_of(body["certificate"].as_str().unwrap());
    let (_, certificate) = X509Certificate::from_der(&der).unwrap();
    let validity = certificate.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        90
    );
    assert_eq!(
        validity.not_after.timestamp(),
        body["expires_at"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn a_join_without_a_csr_is_answered_as_before() {
    let files = client_ca_files();
    let app = app_with_client_ca(&files).await;
    let created = app.create_session(json!({})).await;
    let body: Value = app
        .join(&created.id, &created.pin, "lamp")
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("certificate").is_none(), "{body}");
    let compat: Value = app
        .compat_join(json!({ "id": created.id, "pin": created.pin, "client": "lamp" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(crate::helpers::sorted_keys(&compat), ["token"]);
}

#[tokio::test]
async fn the_compat_join_accepts_a_csr_too() {
    let files = client_ca_files();
    let app = app_with_client_ca(&files).await;
    let created = app.create_session(json!({})).await;
    let response = app
        .compat_join(
            json!({ "id": created.id, "pin": created.pin, "client": "lamp", "csr": csr() }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["certificate"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn a_csr_the_service_will_not_sign_is_a_400_naming_the_problem() {
    let files = client_ca_files();
    let app = app_with_client_ca(&files).await;
    let created = app.create_session(json!({})).await;
    let tampered = {
        let mut der = der_of(&fixture_csr("rsa2048"));
        let last = der.len() - 1;
        der[last] ^= 1;
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der))
    };
    for (csr, says) in [
        (json!("not a csr"), "PEM"),
        (json!(fixture_csr("rsa1024")), "key"),
        (json!(fixture_csr("rsa2048-sha1")), "algorithm"),
        (json!(tampered), "signature"),
        (json!("A".repeat(9000)), "longer"),
    ] {
        let response = join_with(
            &app,
            &created.id,
            json!({ "pin": created.pin, "client": "lamp", "csr": csr }),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_csr");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    let not_text = join_with(
        &app,
        &created.id,
        json!({ "pin": created.pin, "client": "lamp", "csr": 42 }),
    )
    .await;
    assert_eq!(
        error_code(not_text, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    // None of these was a join: the client never joined.
    let session: Value = app.get_session(&created.id).await.json().await.unwrap();
    assert_eq!(session["clients"], json!([]), "{session}");
}

#[tokio::test]
async fn a_csr_without_a_client_ca_is_a_501() {
    let app = spawn_app_with(|_| {}).await;
    let created = app.create_session(json!({})).await;
    let response = join_with(
        &app,
        &created.id,
        json!({ "pin": created.pin, "client": "lamp", "csr": csr() }),
    )
    .await;
    assert_eq!(
        error_code(response, StatusCode::NOT_IMPLEMENTED).await,
        "client_certificates_disabled"
    );
}

#[tokio::test]
async fn dev_no_auth_issues_no_certificates_even_with_a_client_ca() {
    let files = client_ca_files();
    let dir = files.dir.path().to_owned();
    let app = spawn_app_with(move |config| {
        config.signing.auth_mode = session_manager::config::AuthMode::DevNoAuth;
        config.client_certificates.client_ca_cert_file = Some(dir.join("client-ca.pem"));
        config.client_certificates.client_ca_key_file = Some(dir.join("client-ca.key"));
    })
    .await;
    let created = app.create_session(json!({})).await;
    let response = join_with(
        &app,
        &created.id,
        json!({ "pin": created.pin, "client": "lamp", "csr": csr() }),
    )
    .await;
    assert_eq!(
        error_code(response, StatusCode::NOT_IMPLEMENTED).await,
        "client_certificates_disabled"
    );
}
