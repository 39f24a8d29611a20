//! What a client certificate carries, the contract between the service that issues one with
//! a join and the broker plugin that admits a device by it.
//!
//! A client certificate is a second way to present a token, not a second kind of grant: its
//! private extension [`TOKEN_EXTENSION_OID`] holds the very JWT the join issued, and the
//! plugin verifies that token exactly as it verifies a password (signature, expiry, grants,
//! closed sessions, kicks, client-id rules). The certificate adds proof of possession of a
//! private key, and its subject common name must be [`certificate_identity`] of the token's
//! session and client name, so a certificate cannot lend its key to another token's identity.
//! The client CA's signature is checked by the broker's TLS listener.

use crate::client_id::scoped_client_id;

/// The OID of the non-critical extension holding the token, as the arcs of
/// `2.25.7144009399852894525`: an X.667 UUID-based OID (no registration needed), the UUID
/// being this 64-bit number chosen at random for the project.
pub const TOKEN_EXTENSION_OID: [u64; 3] = [2, 25, 7_144_009_399_852_894_525];

/// [`TOKEN_EXTENSION_OID`] in dotted form, as certificate tools print it.
pub const TOKEN_EXTENSION_OID_TEXT: &str = "2.25.7144009399852894525";

/// The subject common name of a certificate issued for a token of session `session_id`
/// and client `client_name`: the scoped client id `"{sid}/{sub}"` (just the name for a
/// principal without a session).
pub fn certificate_identity(session_id: &str, client_name: &str) -> String {
    if session_id.is_empty() {
        client_name.to_owned()
    } else {
        scoped_client_id(session_id, client_name)
    }
}

/// The extension's value: the token as a DER `UTF8String` (tag 12, definite length).
pub fn token_extension_value(token: &str) -> Vec<u8> {
    const UTF8_STRING: u8 = 0x0c;
    let bytes = token.as_bytes();
    let length = bytes.len();
    let mut value = Vec::with_capacity(length + 6);
    value.push(UTF8_STRING);
    if length < 0x80 {
        // Short form: the length itself, which fits in seven bits.
        value.push(length as u8);
    } else {
        let octets = length.to_be_bytes();
        let skip = octets.iter().take_while(|&&octet| octet == 0).count();
        let significant = &octets[skip..];
        // Long form: 0x80 | how many length octets follow (at most 8), then those octets.
        value.push(0x80 | significant.len() as u8);
        value.extend_from_slice(significant);
    }
    value.extend_from_slice(bytes);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_the_scoped_client_id() {
        assert_eq!(certificate_identity("4242", "lamp"), "4242/lamp");
        assert_eq!(certificate_identity("", "backend-1"), "backend-1");
    }

    #[test]
    fn the_dotted_oid_names_the_arcs() {
        let dotted: Vec<String> = TOKEN_EXTENSION_OID.iter().map(u64::to_string).collect();
        assert_eq!(dotted.join("."), TOKEN_EXTENSION_OID_TEXT);
    }

    #[test]
    fn the_token_is_a_der_utf8_string_in_short_and_long_form() {
        assert_eq!(token_extension_value("ab"), [0x0c, 2, b'a', b'b']);
        let long = "x".repeat(300);
        let value = token_extension_value(&long);
        assert_eq!(&value[..4], [0x0c, 0x82, 0x01, 0x2c]);
        assert_eq!(&value[4..], long.as_bytes());
        let edge = "y".repeat(0x80);
        assert_eq!(&token_extension_value(&edge)[..3], [0x0c, 0x81, 0x80]);
    }
}
