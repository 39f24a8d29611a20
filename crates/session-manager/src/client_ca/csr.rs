//! A device's certificate signing request, parsed once: PEM, then DER, its self-signature
//! checked, its key of a kind and size we sign. Everything else in the request (its subject,
//! its requested extensions) is ignored: the certificate's identity and extensions are the
//! service's to choose.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// The largest PEM text accepted: a 4096-bit RSA request is under 2 KiB.
pub const MAX_CSR_PEM_BYTES: usize = 8 * 1024;

/// RSA key sizes (bits) accepted: 2048 is today's floor, beyond 4096 only costs the broker.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// A request whose self-signature holds and whose key we accept.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// The request's SubjectPublicKeyInfo, DER: the key the certificate will certify.
    pub(crate) public_key_der: Vec<u8>,
}

/// Why a request is refused (the message a device gets with its 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrRefusal {
    #[error("`csr` is longer than {MAX_CSR_PEM_BYTES} bytes")]
    TooLong,
    #[error("`csr` is not a PEM \"CERTIFICATE REQUEST\" block")]
    NotPem,
    #[error("`csr` is not a valid PKCS#10 certificate signing request")]
    Malformed,
    #[error("the signature of `csr` does not verify with its own key")]
    BadSignature,
    #[error(
        "`csr` is signed with an algorithm we do not accept (use ECDSA with SHA-256/384, Ed25519, or RSA with SHA-256/384/512)"
    )]
    SignatureAlgorithm,
    #[error("`csr` holds a key we do not accept (use EC P-256 or P-384, Ed25519, or RSA of 2048 to 4096 bits)")]
    KeyType,
}

impl CertificateRequest {
    /// Parses and checks a PEM request.
    pub fn from_pem(pem_text: &str) -> Result<Self, CsrRefusal> {
        if pem_text.len() > MAX_CSR_PEM_BYTES {
            return Err(CsrRefusal::TooLong);
        }
        let block = pem::parse(pem_text).map_err(|_| CsrRefusal::NotPem)?;
        // OpenSSL before 1.0 wrote "NEW CERTIFICATE REQUEST"; both mean PKCS#10.
        if !matches!(
            block.tag(),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
        ) {
            return Err(CsrRefusal::NotPem);
        }
        Self::from_der(block.contents())
    }

    fn from_der(der: &[u8]) -> Result<Self, CsrRefusal> {
        let (rest, request) =
            X509CertificationRequest::from_der(der).map_err(|_| CsrRefusal::Malformed)?;
        if !rest.is_empty() {
            return Err(CsrRefusal::Malformed);
        }
        let signature = &request.signature_algorithm.algorithm;
        let accepted: [&Oid<'static>; 6] = [
            &OID_SIG_ECDSA_WITH_SHA256,
            &OID_SIG_ECDSA_WITH_SHA384,
            &OID_SIG_ED25519,
            &OID_PKCS1_SHA256WITHRSA,
            &OID_PKCS1_SHA384WITHRSA,
            &OID_PKCS1_SHA512WITHRSA,
        ];
        if !accepted.contains(&signature) {
            return Err(CsrRefusal::SignatureAlgorithm);
        }
        let spki = &request.certification_request_info.subject_pki;
        check_key(spki)?;
        request
            .verify_signature()
            .map_err(|_| CsrRefusal::BadSignature)?;
        Ok(CertificateRequest {
            public_key_der: spki.raw.to_vec(),
        })
    }
}

/// EC P-256/P-384, Ed25519, or RSA within [`RSA_BITS`].
fn check_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), CsrRefusal> {
    match spki.parsed().map_err(|_| CsrRefusal::KeyType)? {
        PublicKey::RSA(rsa) if RSA_BITS.contains(&rsa.key_size()) => Ok(()),
        PublicKey::EC(_) => {
            let algorithm = &spki.algorithm;
            let curve = algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok());
            let known_curve =
                curve.is_some_and(|curve| curve == OID_EC_P256 || curve == OID_NIST_EC_P384);
            if algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && known_curve {
                Ok(())
            } else {
                Err(CsrRefusal::KeyType)
            }
        }
        PublicKey::Unknown(_) if spki.algorithm.algorithm == OID_SIG_ED25519 => Ok(()),
        _ => Err(CsrRefusal::KeyType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request made by `openssl req` (tests/fixtures/csr/).
    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/csr/{name}.csr",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    /// A request made by rcgen for a fresh key of `algorithm`.
    fn generated(algorithm: &'static rcgen::SignatureAlgorithm) -> String {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        rcgen::CertificateParams::new(vec!["device".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    }

    #[test]
    fn requests_for_sane_keys_are_accepted() {
        for name in ["rsa2048", "p384", "ed25519"] {
            let request = CertificateRequest::from_pem(&fixture(name));
            assert!(request.is_ok(), "{name}: {request:?}");
        }
        for algorithm in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            CertificateRequest::from_pem(&generated(algorithm)).unwrap();
        }
    }

    #[test]
    fn weak_or_unusual_keys_and_sha1_are_refused() {
        let refusal = |name| CertificateRequest::from_pem(&fixture(name)).unwrap_err();
        assert_eq!(refusal("rsa1024"), CsrRefusal::KeyType);
        assert_eq!(refusal("p521"), CsrRefusal::KeyType);
        assert_eq!(refusal("rsa2048-sha1"), CsrRefusal::SignatureAlgorithm);
    }

    #[test]
    fn a_request_whose_signature_does_not_hold_is_refused() {
        let block = pem::parse(fixture("rsa2048")).unwrap();
        let mut der = block.contents().to_vec();
        // The signature is the request's last bytes.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert_eq!(
            CertificateRequest::from_pem(&tampered).unwrap_err(),
            CsrRefusal::BadSignature
        );
    }

    #[test]
    fn text_that_is_no_request_is_refused() {
        let from = |text: &str| CertificateRequest::from_pem(text).unwrap_err();
        assert_eq!(from(""), CsrRefusal::NotPem);
        assert_eq!(from("hello"), CsrRefusal::NotPem);
        let certificate_label = fixture("rsa2048").replace("CERTIFICATE REQUEST", "CERTIFICATE");
        assert_eq!(from(&certificate_label), CsrRefusal::NotPem);
        let garbage = pem::encode(&pem::Pem::new(
            "CERTIFICATE REQUEST",
            vec![0x30, 0x03, 1, 2, 3],
        ));
        assert_eq!(from(&garbage), CsrRefusal::Malformed);
        assert_eq!(
            from(&"A".repeat(MAX_CSR_PEM_BYTES + 1)),
            CsrRefusal::TooLong
        );
    }
}
