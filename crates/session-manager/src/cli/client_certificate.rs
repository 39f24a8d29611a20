//! `session-manager certs client`: a service token issued as a client certificate, for a
//! trusted backend that authenticates to the broker's certificate listener instead of
//! sending the token as a password.
//!
//! The command makes a fresh key pair (ECDSA P-256) and a CSR for it, asks the running
//! service's admin API for a service token with that CSR (`POST /api/v1/service-tokens`
//! with `csr`; see [`super::admin_api`] for why it goes through the API), and writes
//! `<name>.key` (mode 0600) and `<name>.pem` (the certificate, which carries the token)
//! into `--out`, never overwriting a file. It prints the token's description (jti, grants,
//! expiry; never the token) with the two paths as JSON: revoking the jti
//! (`session-manager token revoke`) cuts the certificate's holder off like any holder of the
//! token.

use std::path::PathBuf;

use clap::Args;
use rcgen::{CertificateParams, KeyPair};
use reqwest::Method;
use serde_json::{json, Value};

use super::admin_api::AdminApiArgs;
use crate::error::Error;
use crate::new_file::{write_new_file, write_private_file};

#[derive(Debug, Clone, Args)]
pub(super) struct ClientCertificateArgs {
    /// The service token's name; the certificate's identity is `$svc-<name>`, which is also
    /// the MQTT username and client id to connect with.
    #[arg(long)]
    pub name: String,
    /// A filter the backend may subscribe to (repeat for more), e.g. '/+/#'.
    #[arg(long)]
    pub subscribe: Vec<String>,
    /// A filter the backend may publish to (repeat for more), e.g. '/+/#'.
    #[arg(long)]
    pub publish: Vec<String>,
    /// Lifetime in seconds of the token and the certificate (default 30 days, at most 366
    /// days).
    #[arg(long)]
    pub ttl_secs: Option<u64>,
    /// Directory to write `<name>.key` and `<name>.pem` into (created if missing; existing
    /// files are never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub admin: AdminApiArgs,
}

/// Issues the token with a certificate and writes the key and the certificate; the
/// answer's description with the paths, as JSON.
pub(super) async fn run(args: &ClientCertificateArgs) -> Result<Value, Error> {
    let key_file = args.out.join(format!("{}.key", args.name));
    let cert_file = args.out.join(format!("{}.pem", args.name));
    for path in [&key_file, &cert_file] {
        if path.exists() {
            return Err(Error::Config(format!(
                "{} exists; choose another --out or remove it first",
                path.display()
            )));
        }
    }
    let certificate_error = |e: rcgen::Error| Error::Certificate(format!("client key: {e}"));
    let key = KeyPair::generate().map_err(certificate_error)?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .and_then(|request| request.pem())
        .map_err(certificate_error)?;
    let body = json!({
        "name": args.name,
        "subscribe": args.subscribe,
        "publish": args.publish,
        "ttl_secs": args.ttl_secs,
        "csr": csr,
    });
    let mut answer = args
        .admin
        .call(Method::POST, "/api/v1/service-tokens", Some(body))
        .await?;
    let certificate = answer
        .get("certificate")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::AdminApi("the answer carries no certificate".to_owned()))?
        .to_owned();
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
        action: "create the output directory",
        path: args.out.clone(),
        source,
    })?;
    write_private_file(&key_file, key.serialize_pem().as_bytes())?;
    write_new_file(&cert_file, certificate.as_bytes(), 0o644)?;
    if let Some(fields) = answer.as_object_mut() {
        // The token is inside the certificate; the key file is the secret to keep.
        fields.remove("token");
        fields.remove("certificate");
        fields.insert("certificate_file".to_owned(), json!(cert_file));
        fields.insert("key_file".to_owned(), json!(key_file));
    }
    Ok(answer)
}
