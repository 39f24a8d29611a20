//! `dev_no_auth`: no signing at all. The broker allows anonymous clients, and the "token"
//! handed to a device is its client name, exactly as the original service did.

use jsonwebtoken::jwk::JwkSet;
use session_token::Claims;

use super::{SignError, SignerHealth, TokenSigner};

pub struct NoAuthSigner;

#[async_trait::async_trait]
impl TokenSigner for NoAuthSigner {
    fn algorithm(&self) -> Option<jsonwebtoken::Algorithm> {
        None
    }

    fn jwks(&self) -> JwkSet {
        JwkSet { keys: Vec::new() }
    }

    async fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        Ok(claims.sub.clone())
    }

    async fn health(&self) -> SignerHealth {
        SignerHealth {
            ready: true,
            detail: "dev_no_auth: tokens are not signed".to_owned(),
        }
    }
}
