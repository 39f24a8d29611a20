//! Issued tokens verify with `session_token::TokenVerifier` against the served JWKS and
//! carry the claims docs/API.md lists (iss, sub, sid, iat, nbf, exp, jti, subs, publ, acl), for RS256 and ES256.

use reqwest::StatusCode;
use serde_json::{json, Value};
use session_manager::clock::Clock as _;
use session_manager::config::JwtAlgorithm;
use session_token::{Acl, KeySet, TokenVerifier};

use crate::helpers::{spawn_app_with, TestApp};

async fn join_and_verify(app: &TestApp, algorithm: jsonwebtoken::Algorithm) {
    let created = app.create_session(json!({})).await;
    let response = app.join(&created.id, &created.pin, "sensor-9").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();

    let jwks = app.jwks().await;
    assert_eq!(jwks.status(), StatusCode::OK);
    assert!(jwks.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let keys = KeySet::from_jwks_json(&jwks.text().await.unwrap()).unwrap();
    let now = app.clock.unix_now();
    let claims = TokenVerifier::new(keys)
        .with_issuer("ism")
        .verify(token, now)
        .expect("token verifies against the served JWKS");

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, algorithm);
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    assert_eq!(claims.iss, "ism");
    assert_eq!(claims.sub, "sensor-9");
    assert_eq!(claims.sid, created.id);
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(claims.exp, claims.iat + 86_400);
    assert_eq!(body["expires_at"].as_u64().unwrap(), claims.exp);
    assert!(claims.iat.abs_diff(now) <= 5);
    assert!(uuid_v4(&claims.jti), "jti {}", claims.jti);
    let root = format!("/{}/", created.id);
    let acl = Acl::from_claims(&claims).unwrap();
    assert!(acl.may_publish(&format!("{root}lights")));
    assert!(acl.may_subscribe(&format!("{root}#")));
    assert!(!acl.may_publish("/000000/lights"));
    assert!(!acl.may_subscribe("#"));

    // Every token is unique.
    let again: Value = app.join_body(&created.id, &created.pin, "sensor-9").await;
    let verifier = TokenVerifier::new(app.served_keys().await);
    let second = verifier
        .verify(again["token"].as_str().unwrap(), now)
        .unwrap();
    assert_ne!(second.jti, claims.jti);
}

fn uuid_v4(text: &str) -> bool {
    text.len() == 36
        && text.as_bytes()[14] == b'4'
        && text.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_served_jwks() {
    let app = spawn_app_with(|_| {}).await;
    join_and_verify(&app, jsonwebtoken::Algorithm::RS256).await;
}

#[tokio::test]
async fn es256_tokens_verify_with_the_served_jwks() {
    let app = spawn_app_with(|config| config.signing.jwt_alg = JwtAlgorithm::Es256).await;
    join_and_verify(&app, jsonwebtoken::Algorithm::ES256).await;
}

#[tokio::test]
async fn a_configured_issuer_and_ttl_are_used() {
    let app = spawn_app_with(|config| {
        config.signing.issuer = "fleet-7".to_owned();
        config.signing.token_ttl_secs = 120;
    })
    .await;
    let created = app.create_session(json!({})).await;
    let body: Value = app.join_body(&created.id, &created.pin, "d").await;
    let keys = app.served_keys().await;
    let now = app.clock.unix_now();
    let claims = TokenVerifier::new(keys)
        .with_issuer("fleet-7")
        .verify(body["token"].as_str().unwrap(), now)
        .unwrap();
    assert_eq!(claims.exp - claims.iat, 120);
}

#[tokio::test]
async fn an_explicit_signing_key_is_used() {
    let pem = include_str!("../../../session-token/tests/fixtures/rsa_private.pem");
    let app =
        spawn_app_with(|config| config.signing.signing_key = Some(pem.to_owned().into())).await;
    let created = app.create_session(json!({})).await;
    let body: Value = app.join_body(&created.id, &created.pin, "d").await;
    let public = include_str!("../../../session-token/tests/fixtures/rsa_public.pem");
    let keys = KeySet::from_public_key_pem(public.as_bytes()).unwrap();
    TokenVerifier::new(keys)
        .verify(body["token"].as_str().unwrap(), app.clock.unix_now())
        .expect("signed with the configured key");
    assert!(!app
        .data_dir
        .path()
        .join("dev_signing_key_rs256.pem")
        .exists());
}

#[tokio::test]
async fn the_dev_key_is_reused_across_restarts() {
    let app = spawn_app_with(|_| {}).await;
    let before = app.jwks().await.text().await.unwrap();
    let data_dir = app.stop().await;
    let app = crate::helpers::spawn_app_in(data_dir, |_| {}).await;
    let after = app.jwks().await.text().await.unwrap();
    assert_eq!(before, after);
}
