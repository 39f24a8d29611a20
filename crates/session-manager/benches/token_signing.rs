//! Token signing cost, to decide how the local signer signs:
//!
//! - `jsonwebtoken::encode`, which re-parses the private key on every call;
//! - `SigningKey::sign` over a signing input from the service's `JwsHeader` (the
//!   signature alone, what every other figure is compared with);
//! - `LocalSigner::sign_now`, which keeps a parsed aws-lc-rs key pair;
//! - `TokenSigner::sign` awaited on the runtime (RSA goes through `spawn_blocking`),
//!   sequentially and with 64 concurrent callers.
//!
//! Run: `cargo bench -p session-manager --bench token_signing`. Compare the RS256 figure
//! with `openssl speed -seconds 5 rsa2048` (sign/s), the ceiling for one core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_manager::config::JwtAlgorithm;
use session_manager::{JwsHeader, LocalSigner, SigningKey, TokenSigner};
use session_token::{Claims, DeviceGrant};

const RUN_FOR: Duration = Duration::from_secs(3);

fn claims() -> Claims {
    Claims::for_device(&DeviceGrant {
        issuer: "ism",
        client: "bench-device",
        session_id: "123456",
        issued_at: 1_700_000_000,
        lifetime_secs: 86_400,
        token_id: "4a1c2b8e-8d0f-4c55-9b7e-0a3c1d2e3f40",
        generation: 0,
    })
}

fn rate(label: &str, mut sign_once: impl FnMut()) {
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < RUN_FOR {
        sign_once();
        count += 1;
    }
    let per_sec = count as f64 / started.elapsed().as_secs_f64();
    println!("{label:<58} {per_sec:>9.0} signatures/s");
}

fn main() {
    let claims = claims();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for algorithm in [JwtAlgorithm::Rs256, JwtAlgorithm::Es256] {
        let key = SigningKey::generate(algorithm).expect("key");
        let pem = key.private_pkcs8_pem().expect("pem");
        let encoding = match algorithm {
            JwtAlgorithm::Rs256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()),
            JwtAlgorithm::Es256 => jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()),
        }
        .expect("encoding key");
        let header = jsonwebtoken::Header::new(algorithm.as_jwt());
        rate(
            &format!("{algorithm:?} jsonwebtoken::encode (key parsed per call)"),
            || {
                jsonwebtoken::encode(&header, &claims, &encoding).expect("encode");
            },
        );

        let jws = JwsHeader::new(algorithm.as_jwt(), None).expect("header");
        rate(
            &format!("{algorithm:?} JwsHeader + SigningKey::sign (parsed key pair)"),
            || {
                let input = jws.signing_input(&claims).expect("input");
                let signature = key.sign(input.as_bytes()).expect("sign");
                input.into_token(&signature);
            },
        );

        let signer = Arc::new(LocalSigner::new(key).expect("signer"));
        rate(
            &format!("{algorithm:?} LocalSigner::sign_now (parsed key pair)"),
            || {
                signer.sign_now(&claims).expect("sign");
            },
        );
        rate(
            &format!("{algorithm:?} TokenSigner::sign, sequential on the runtime"),
            || {
                runtime.block_on(signer.sign(&claims)).expect("sign");
            },
        );
        let concurrent = runtime.block_on(async {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let signer = Arc::clone(&signer);
                let claims = claims.clone();
                tasks.push(tokio::spawn(async move {
                    let mut count = 0u64;
                    while started.elapsed() < RUN_FOR {
                        signer.sign(&claims).await.expect("sign");
                        count += 1;
                    }
                    count
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("task");
            }
            total as f64 / started.elapsed().as_secs_f64()
        });
        println!(
            "{:<58} {concurrent:>9.0} signatures/s",
            format!("{algorithm:?} TokenSigner::sign, 64 concurrent callers")
        );
    }
}
