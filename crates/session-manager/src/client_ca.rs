//! The client CA: issues a short-lived client certificate for a token, so a device (or,
//! later, a backend holding a service token) can authenticate to the broker's certificate
//! listener by TLS client certificate instead of a password.
//!
//! A certificate is a wrapper around a token, never a grant of its own: its private
//! extension (`session_token::TOKEN_EXTENSION_OID`) holds the signed JWT, its subject common
//! name is `session_token::certificate_identity` of the token's session and name, and it is
//! valid from the token's `iat` to no later than its `exp`. The broker plugin verifies the
//! embedded token exactly like a password, so kicks, closed sessions and key withdrawal
//! apply unchanged, and in KMS mode the token stays KMS-signed while the CA key is local.
//!
//! The CA has its own key, never the token signing key (`session-manager certs` creates it),
//! and is loaded from `ISM_CLIENT_CA_CERT_FILE` / `ISM_CLIENT_CA_KEY_FILE`. Issuing costs one
//! signature with the CA key (ECDSA P-256 by default, tens of microseconds) and is done
//! only for a join that sent a CSR.

pub mod csr;

use std::path::Path;

use rcgen::PublicKeyData;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::Error;
pub use csr::{CertificateRequest, CsrRefusal};

/// The loaded client CA: its certificate and its private key.
pub struct ClientCa {
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCa { .. }")
    }
}

/// What a certificate is issued for: a signed token and who it names.
#[derive(Debug, Clone, Copy)]
pub struct CertificateSubject<'a> {
    /// The signed token (JWT), embedded in the certificate.
    pub token: &'a str,
    /// The token's `sid` (empty for a principal without a session).
    pub session_id: &'a str,
    /// The token's `sub`.
    pub client_name: &'a str,
    /// The token's `iat`: the certificate is valid from then.
    pub not_before: u64,
    /// The latest end of validity, at most the token's `exp`.
    pub not_after: u64,
}

impl ClientCa {
    /// Loads the CA certificate and key (PEM files).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, Error> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| Error::Io {
                action: "read the client CA file",
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read(cert_file)?;
        let key_pem = read(key_file)?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The CA from its certificate and key as PEM text; the key must be the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| Error::Certificate(format!("client CA key: {e}")))?;
        let cert_der = pem::parse(cert_pem)
            .map_err(|e| Error::Certificate(format!("client CA certificate: {e}")))?;
        let (_, certificate) = X509Certificate::from_der(cert_der.contents())
            .map_err(|e| Error::Certificate(format!("client CA certificate: {e}")))?;
        if certificate.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(Error::Certificate(
                "the client CA key is not the key of the client CA certificate".to_owned(),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| Error::Certificate(format!("client CA certificate: {e}")))?;
        Ok(ClientCa { issuer })
    }

    /// Issues a certificate (PEM) for `request`'s key, carrying `subject`'s token and
    /// identity. The one place a client certificate is made: joins use it, and a service
    /// token can be wrapped the same way.
    pub fn issue(
        &self,
        request: &CertificateRequest,
        subject: &CertificateSubject<'_>,
    ) -> Result<String, Error> {
        let failed = |what: &str, e: rcgen::Error| Error::Certificate(format!("{what}: {e}"));
        let not_before = unix_time(subject.not_before)?;
        let not_after = unix_time(subject.not_after.max(subject.not_before))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            session_token::certificate_identity(subject.session_id, subject.client_name),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(
            uuid::Uuid::new_v4().as_bytes().as_slice(),
        ));
        params.use_authority_key_identifier_extension = true;
        let mut token = CustomExtension::from_oid_content(
            &session_token::TOKEN_EXTENSION_OID,
            session_token::token_extension_value(subject.token),
        );
        token.set_criticality(false);
        params.custom_extensions = vec![token];
        let public_key = SubjectPublicKeyInfo::from_der(&request.public_key_der)
            .map_err(|e| failed("the request's key", e))?;
        let certificate = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| failed("client certificate", e))?;
        Ok(certificate.pem())
    }
}

