//! Where the time of one token verification goes: the whole `TokenVerifier::verify_with_kid`
//! for an RS256 and an ES256 device token, against the bare signature check of aws-lc-rs
//! with the key parsed once (what the verifier does) and with the key rebuilt from its JWK
//! components on every call (what `jsonwebtoken::decode` does). Each figure is the best of
//! 7 batches, in µs per verification; compare with `openssl speed rsa2048` (verify/s) on
//! the same core.
//!
//! `taskset -c 1 cargo bench -p session-token --bench verify`

// Bench code: a failed expectation is a failed run.
#![allow(clippy::expect_used)]

use std::time::Instant;

use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;
use jsonwebtoken::jwk::AlgorithmParameters;
use jsonwebtoken::{encode, EncodingKey, Header};
use session_token::keys::public_jwk_from_pem;
use session_token::{Algorithm, Claims, DeviceGrant, KeySet, TokenVerifier};

const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/ec_public.pem");
const NOW: u64 = 1_700_000_000;
const BATCH: usize = 2_000;

/// Best of 7 batches, µs per call.
fn best_us(mut call: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BATCH {
                call();
            }
            start.elapsed().as_secs_f64() * 1e6 / BATCH as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn token(algorithm: Algorithm, private: &EncodingKey, public_pem: &[u8]) -> String {
    let claims = Claims::for_device(&DeviceGrant {
        issuer: "ism",
        client: "lamp-1",
        session_id: "123456789",
        issued_at: NOW,
        lifetime_secs: 86_400,
        token_id: "0f3c7a4e-5b8d-4c1e-9a2f-6d7e8f9a0b1c",
        generation: 0,
    });
    let mut header = Header::new(algorithm);
    header.kid = public_jwk_from_pem(public_pem)
        .expect("fixture key")
        .common
        .key_id;
    encode(&header, &claims, private).expect("signs")
}

fn decode(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url")
}

fn main() {
    let rsa_token = token(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture key"),
        RSA_PUBLIC,
    );
    let ec_token = token(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE).expect("fixture key"),
        EC_PUBLIC,
    );
    let rsa = TokenVerifier::new(KeySet::from_public_key_pem(RSA_PUBLIC).expect("key"))
        .with_issuer("ism");
    let ec =
        TokenVerifier::new(KeySet::from_public_key_pem(EC_PUBLIC).expect("key")).with_issuer("ism");

    let verify_rsa = best_us(|| {
        rsa.verify_with_kid(&rsa_token, NOW).expect("verifies");
    });
    let verify_ec = best_us(|| {
        ec.verify_with_kid(&ec_token, NOW).expect("verifies");
    });

    let (signing_input, signature) = rsa_token.rsplit_once('.').expect("three parts");
    let signature = decode(signature);
    let AlgorithmParameters::RSA(params) = public_jwk_from_pem(RSA_PUBLIC)
        .expect("fixture key")
        .algorithm
    else {
        panic!("an RSA key");
    };
    let (n, e) = (decode(&params.n), decode(&params.e));
    let components = RsaPublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    };
    let parsed = components
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .expect("parses");
    let parsed_once = best_us(|| {
        parsed
            .verify_sig(signing_input.as_bytes(), &signature)
            .expect("verifies");
    });
    let rebuilt_each_time = best_us(|| {
        components
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                signing_input.as_bytes(),
                &signature,
            )
            .expect("verifies");
    });

    println!("RS256 token ({} bytes):", rsa_token.len());
    println!("  TokenVerifier::verify_with_kid           {verify_rsa:7.2} µs");
    println!("  RSA signature only, key parsed once      {parsed_once:7.2} µs");
    println!("  RSA signature only, key rebuilt per call {rebuilt_each_time:7.2} µs");
    println!("ES256 token ({} bytes):", ec_token.len());
    println!("  TokenVerifier::verify_with_kid           {verify_ec:7.2} µs");
}
