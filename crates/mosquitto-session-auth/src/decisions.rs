//! The plugin's decisions, free of any broker type: may this CONNECT in, may this client
//! touch this topic. Everything token-shaped is delegated to `session-token` (including
//! which client ids a token may use, `session_token::classify_client_id`); this module only
//! adds the MQTT-side rules (the username must be the token's `sub`, a dead token grants
//! nothing). Whether another session holds a first-come client id is the registry's
//! knowledge, checked by [`crate::plugin::Plugin::authenticate`].
//!
//! A client that presents a certificate (the broker's certificate listener) is admitted by
//! the token inside it ([`crate::certificate`]), through the same checks as a password,
//! plus one: the certificate's identity must be the token's session and name. It is
//! admitted until the earlier of the token's `exp` and the certificate's notAfter.

use std::fmt;

use session_token::{
    certificate_identity, classify_client_id, Acl, ClientIdKind, ClientIdRefusal, TokenVerifier,
    TopicError, VerifyError,
};

use crate::certificate::{self, CertificateRefusal};
use crate::clients::ConnectedClient;
use crate::token_cache::{TokenCache, VerifiedGrant};

/// The credentials of one CONNECT, as the broker reports them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectAttempt<'a> {
    pub username: Option<&'a str>,
    /// The MQTT password: the token.
    pub password: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// The broker keeps this client's session after it disconnects (see
    /// [`ConnectedClient::persistent`]).
    pub persistent: bool,
    /// The client's TLS certificate (DER), on the certificate listener only. When present
    /// the token comes from it, the password is not read and the username is optional.
    pub certificate: Option<&'a [u8]>,
}

/// Why a CONNECT was refused. Printed in the broker log; never contains the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoPassword,
    NoUsername,
    InvalidToken(VerifyError),
    Expired {
        exp: u64,
    },
    UsernameIsNotSubject,
    NoClientId,
    ClientId(ClientIdRefusal),
    /// A first-come client id (bare name or free id) that a device of another session holds,
    /// connected or as a persisted session.
    ClientIdHeldByAnotherSession,
    MalformedGrants(TopicError),
    /// The token's session has been closed.
    SessionClosed,
    /// The device was kicked and the token is of a generation from before the kick.
    Kicked,
    /// The token itself (its `jti`) was revoked.
    TokenRevoked,
    /// The client certificate carries no usable token or identity.
    Certificate(CertificateRefusal),
    /// The client certificate's identity is not its token's session and name.
    CertificateIdentityMismatch,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoPassword => f.write_str("no password (the token) was sent"),
            Refusal::NoUsername => f.write_str("no username was sent"),
            Refusal::InvalidToken(error) => error.fmt(f),
            Refusal::Expired { exp } => write!(f, "token expired at {exp}"),
            Refusal::UsernameIsNotSubject => f.write_str("username is not the token's sub"),
            Refusal::NoClientId => f.write_str("no client id"),
            Refusal::ClientId(refusal) => refusal.fmt(f),
            Refusal::ClientIdHeldByAnotherSession => {
                f.write_str("client id is held by another session")
            }
            Refusal::MalformedGrants(error) => write!(f, "token grants are malformed: {error}"),
            Refusal::SessionClosed => f.write_str("the token's session has been closed"),
            Refusal::Kicked => f.write_str("the device was kicked and the token predates the kick"),
            Refusal::TokenRevoked => f.write_str("the token has been revoked"),
            Refusal::Certificate(refusal) => refusal.fmt(f),
            Refusal::CertificateIdentityMismatch => {
                f.write_str("the client certificate's identity is not its token's session and name")
            }
        }
    }
}

/// What the broker asks about in an ACL check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A SUBSCRIBE to a filter.
    Subscribe,
    /// An UNSUBSCRIBE; always allowed, giving up rights is harmless.
    Unsubscribe,
    /// A PUBLISH from the client.
    Publish,
    /// Delivery of a message to the client.
    Receive,
}

