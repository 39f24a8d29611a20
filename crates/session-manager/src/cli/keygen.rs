//! `session-manager keygen`: a new signing key pair as the files a deployment needs.
//!
//! - `private_key.pem`: PKCS#8, for `ISM_SIGNING_KEY(_FILE)` (mode 0600);
//! - `public_key.pem`: SubjectPublicKeyInfo, for brokers that read a PEM;
//! - `jwks.json`: the public key as a JWK set (kid = RFC 7638 thumbprint);
//! - `public_key.der` (RSA only): PKCS#1 `RSAPublicKey` DER, the form the original
//!   deployment's third-party broker plugin read.
//!
//! Existing files are never overwritten: replacing a signing key is a decision (see key
//! rotation in the deployment docs), not a side effect.

use std::path::{Path, PathBuf};

use clap::Args;
use jsonwebtoken::jwk::JwkSet;

use crate::config::JwtAlgorithm;
use crate::error::Error;
use crate::new_file::{write_new_file, write_private_file};
use crate::signing_key::SigningKey;

#[derive(Debug, Clone, Args)]
pub(super) struct KeygenArgs {
    /// Directory to write the key files into (created if missing; existing files are
    /// never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Key algorithm.
    #[arg(long, value_enum, default_value_t = JwtAlgorithm::Rs256)]
    alg: JwtAlgorithm,
}

/// Generates a key pair for `args.alg` and writes its files into `args.out`; returns the
/// paths written.
pub(super) fn run(args: &KeygenArgs) -> Result<Vec<PathBuf>, Error> {
    let key = SigningKey::generate(args.alg)?;
    write_key_files(&key, &args.out)
}

/// Writes `key`'s files into `dir` (created if missing).
fn write_key_files(key: &SigningKey, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: "create the output directory",
        path: dir.to_owned(),
        source,
    })?;
    let jwks = JwkSet {
        keys: vec![key.public_jwk()?],
    };
    let jwks_json = serde_json::to_string_pretty(&jwks)
        .map_err(|e| Error::Key(format!("cannot encode the JWKS: {e}")))?;
    let mut files = vec![
        (
            "private_key.pem",
            key.private_pkcs8_pem()?.into_bytes(),
            true,
        ),
        ("public_key.pem", key.public_spki_pem()?.into_bytes(), false),
        ("jwks.json", format!("{jwks_json}\n").into_bytes(), false),
    ];
    if let Some(der) = key.public_pkcs1_der() {
        files.push(("public_key.der", der, false));
    }
    let paths: Vec<PathBuf> = files.iter().map(|(name, _, _)| dir.join(name)).collect();
    if let Some(existing) = paths.iter().find(|path| path.exists()) {
        return Err(Error::Config(format!(
            "{} already exists; choose an empty directory",
            existing.display()
        )));
    }
    for ((_, contents, private), path) in files.iter().zip(&paths) {
        if *private {
            write_private_file(path, contents)?;
        } else {
            write_new_file(path, contents, 0o644)?;
        }
    }
    Ok(paths)
}
