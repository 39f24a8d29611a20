//! What the crate's unit tests share: the fixture keys of `session-token`, a fixed clock
//! reading, tokens signed with the fixture key, client certificates around them, and a
//! plugin started with its state file in a temporary directory.

use jsonwebtoken::{encode, EncodingKey, Header};
use session_token::{Algorithm, Claims};

use crate::config::PluginConfig;
use crate::plugin::Plugin;

/// The private half of the fixture RSA key.
pub(crate) const RSA_PRIVATE: &[u8] =
    include_bytes!("../../session-token/tests/fixtures/rsa_private.pem");

/// The path of the public half of the fixture RSA key, for `public_key_file`.
pub(crate) const RSA_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../session-token/tests/fixtures/rsa_public.pem"
);

/// The time the tests run at, in seconds since the Unix epoch.
pub(crate) const NOW: u64 = 1_700_000_000;

/// `claims` signed RS256 with the fixture key (no `kid`).
pub(crate) fn sign(claims: &Claims) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture key");
    encode(&Header::new(Algorithm::RS256), claims, &key).expect("signs")
}

/// A plugin started at [`NOW`] with `options` and its state file in `dir`.
pub(crate) fn start_plugin(dir: &tempfile::TempDir, options: &[(&str, &str)]) -> Plugin {
    let state = dir.path().join("state");
    let state = state.to_str().expect("utf-8 path");
    let options = options.iter().copied().chain([("state_file", state)]);
    let config = PluginConfig::from_options(options).expect("options");
    Plugin::start(config, NOW).expect("starts")
}

/// A client certificate (DER) with the subject common name `names` (the last one, or
/// none), the token extension
/// holding `token` when given, valid until `not_after`. Self-signed: the plugin leaves the
/// chain to the broker's TLS listener.
pub(crate) fn client_certificate(names: &[&str], token: Option<&str>, not_after: u64) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    let mut subject = rcgen::DistinguishedName::new();
    for name in names {
        subject.push(rcgen::DnType::CommonName, *name);
    }
    params.distinguished_name = subject;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW as i64 - 60).expect("time");
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after as i64).expect("time");
    if let Some(token) = token {
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &session_token::TOKEN_EXTENSION_OID,
            session_token::token_extension_value(token),
        )];
    }
    let key = rcgen::KeyPair::generate().expect("key");
    params
        .self_signed(&key)
        .expect("certificate")
        .der()
        .to_vec()
}