/// Decides a CONNECT as far as the token goes: it must verify at `now` (or be a token
/// verified before and still in `cache`), still be alive, name the connecting username as
/// its `sub`, and allow the client id (`session_token::classify_client_id`;
/// `allow_any_client_id` admits free ids). Returns the client and the kind of its id; a
/// first-come kind still needs the holder check.
pub fn admit(
    verifier: &TokenVerifier,
    cache: &mut TokenCache,
    allow_any_client_id: bool,
    attempt: ConnectAttempt<'_>,
    now: u64,
) -> Result<(ConnectedClient, ClientIdKind), Refusal> {
    let certificate = attempt
        .certificate
        .map(certificate::read)
        .transpose()
        .map_err(Refusal::Certificate)?;
    let (token, username) = match &certificate {
        Some(certificate) => (certificate.token, attempt.username),
        None => (
            attempt.password.ok_or(Refusal::NoPassword)?,
            Some(attempt.username.ok_or(Refusal::NoUsername)?),
        ),
    };
    let key = TokenCache::digest(token);
    let grant = match cache.get(&key, now) {
        Some(grant) => grant.clone(),
        None => {
            let grant = verify(verifier, token, now)?;
            cache.insert(key, grant.clone(), now);
            grant
        }
    };
    if username.is_some_and(|username| username != grant.name) {
        return Err(Refusal::UsernameIsNotSubject);
    }
    let mut expires_at = grant.expires_at;
    if let Some(certificate) = &certificate {
        if certificate.identity != certificate_identity(&grant.session_id, &grant.name) {
            return Err(Refusal::CertificateIdentityMismatch);
        }
        // The listener refused an expired certificate already; this keeps the grants
        // from outliving it while connected.
        if certificate.not_after <= now {
            return Err(Refusal::Expired {
                exp: certificate.not_after,
            });
        }
        expires_at = expires_at.min(certificate.not_after);
    }
    // Mosquitto assigns an id to a client that sent an empty one before asking the plugin.
    let client_id = attempt
        .client_id
        .filter(|id| !id.is_empty())
        .ok_or(Refusal::NoClientId)?;
    let kind = classify_client_id(
        client_id,
        &grant.session_id,
        &grant.name,
        allow_any_client_id,
    )
    .map_err(Refusal::ClientId)?;
    let client = ConnectedClient {
        client_id: client_id.to_owned(),
        session_id: grant.session_id,
        name: grant.name,
        kid: grant.kid,
        expires_at,
        grants_end: expires_at,
        acl: grant.acl,
        persistent: attempt.persistent,
        token_id: grant.token_id,
        generation: grant.generation,
    };
    Ok((client, kind))
}

/// Verifies a token the cache does not hold: signature, time claims, issuer, and grants
/// that parse.
fn verify(verifier: &TokenVerifier, token: &str, now: u64) -> Result<VerifiedGrant, Refusal> {
    let verified = verifier
        .verify_with_kid(token, now)
        .map_err(Refusal::InvalidToken)?;
    let claims = verified.claims;
    // The verifier tolerates clock skew on `exp`; the broker enforces `exp` itself from
    // the second it passes, so a token it admits is not kicked moments later.
    if claims.exp <= now {
        return Err(Refusal::Expired { exp: claims.exp });
    }
    let acl = Acl::from_claims(&claims).map_err(Refusal::MalformedGrants)?;
    Ok(VerifiedGrant {
        session_id: claims.sid,
        name: claims.sub,
        kid: verified.kid,
        expires_at: claims.exp,
        acl,
        token_id: claims.jti,
        generation: claims.generation,
    })
}

