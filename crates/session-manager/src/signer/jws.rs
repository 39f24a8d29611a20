//! JWS compact serialisation, the one place a token is assembled, for every signer:
//! `base64url(header) "." base64url(claims)` is the signing input, and the token is the
//! signing input, `"."` and `base64url(signature)`.
//!
//! The header of a signer never changes, so [`JwsHeader`] encodes it once; a token then
//! costs one claims encoding and one signature. How the signature is made (a key in
//! memory, KMS) is the signer's business.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use session_token::Claims;

use super::SignError;
use crate::error::Error;

/// The encoded header of a signer's tokens: `alg`, `typ` "JWT" and the key's `kid`.
#[derive(Debug, Clone)]
pub struct JwsHeader {
    /// `base64url(header) + "."`, the constant prefix of every token.
    segment: String,
}

impl JwsHeader {
    pub fn new(algorithm: Algorithm, kid: Option<String>) -> Result<Self, Error> {
        let mut header = Header::new(algorithm);
        header.kid = kid;
        let json = serde_json::to_vec(&header)
            .map_err(|e| Error::Key(format!("cannot encode the JWT header: {e}")))?;
        Ok(JwsHeader {
            segment: format!("{}.", URL_SAFE_NO_PAD.encode(json)),
        })
    }

    /// The bytes to sign for `claims`.
    pub fn signing_input(&self, claims: &Claims) -> Result<SigningInput, SignError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| SignError::Failed(format!("cannot encode claims: {e}")))?;
        // Room for the payload's base64 (4/3) and an RSA-2048 signature's (342 bytes).
        let mut text = String::with_capacity(self.segment.len() + payload.len() * 2 + 360);
        text.push_str(&self.segment);
        URL_SAFE_NO_PAD.encode_string(payload, &mut text);
        Ok(SigningInput(text))
    }
}

/// `base64url(header) "." base64url(claims)`, waiting for its signature.
#[derive(Debug)]
pub struct SigningInput(String);

impl SigningInput {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The compact token: this input, `"."` and the signature (JOSE form: for ECDSA the
    /// raw `r || s`, not DER).
    pub fn into_token(self, signature: &[u8]) -> String {
        let mut token = self.0;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::sample_device_claims;

    #[test]
    fn tokens_have_the_compact_form_jsonwebtoken_reads() {
        let claims = sample_device_claims();
        let header = JwsHeader::new(Algorithm::ES256, Some("kid-1".to_owned())).unwrap();
        let input = header.signing_input(&claims).unwrap();
        let signed_part = String::from_utf8(input.as_bytes().to_vec()).unwrap();
        let token = input.into_token(&[1, 2, 3]);
        assert_eq!(token, format!("{signed_part}.AQID"));
        let decoded = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(decoded.alg, Algorithm::ES256);
        assert_eq!(decoded.kid.as_deref(), Some("kid-1"));
        assert_eq!(decoded.typ.as_deref(), Some("JWT"));
    }
}
