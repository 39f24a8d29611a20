//! Key rotation without a restart: on SIGHUP the broker raises its RELOAD event and the
//! plugin re-reads its key file. Connected clients keep their session as long as the key
//! that verified their token is still listed; clients of a withdrawn key are disconnected.
//!
//! A key file that cannot be read or parsed leaves the old keys in force: a half-written
//! JWKS during a deployment must not lock every device out.

/// The result of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// How many keys are accepted now.
    pub key_count: usize,
    /// Client ids to disconnect: their token's key is no longer listed.
    pub revoked_clients: Vec<String>,
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use session_token::keys::public_jwk_of_signing_key;
    use session_token::{Algorithm, Claims, DeviceGrant};

    use crate::clients::ClientHandle;
    use crate::decisions::ConnectAttempt;
    use crate::plugin::Plugin;

    use crate::test_fixtures::{start_plugin, NOW, RSA_PRIVATE};

    const OTHER_RSA_PRIVATE: &[u8] =
        include_bytes!("../../session-token/tests/fixtures/other_rsa_private.pem");

    struct SigningKey {
        key: EncodingKey,
        jwk: serde_json::Value,
        kid: String,
    }

    fn signing_key(pem: &[u8]) -> SigningKey {
        let key = EncodingKey::from_rsa_pem(pem).expect("fixture key");
        let jwk = public_jwk_of_signing_key(&key, Algorithm::RS256).expect("jwk");
        let kid = jwk.common.key_id.clone().expect("kid");
        SigningKey {
            key,
            jwk: serde_json::to_value(jwk).expect("jwk serializes"),
            kid,
        }
    }

    fn token(key: &SigningKey, client: &str) -> String {
        let claims = Claims::for_device(&DeviceGrant {
            issuer: "ism",
            client,
            session_id: "1",
            issued_at: NOW,
            lifetime_secs: 600,
            token_id: "t",
            generation: 0,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        encode(&header, &claims, &key.key).expect("signs")
    }

    fn write_jwks(path: &std::path::Path, keys: &[&SigningKey]) {
        let jwks = serde_json::json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() });
        std::fs::write(path, jwks.to_string()).expect("write jwks");
    }

    /// A plugin whose keys are the JWKS at `jwks`.
    fn plugin_reading(dir: &tempfile::TempDir, jwks: &std::path::Path) -> Plugin {
        start_plugin(dir, &[("jwks_file", jwks.to_str().expect("utf-8 path"))])
    }

    fn connect(plugin: &mut Plugin, handle: usize, token: &str, client: &str) -> bool {
        let attempt = ConnectAttempt {
            username: Some(client),
            password: Some(token),
            client_id: Some(client),
            persistent: false,
            certificate: None,
        };
        plugin
            .authenticate(ClientHandle(handle), attempt, NOW)
            .is_ok()
    }

    #[test]
    fn rotation_admits_new_keys_keeps_listed_ones_and_revokes_withdrawn_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let jwks = dir.path().join("jwks.json");
        let (old, new) = (signing_key(RSA_PRIVATE), signing_key(OTHER_RSA_PRIVATE));
        write_jwks(&jwks, &[&old]);
        let mut plugin = plugin_reading(&dir, &jwks);

        assert!(connect(&mut plugin, 1, &token(&old, "a"), "a"));
        assert!(!connect(&mut plugin, 2, &token(&new, "b"), "b"));

        write_jwks(&jwks, &[&old, &new]);
        let reloaded = plugin.reload_keys(NOW).expect("reloads");
        assert_eq!(reloaded.key_count, 2);
        assert!(reloaded.revoked_clients.is_empty());
        assert!(connect(&mut plugin, 2, &token(&new, "b"), "b"));
        assert!(connect(&mut plugin, 3, &token(&old, "c"), "c"));

        write_jwks(&jwks, &[&new]);
        let mut revoked = plugin.reload_keys(NOW).expect("reloads").revoked_clients;
        revoked.sort();
        assert_eq!(revoked, vec!["a", "c"]);
    }

    #[test]
    fn an_unreadable_key_file_keeps_the_old_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let jwks = dir.path().join("jwks.json");
        let key = signing_key(RSA_PRIVATE);
        write_jwks(&jwks, &[&key]);
        let mut plugin = plugin_reading(&dir, &jwks);
        std::fs::write(&jwks, "{ half written").expect("write");
        assert!(plugin.reload_keys(NOW).is_err());
        assert!(connect(&mut plugin, 1, &token(&key, "a"), "a"));
    }
}
