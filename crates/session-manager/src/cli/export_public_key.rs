//! `session-manager export-public-key --out DIR`: the public half of whatever key the
//! configured mode signs with, as the files a broker needs.
//!
//! - `public_key.pem`: SubjectPublicKeyInfo PEM (our Mosquitto plugin, most JWT plugins);
//! - `jwks.json`: the same key as a JWK set with its RFC 7638 `kid` (EMQX, JWKS readers).
//!
//! It reads the same options and environment as `serve`, so it exports exactly the key the
//! service signs with: the local key (or the data directory's development key) in
//! `dev_jwt_auth`, the KMS key's public key (`GetPublicKey`) in `kms_jwt_auth`. This
//! replaces the manual PKCS#8 → PKCS#1 → DER conversion of the original deployment.
//!
//! Both files hold public material only, so re-exporting replaces them (atomically: a
//! broker reading the directory never sees half a file).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use jsonwebtoken::jwk::JwkSet;

use crate::config::{AuthMode, Config};
use crate::error::Error;
use crate::signer::kms::KmsSigner;
use crate::signer::local::LocalSigner;
use crate::signer::TokenSigner as _;

#[derive(Debug, Clone, Args)]
pub(super) struct ExportPublicKeyArgs {
    /// Directory to write public_key.pem and jwks.json into (created if missing).
    #[arg(long)]
    pub out: PathBuf,

    /// The service's options: the mode and key settings decide which key is exported.
    #[command(flatten)]
    pub config: Config,
}

/// Exports the configured mode's public key into `args.out`; returns the paths written.
pub(super) async fn run(args: &ExportPublicKeyArgs) -> Result<Vec<PathBuf>, Error> {
    let config = &args.config;
    let (pem, jwks) = match config.signing.auth_mode {
        AuthMode::DevNoAuth => {
            return Err(Error::Config(
                "MQTT_AUTH_MODE=dev_no_auth signs nothing, so there is no public key to export"
                    .to_owned(),
            ))
        }
        AuthMode::DevJwtAuth => {
            let signer = LocalSigner::from_config(&config.signing, &config.store.data_dir)?;
            (signer.public_key_pem()?, signer.jwks())
        }
        AuthMode::KmsJwtAuth => {
            let signer = KmsSigner::connect(&config.kms).await?;
            (signer.public_key_pem().to_owned(), signer.jwks())
        }
    };
    write_public_files(&args.out, &pem, &jwks)
}

/// Writes `public_key.pem` and `jwks.json` into `dir`.
fn write_public_files(dir: &Path, pem: &str, jwks: &JwkSet) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: "create the output directory",
        path: dir.to_owned(),
        source,
    })?;
    let jwks_json = serde_json::to_string_pretty(jwks)
        .map_err(|e| Error::Key(format!("cannot encode the JWKS: {e}")))?;
    let files = [
        ("public_key.pem", pem.to_owned()),
        ("jwks.json", format!("{jwks_json}\n")),
    ];
    files
        .iter()
        .map(|(name, contents)| {
            let path = dir.join(name);
            replace_file(&path, contents.as_bytes())?;
            Ok(path)
        })
        .collect()
}

/// Writes `contents` to a temporary file beside `path`, then renames it over `path`.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary).map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtAlgorithm;
    use session_token::KeySet;

    #[tokio::test]
    async fn local_mode_exports_the_key_the_service_signs_with() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path().join("data"));
        config.signing.jwt_alg = JwtAlgorithm::Es256;
        let args = ExportPublicKeyArgs {
            out: dir.path().join("broker"),
            config: config.clone(),
        };
        let paths = run(&args).await.unwrap();
        assert_eq!(paths.len(), 2);
        // Exporting again replaces the files with the same key.
        run(&args).await.unwrap();

        let signer = LocalSigner::from_config(&config.signing, &config.store.data_dir).unwrap();
        let pem = std::fs::read(args.out.join("public_key.pem")).unwrap();
        let jwks = std::fs::read_to_string(args.out.join("jwks.json")).unwrap();
        let kid = signer.jwks().keys[0].common.key_id.clone().unwrap();
        assert!(KeySet::from_public_key_pem(&pem)
            .unwrap()
            .find(&kid)
            .is_some());
        assert!(KeySet::from_jwks_json(&jwks).unwrap().find(&kid).is_some());
    }

    #[tokio::test]
    async fn dev_no_auth_has_nothing_to_export() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path().to_owned());
        config.signing.auth_mode = AuthMode::DevNoAuth;
        let args = ExportPublicKeyArgs {
            out: dir.path().join("out"),
            config,
        };
        assert!(matches!(run(&args).await, Err(Error::Config(_))));
    }
}