/// Decides an ACL check for an admitted client (`None`: a client the plugin never admitted,
/// which gets nothing). A client whose token has died gets nothing either, even before the
/// broker has disconnected it.
pub fn may_access(client: Option<&ConnectedClient>, access: Access, topic: &str, now: u64) -> bool {
    if access == Access::Unsubscribe {
        return true;
    }
    let Some(client) = client else {
        return false;
    };
    if !client.grants_valid_at(now) {
        return false;
    }
    match access {
        Access::Subscribe => client.acl.may_subscribe(topic),
        Access::Publish => client.acl.may_publish(topic),
        Access::Receive => client.acl.may_receive(topic),
        Access::Unsubscribe => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use session_token::{Algorithm, Claims, DeviceGrant, KeySet};

    const RSA_PRIVATE: &[u8] = include_bytes!("../../session-token/tests/fixtures/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../session-token/tests/fixtures/rsa_public.pem");
    const NOW: u64 = 1_700_000_000;

    fn token(client: &str, lifetime_secs: u64) -> String {
        let claims = Claims::for_device(&DeviceGrant {
            issuer: "ism",
            client,
            session_id: "4242",
            issued_at: NOW,
            lifetime_secs,
            token_id: "t",
            generation: 0,
        });
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture key");
        encode(&Header::new(Algorithm::RS256), &claims, &key).expect("signs")
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(KeySet::from_public_key_pem(RSA_PUBLIC).expect("fixture key"))
            .with_issuer("ism")
    }

    fn attempt<'a>(user: &'a str, token: &'a str, id: &'a str) -> ConnectAttempt<'a> {
        ConnectAttempt {
            username: Some(user),
            password: Some(token),
            client_id: Some(id),
            persistent: false,
            certificate: None,
        }
    }

    fn admit_client(
        allow_any: bool,
        attempt: ConnectAttempt<'_>,
        now: u64,
    ) -> Result<ConnectedClient, Refusal> {
        admit(
            &verifier(),
            &mut TokenCache::new(0),
            allow_any,
            attempt,
            now,
        )
        .map(|(client, _)| client)
    }

    #[test]
    fn a_device_with_its_own_token_is_admitted_with_its_grants() {
        let token = token("lamp", 60);
        let client = admit_client(false, attempt("lamp", &token, "lamp"), NOW).expect("admitted");
        assert_eq!(client.client_id, "lamp");
        assert_eq!(client.expires_at, NOW + 60);
        assert!(may_access(Some(&client), Access::Publish, "/4242/x", NOW));
        assert!(may_access(Some(&client), Access::Subscribe, "/4242/#", NOW));
        assert!(may_access(Some(&client), Access::Receive, "/4242/x", NOW));
        assert!(!may_access(Some(&client), Access::Publish, "/4343/x", NOW));
        assert!(!may_access(Some(&client), Access::Subscribe, "#", NOW));
        assert!(!may_access(Some(&client), Access::Receive, "/4343/x", NOW));
    }

    #[test]
    fn identity_mismatches_are_refused() {
        let token = token("lamp", 60);
        let refuse = |user, id, allow_any| {
            admit_client(allow_any, attempt(user, &token, id), NOW).expect_err("refused")
        };
        assert_eq!(refuse("other", "lamp", true), Refusal::UsernameIsNotSubject);
        assert_eq!(
            refuse("lamp", "other", false),
            Refusal::ClientId(ClientIdRefusal::NotTheClientName)
        );
        assert_eq!(
            refuse("lamp", "4343/lamp", true),
            Refusal::ClientId(ClientIdRefusal::ScopedToSomeoneElse)
        );
        assert_eq!(
            refuse("lamp", "$lamp", true),
            Refusal::ClientId(ClientIdRefusal::Reserved)
        );
        assert_eq!(refuse("lamp", "", true), Refusal::NoClientId);
        let kind = |id, allow_any| {
            admit(
                &verifier(),
                &mut TokenCache::new(0),
                allow_any,
                attempt("lamp", &token, id),
                NOW,
            )
            .map(|(_, kind)| kind)
        };
        assert_eq!(kind("lamp", false), Ok(ClientIdKind::Bare));
        assert_eq!(kind("4242/lamp", false), Ok(ClientIdKind::Scoped));
        assert_eq!(kind("other", true), Ok(ClientIdKind::Free));
    }

    #[test]
    fn missing_credentials_are_refused() {
        let token = token("lamp", 60);
        let no_password = ConnectAttempt {
            password: None,
            ..attempt("lamp", &token, "lamp")
        };
        assert_eq!(
            admit_client(false, no_password, NOW),
            Err(Refusal::NoPassword)
        );
        let no_username = ConnectAttempt {
            username: None,
            ..attempt("lamp", &token, "lamp")
        };
        assert_eq!(
            admit_client(false, no_username, NOW),
            Err(Refusal::NoUsername)
        );
        let garbage = admit_client(false, attempt("lamp", "x.y.z", "lamp"), NOW);
        assert!(matches!(garbage, Err(Refusal::InvalidToken(_))));
    }

    #[test]
    fn a_token_is_dead_from_its_exp_on() {
        let token = token("lamp", 60);
        let expired = admit_client(false, attempt("lamp", &token, "lamp"), NOW + 61);
        assert_eq!(expired, Err(Refusal::Expired { exp: NOW + 60 }));
        let client = admit_client(false, attempt("lamp", &token, "lamp"), NOW).expect("admitted");
        for access in [Access::Publish, Access::Subscribe, Access::Receive] {
            assert!(may_access(Some(&client), access, "/4242/x", NOW + 59));
            assert!(!may_access(Some(&client), access, "/4242/x", NOW + 60));
        }
    }

    #[test]
    fn unknown_clients_get_nothing_but_unsubscribe() {
        assert!(!may_access(None, Access::Receive, "/4242/x", NOW));
        assert!(may_access(None, Access::Unsubscribe, "#", NOW));
    }

    /// A CONNECT on the certificate listener: no password, the certificate `der`.
    fn by_certificate<'a>(user: Option<&'a str>, id: &'a str, der: &'a [u8]) -> ConnectAttempt<'a> {
        ConnectAttempt {
            username: user,
            password: None,
            client_id: Some(id),
            persistent: false,
            certificate: Some(der),
        }
    }

    #[test]
    fn a_certificate_admits_with_its_tokens_grants_until_the_earlier_end() {
        let token = token("lamp", 600);
        let der = crate::test_fixtures::client_certificate(&["4242/lamp"], Some(&token), NOW + 300);
        for user in [None, Some("lamp")] {
            let client = admit_client(false, by_certificate(user, "4242/lamp", &der), NOW)
                .expect("admitted");
            assert_eq!(
                (client.session_id.as_str(), client.name.as_str()),
                ("4242", "lamp")
            );
            assert_eq!(client.expires_at, NOW + 300, "the certificate ends first");
            assert!(may_access(Some(&client), Access::Publish, "/4242/x", NOW));
            assert!(!may_access(Some(&client), Access::Publish, "/4343/x", NOW));
            assert!(!may_access(
                Some(&client),
                Access::Publish,
                "/4242/x",
                NOW + 300
            ));
        }
        let long_lived =
            crate::test_fixtures::client_certificate(&["4242/lamp"], Some(&token), NOW + 9_000);
        let client =
            admit_client(false, by_certificate(None, "lamp", &long_lived), NOW).expect("admitted");
        assert_eq!(client.expires_at, NOW + 600, "the token ends first");
    }

    #[test]
    fn a_certificate_is_refused_without_its_tokens_identity() {
        let token = token("lamp", 600);
        let certificate = |names: &[&str], token: Option<&str>| {
            crate::test_fixtures::client_certificate(names, token, NOW + 600)
        };
        let refuse = |user, id, der: &[u8]| {
            admit_client(true, by_certificate(user, id, der), NOW).expect_err("refused")
        };
        // Another session's identity around this token: a forged identity.
        let forged = certificate(&["4343/lamp"], Some(&token));
        assert_eq!(
            refuse(None, "4343/lamp", &forged),
            Refusal::CertificateIdentityMismatch
        );
        let other_name = certificate(&["4242/heater"], Some(&token));
        assert_eq!(
            refuse(None, "4242/lamp", &other_name),
            Refusal::CertificateIdentityMismatch
        );
        let no_token = certificate(&["4242/lamp"], None);
        assert_eq!(
            refuse(None, "4242/lamp", &no_token),
            Refusal::Certificate(CertificateRefusal::NoToken)
        );
        let not_a_token = certificate(&["4242/lamp"], Some("x.y.z"));
        assert!(matches!(
            refuse(None, "4242/lamp", &not_a_token),
            Refusal::InvalidToken(_)
        ));
        let genuine = certificate(&["4242/lamp"], Some(&token));
        assert_eq!(
            refuse(Some("heater"), "4242/lamp", &genuine),
            Refusal::UsernameIsNotSubject
        );
        assert_eq!(
            refuse(None, "4343/lamp", &genuine),
            Refusal::ClientId(ClientIdRefusal::ScopedToSomeoneElse)
        );
        let expired = crate::test_fixtures::client_certificate(&["4242/lamp"], Some(&token), NOW);
        assert_eq!(
            refuse(None, "4242/lamp", &expired),
            Refusal::Expired { exp: NOW }
        );
    }

    #[test]
    fn refusal_messages_never_contain_the_token() {
        let token = token("lamp", 60);
        let truncated = &token[..token.len() - 10];
        for candidate in [truncated, token.as_str()] {
            if let Err(refusal) = admit_client(false, attempt("x", candidate, "x"), NOW) {
                let signature = candidate.rsplit('.').next().unwrap_or_default();
                assert!(!refusal.to_string().contains(signature), "{refusal}");
            }
        }
    }
}
