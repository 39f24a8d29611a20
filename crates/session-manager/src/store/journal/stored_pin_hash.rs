//! `StoredPinHash`: a session's argon2id PIN hash as memory keeps it, the salt and hash as
//! bytes inside the session rather than a ~100-byte PHC string on the heap of its own.
//!
//! The usual shape (`$argon2id$v=V$m=M,t=T,p=P$<16-byte salt>$<32-byte hash>`, both in
//! unpadded base64) is kept as numbers and bytes and turned back into the identical string
//! when a join asks for it. Any other string is kept as it is; a hash is only packed in its
//! canonical spelling (numbers without leading zeros, base64 without stray trailing bits),
//! the one that unpacking gives back.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

#[derive(Clone)]
pub(crate) enum StoredPinHash {
    Argon2id(PackedArgon2id),
    Verbatim(Box<str>),
}

#[derive(Clone)]
pub(crate) struct PackedArgon2id {
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl StoredPinHash {
    pub(crate) fn new(phc: &str) -> Self {
        match PackedArgon2id::parse(phc) {
            Some(packed) => Self::Argon2id(packed),
            None => Self::Verbatim(phc.into()),
        }
    }

    /// The PHC string, as it was given.
    pub(crate) fn phc(&self) -> String {
        match self {
            Self::Argon2id(packed) => packed.phc(),
            Self::Verbatim(phc) => phc.to_string(),
        }
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::from(self.phc())
    }
}

/// `digits` as a number, if written as `to_string` writes it.
fn canonical_number(digits: &str) -> Option<u32> {
    let bytes = digits.as_bytes();
    if bytes.is_empty() || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    bytes.iter().try_fold(0u32, |value, &digit| {
        let digit = char::from(digit).to_digit(10)?;
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// Exactly `N` bytes in unpadded standard base64, decoded without an intermediate vector.
fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    // One spare byte: the decoder wants room for a whole last group of four characters.
    let mut buffer = [0u8; 48];
    let decoded = STANDARD_NO_PAD
        .decode_slice(text, buffer.get_mut(..N + 2)?)
        .ok()?;
    if decoded != N {
        return None;
    }
    bytes.copy_from_slice(&buffer[..N]);
    Some(bytes)
}

impl PackedArgon2id {
    fn parse(phc: &str) -> Option<Self> {
        // `$argon2id$v=V$m=M,t=T,p=P$<salt>$<hash>`, nothing more: replay parses one of
        // these per session, so it is taken apart with plain prefix and separator matches.
        let (version, rest) = phc.strip_prefix("$argon2id$v=")?.split_once('$')?;
        let (params, rest) = rest.split_once('$')?;
        let (salt, hash) = rest.split_once('$')?;
        let (memory_kib, rest) = params.strip_prefix("m=")?.split_once(',')?;
        let (iterations, parallelism) = rest.strip_prefix("t=")?.split_once(',')?;
        // A `$` in the hash or a `,` after `p` fails the canonical checks below.
        // The decoder refuses non-zero trailing bits, so the encoding is the canonical one.
        Some(Self {
            version: canonical_number(version)?,
            memory_kib: canonical_number(memory_kib)?,
            iterations: canonical_number(iterations)?,
            parallelism: canonical_number(parallelism.strip_prefix("p=")?)?,
            salt: decode_exact(salt)?,
            hash: decode_exact(hash)?,
        })
    }

    fn phc(&self) -> String {
        format!(
            "$argon2id$v={}$m={},t={},p={}${}${}",
            self.version,
            self.memory_kib,
            self.iterations,
            self.parallelism,
            STANDARD_NO_PAD.encode(self.salt),
            STANDARD_NO_PAD.encode(self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_hash_is_packed_and_given_back_identically() {
        let pin = crate::domain::Pin::parse("123456").unwrap();
        let phc = crate::join::pin_check::hash_pin_blocking(&pin).unwrap();
        let stored = StoredPinHash::new(&phc);
        assert!(matches!(stored, StoredPinHash::Argon2id(_)));
        assert_eq!(stored.phc(), phc);
    }

    #[test]
    fn a_canonical_hash_round_trips() {
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let stored = StoredPinHash::new(phc);
        assert!(matches!(stored, StoredPinHash::Argon2id(_)));
        assert_eq!(stored.phc(), phc);
    }

    #[test]
    fn anything_else_is_kept_verbatim() {
        for phc in [
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "$argon2id$v=19$m=019456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=+19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=19456,t=2,p=1,x=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdB$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "not a hash",
        ] {
            let stored = StoredPinHash::new(phc);
            assert!(matches!(stored, StoredPinHash::Verbatim(_)), "{phc}");
            assert_eq!(stored.phc(), phc);
        }
    }
}