fn unix_time(secs: u64) -> Result<OffsetDateTime, Error> {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .ok_or_else(|| Error::Certificate(format!("{secs} is no representable time")))
}

#[cfg(test)]
mod tests {
    use x509_parser::der_parser::oid::Oid;
    use x509_parser::extensions::ParsedExtension;

    use super::*;

    fn client_ca() -> (ClientCa, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        let cert_pem = cert.pem();
        (
            ClientCa::from_pem(&cert_pem, &key.serialize_pem()).unwrap(),
            cert_pem,
        )
    }

    fn request() -> CertificateRequest {
        let key = KeyPair::generate().unwrap();
        let pem = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        CertificateRequest::from_pem(&pem).unwrap()
    }

    const IAT: u64 = 1_900_000_000;

    fn subject(token: &str) -> CertificateSubject<'_> {
        CertificateSubject {
            token,
            session_id: "4242",
            client_name: "lamp",
            not_before: IAT,
            not_after: IAT + 600,
        }
    }

    #[test]
    fn the_certificate_carries_the_token_the_identity_and_the_token_lifetime() {
        let (ca, ca_pem) = client_ca();
        let pem_text = ca
            .issue(&request(), &subject("header.claims.signature"))
            .unwrap();
        let der = pem::parse(&pem_text).unwrap().into_contents();
        let (_, certificate) = X509Certificate::from_der(&der).unwrap();

        let names: Vec<&str> = certificate
            .subject()
            .iter_common_name()
            .map(|name| name.as_str().unwrap())
            .collect();
        assert_eq!(names, ["4242/lamp"]);
        let validity = certificate.validity();
        assert_eq!(validity.not_before.timestamp(), IAT as i64);
        assert_eq!(validity.not_after.timestamp(), (IAT + 600) as i64);
        assert!(!certificate.is_ca());

        let oid = Oid::from(&session_token::TOKEN_EXTENSION_OID).unwrap();
        let extension = certificate.get_extension_unique(&oid).unwrap().unwrap();
        assert!(!extension.critical, "a non-critical extension");
        assert_eq!(
            extension.value,
            session_token::token_extension_value("header.claims.signature")
        );
        let client_auth = certificate.extensions().iter().any(|extension| {
            matches!(extension.parsed_extension(), ParsedExtension::ExtendedKeyUsage(eku) if eku.client_auth && !eku.server_auth)
        });
        assert!(client_auth, "for client authentication only");

        let ca_der = pem::parse(&ca_pem).unwrap().into_contents();
        let (_, ca_certificate) = X509Certificate::from_der(&ca_der).unwrap();
        certificate
            .verify_signature(Some(ca_certificate.public_key()))
            .expect("signed by the client CA");
    }

    #[test]
    fn validity_never_starts_after_it_ends() {
        let (ca, _) = client_ca();
        let backwards = CertificateSubject {
            not_after: IAT - 10,
            ..subject("t")
        };
        let der = pem::parse(ca.issue(&request(), &backwards).unwrap())
            .unwrap()
            .into_contents();
        let (_, certificate) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            certificate.validity().not_after.timestamp(),
            certificate.validity().not_before.timestamp()
        );
    }

    #[test]
    fn a_ca_key_that_is_not_the_certificates_is_refused_and_so_is_garbage() {
        let (_, ca_pem) = client_ca();
        let other_key = KeyPair::generate().unwrap().serialize_pem();
        let error = ClientCa::from_pem(&ca_pem, &other_key).unwrap_err();
        assert!(error.to_string().contains("not the key"), "{error}");
        assert!(ClientCa::from_pem("not a certificate", &other_key).is_err());
        assert!(ClientCa::from_pem(&ca_pem, "not a key").is_err());
    }
}
