//! Token verification against real keys: what verifies, and every way a forged or stale
//! token is refused.

// Test code: a failed expectation is a failed test, so helpers may `expect` too.
#![allow(clippy::expect_used)]

use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use session_token::keys::{public_jwk_from_pem, public_jwk_of_signing_key};
use session_token::{Algorithm, Claims, DeviceGrant, KeyError, KeySet, TokenVerifier, VerifyError};

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");
const OTHER_RSA_PRIVATE: &[u8] = include_bytes!("fixtures/other_rsa_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("fixtures/ec_public.pem");

const NOW: u64 = 1_700_000_000;

fn claims() -> Claims {
    Claims::for_device(&DeviceGrant {
        issuer: "ism",
        client: "lamp-1",
        session_id: "123456",
        issued_at: NOW,
        lifetime_secs: 3600,
        token_id: "jti-1",
        generation: 0,
    })
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture RSA key")
}

fn rsa_kid() -> String {
    public_jwk_from_pem(RSA_PUBLIC)
        .expect("fixture public key")
        .common
        .key_id
        .expect("kid is set")
}

fn sign_rs256(claims: &Claims, key: &EncodingKey, kid: Option<String>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid;
    encode(&header, claims, key).expect("signing works")
}

fn rsa_verifier() -> TokenVerifier {
    TokenVerifier::new(KeySet::from_public_key_pem(RSA_PUBLIC).expect("fixture key set"))
        .with_issuer("ism")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_genuine_rs256_token_verifies() {
    let token = sign_rs256(&claims(), &rsa_key(), Some(rsa_kid()));
    assert_eq!(rsa_verifier().verify(&token, NOW + 10), Ok(claims()));
}

#[test]
fn verification_names_the_key_that_vouched_for_the_token() {
    let with_kid = sign_rs256(&claims(), &rsa_key(), Some(rsa_kid()));
    let verified = rsa_verifier()
        .verify_with_kid(&with_kid, NOW)
        .expect("verifies");
    assert_eq!(verified.kid, rsa_kid());
    assert_eq!(verified.claims, claims());
    // Without a kid the sole key verifies, and its id is still reported.
    let without_kid = sign_rs256(&claims(), &rsa_key(), None);
    let verified = rsa_verifier()
        .verify_with_kid(&without_kid, NOW)
        .expect("verifies");
    assert_eq!(verified.kid, rsa_kid());
}

#[test]
fn a_genuine_es256_token_verifies_through_a_jwks() {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).expect("fixture EC key");
    let jwk = public_jwk_of_signing_key(&key, Algorithm::ES256).expect("jwk of EC key");
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = jwk.common.key_id.clone();
    let token = encode(&header, &claims(), &key).expect("signing works");
    let verifier = TokenVerifier::new(KeySet::from_jwks_json(&jwks).expect("jwks parses"));
    assert_eq!(verifier.verify(&token, NOW), Ok(claims()));
}

#[test]
fn kid_from_private_and_public_key_agree() {
    let from_private = public_jwk_of_signing_key(&rsa_key(), Algorithm::RS256).expect("jwk");
    assert_eq!(from_private.common.key_id, Some(rsa_kid()));
    let ec_private = EncodingKey::from_ec_pem(EC_PRIVATE).expect("fixture EC key");
    let ec_from_private = public_jwk_of_signing_key(&ec_private, Algorithm::ES256).expect("jwk");
    let ec_from_public = public_jwk_from_pem(EC_PUBLIC).expect("jwk");
    assert_eq!(ec_from_private.common.key_id, ec_from_public.common.key_id);
}

#[test]
fn a_token_without_kid_uses_the_only_key() {
    let token = sign_rs256(&claims(), &rsa_key(), None);
    assert!(rsa_verifier().verify(&token, NOW).is_ok());
}

#[test]
fn alg_none_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(serde_json::to_string(&claims()).expect("json").as_bytes());
    let token = format!("{header}.{body}.");
    assert!(matches!(
        rsa_verifier().verify(&token, NOW),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa_kid());
    let token =
        encode(&header, &claims(), &EncodingKey::from_secret(RSA_PUBLIC)).expect("hmac signs");
    assert!(matches!(
        rsa_verifier().verify(&token, NOW),
        Err(VerifyError::AlgorithmMismatch { .. })
    ));
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let other = EncodingKey::from_rsa_pem(OTHER_RSA_PRIVATE).expect("fixture key");
    let token = sign_rs256(&claims(), &other, Some(rsa_kid()));
    assert_eq!(
        rsa_verifier().verify(&token, NOW),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn unknown_kid_is_refused() {
    let token = sign_rs256(&claims(), &rsa_key(), Some("nope".into()));
    assert_eq!(
        rsa_verifier().verify(&token, NOW),
        Err(VerifyError::UnknownKid("nope".into()))
    );
}

#[test]
fn time_claims_are_enforced_with_leeway() {
    let token = sign_rs256(&claims(), &rsa_key(), Some(rsa_kid()));
    let exp = claims().exp;
    assert!(
        rsa_verifier().verify(&token, exp + 4).is_ok(),
        "inside the leeway"
    );
    assert_eq!(
        rsa_verifier().verify(&token, exp + 5),
        Err(VerifyError::Expired { exp })
    );
    assert_eq!(
        rsa_verifier().verify(&token, NOW - 60),
        Err(VerifyError::NotYetValid { nbf: NOW })
    );
}

#[test]
fn wrong_issuer_is_refused() {
    let mut forged = claims();
    forged.iss = "someone-else".into();
    let token = sign_rs256(&forged, &rsa_key(), Some(rsa_kid()));
    assert_eq!(
        rsa_verifier().verify(&token, NOW),
        Err(VerifyError::WrongIssuer("someone-else".into()))
    );
}

#[test]
fn a_token_without_exp_is_refused() {
    let mut value = serde_json::to_value(claims()).expect("json");
    value.as_object_mut().expect("object").remove("exp");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(rsa_kid());
    let token = encode(&header, &value, &rsa_key()).expect("signs");
    assert!(
        matches!(rsa_verifier().verify(&token, NOW), Err(VerifyError::Malformed(m)) if m.contains("exp"))
    );
}

#[test]
fn garbage_truncated_and_huge_tokens_are_refused() {
    let token = sign_rs256(&claims(), &rsa_key(), Some(rsa_kid()));
    let verifier = rsa_verifier();
    assert!(verifier.verify(&token[..token.len() - 10], NOW).is_err());
    assert!(verifier.verify("not a token", NOW).is_err());
    assert!(verifier.verify("", NOW).is_err());
    assert_eq!(
        verifier.verify(&"a".repeat(100 * 1024), NOW),
        Err(VerifyError::TooLong)
    );
}

#[test]
fn key_sets_refuse_secrets_and_mismatched_algorithms() {
    let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#;
    assert!(matches!(
        KeySet::from_jwks_json(oct),
        Err(KeyError::Unsupported { .. })
    ));
    let mut jwk = public_jwk_from_pem(RSA_PUBLIC).expect("jwk");
    jwk.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::HS256);
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    assert!(matches!(
        KeySet::from_jwks_json(&jwks),
        Err(KeyError::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        KeySet::from_jwks_json(r#"{"keys":[]}"#),
        Err(KeyError::Empty)
    ));
    assert!(matches!(
        KeySet::from_jwks_json("nope"),
        Err(KeyError::NotJwks(_))
    ));
    assert!(matches!(
        KeySet::from_public_key_pem(b"nope"),
        Err(KeyError::NotPublicKeyPem)
    ));
}

#[test]
fn a_token_with_a_critical_header_extension_is_refused() {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(rsa_kid());
    header.crit = Some(vec!["exp".into()]);
    let token = encode(&header, &claims(), &rsa_key()).expect("signs");
    assert_eq!(
        rsa_verifier().verify(&token, NOW),
        Err(VerifyError::UnknownCritical(vec!["exp".into()]))
    );
    // Hand-made header: an extension we do not know, and an empty list.
    for crit in [r#"["b64"]"#, "[]"] {
        let header = format!(
            r#"{{"alg":"RS256","typ":"JWT","kid":"{}","crit":{crit}}}"#,
            rsa_kid()
        );
        let unsigned = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(serde_json::to_string(&claims()).expect("json").as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(unsigned.as_bytes(), &rsa_key(), Algorithm::RS256)
                .expect("signs");
        let token = format!("{unsigned}.{signature}");
        assert!(
            matches!(
                rsa_verifier().verify(&token, NOW),
                Err(VerifyError::UnknownCritical(_))
            ),
            "crit {crit} must be refused"
        );
    }
}
