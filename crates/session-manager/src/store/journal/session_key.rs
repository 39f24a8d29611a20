//! `SessionKey`: a session id as the store's maps hold it, two machine words instead of a
//! heap string, so a million sessions cost a million small keys, not a million
//! allocations.
//!
//! An id is 1–32 ASCII digits (`SessionId`), so its value fits in 107 bits; the length is
//! kept above it, which makes the key lossless (leading zeros included) and orders keys
//! exactly as `SessionId` orders ids: shorter first, then by value, which for ids of one
//! length is their digit-by-digit order.

use std::fmt::Write;

use crate::domain::SessionId;

/// Bits of the value; the length sits above them.
const VALUE_BITS: u32 = 108;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SessionKey {
    /// Length and the value's upper bits...
    high: u64,
    /// ...and its lower 64 bits. Two words, not a `u128`, so a map entry needs no
    /// 16-byte alignment.
    low: u64,
}

impl SessionKey {
    pub(crate) fn of(id: &SessionId) -> Self {
        let digits = id.as_str().as_bytes();
        let value = digits
            .iter()
            .fold(0u128, |value, digit| value * 10 + u128::from(digit - b'0'));
        let packed = (digits.len() as u128) << VALUE_BITS | value;
        Self {
            high: (packed >> 64) as u64,
            low: packed as u64,
        }
    }

    pub(crate) fn id(self) -> SessionId {
        let packed = u128::from(self.high) << 64 | u128::from(self.low);
        let len = (packed >> VALUE_BITS) as usize;
        let value = packed & ((1u128 << VALUE_BITS) - 1);
        let mut digits = String::with_capacity(len);
        // Writing to a String cannot fail.
        let _ = write!(digits, "{value:0len$}");
        // Every key was made from a valid id, so this always parses.
        SessionId::parse(&digits).unwrap_or_else(|_| unreachable_id(&digits))
    }
}

#[cold]
fn unreachable_id(digits: &str) -> SessionId {
    tracing::error!(digits, "a session key does not turn back into an id");
    SessionId::generate(1).unwrap_or_else(|_| unreachable!("length 1 is valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[test]
    fn round_trips_every_shape_of_id() {
        for s in [
            "0",
            "7",
            "007",
            "123456789",
            &"9".repeat(32),
            &"0".repeat(32),
        ] {
            assert_eq!(SessionKey::of(&id(s)).id(), id(s), "{s}");
        }
    }

    #[test]
    fn orders_as_ids_order() {
        let mut ids: Vec<SessionId> = [
            "2",
            "10",
            "09",
            "99",
            "100",
            "0",
            "1",
            "000",
            &"9".repeat(32),
        ]
        .iter()
        .map(|s| id(s))
        .collect();
        let mut keys: Vec<SessionKey> = ids.iter().map(SessionKey::of).collect();
        ids.sort();
        keys.sort();
        assert_eq!(
            keys.into_iter().map(SessionKey::id).collect::<Vec<_>>(),
            ids
        );
    }
}
