//! Reading a client certificate (DER, as the broker's TLS listener received and verified
//! it): the token in its private extension, the identity in its subject common name, and
//! the end of its validity.
//!
//! The broker's certificate listener (`require_certificate true`, `cafile` = the client CA)
//! has checked the chain and the validity period before the plugin is asked; Mosquitto hands
//! a certificate to the plugin only on such a listener. What a certificate may do is decided
//! by its token alone, verified like a password ([`crate::decisions::admit`]); this module
//! only takes the certificate apart.

use std::fmt;

use session_token::TOKEN_EXTENSION_OID;
use x509_parser::der_parser::der::parse_der_utf8string;
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate carries (the token borrowed from its DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCertificate<'a> {
    /// The token (JWT) of the private extension.
    pub token: &'a str,
    /// The subject common name: `session_token::certificate_identity` of the token's
    /// session and name, if the certificate is genuine.
    pub identity: String,
    /// notAfter, seconds since the epoch (0 for a time before the epoch).
    pub not_after: u64,
}

/// Why a certificate does not authenticate anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateRefusal {
    /// Not a parsable X.509 certificate.
    Malformed,
    /// No token extension, or one that is not a UTF-8 string.
    NoToken,
    /// No (single, UTF-8) subject common name.
    NoIdentity,
}

impl fmt::Display for CertificateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateRefusal::Malformed => "the client certificate cannot be parsed",
            CertificateRefusal::NoToken => "the client certificate carries no token",
            CertificateRefusal::NoIdentity => {
                "the client certificate has no single subject common name"
            }
        })
    }
}

/// Takes a client certificate apart.
pub fn read(der: &[u8]) -> Result<TokenCertificate<'_>, CertificateRefusal> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|_| CertificateRefusal::Malformed)?;
    let oid = Oid::from(&TOKEN_EXTENSION_OID).map_err(|_| CertificateRefusal::Malformed)?;
    let extension = certificate
        .get_extension_unique(&oid)
        .map_err(|_| CertificateRefusal::NoToken)?
        .ok_or(CertificateRefusal::NoToken)?;
    let token = match parse_der_utf8string(extension.value) {
        Ok(([], value)) => value.as_str().map_err(|_| CertificateRefusal::NoToken)?,
        _ => return Err(CertificateRefusal::NoToken),
    };
    let mut names = certificate.subject().iter_common_name();
    let identity = match (names.next(), names.next()) {
        (Some(name), None) => name
            .as_str()
            .map_err(|_| CertificateRefusal::NoIdentity)?
            .to_owned(),
        _ => return Err(CertificateRefusal::NoIdentity),
    };
    let not_after = u64::try_from(certificate.validity().not_after.timestamp()).unwrap_or(0);
    Ok(TokenCertificate {
        token,
        identity,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{client_certificate, NOW};

    #[test]
    fn a_certificate_yields_its_token_identity_and_end() {
        let der = client_certificate(&["4242/lamp"], Some("a.b.c"), NOW + 600);
        assert_eq!(
            read(&der),
            Ok(TokenCertificate {
                token: "a.b.c",
                identity: "4242/lamp".to_owned(),
                not_after: NOW + 600,
            })
        );
    }

    #[test]
    fn certificates_without_a_token_or_a_name_are_refused() {
        let no_token = client_certificate(&["4242/lamp"], None, NOW + 600);
        assert_eq!(read(&no_token), Err(CertificateRefusal::NoToken));
        let no_name = client_certificate(&[], Some("a.b.c"), NOW + 600);
        assert_eq!(read(&no_name), Err(CertificateRefusal::NoIdentity));
        assert_eq!(read(b"garbage"), Err(CertificateRefusal::Malformed));
        assert_eq!(read(&[]), Err(CertificateRefusal::Malformed));
    }
}
