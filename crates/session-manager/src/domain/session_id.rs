//! `SessionId`: the public name of a session, 1–32 ASCII digits without a leading zero
//! when generated.
//!
//! Ids order numerically (shorter first, then digit by digit), which is the order listings
//! and their cursors use.

use std::cmp::Ordering;
use std::fmt;

use super::{random_digits, DomainError};

/// Longest id accepted; long enough for any id space an operator could want.
pub const MAX_SESSION_ID_LENGTH: usize = 32;

#[derive(Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct SessionId(String);

checked_string_type!(SessionId);

impl SessionId {
    /// A fresh random id of `length` digits (first digit non-zero), from a CSPRNG.
    pub fn generate(length: usize) -> Result<Self, DomainError> {
        if !(1..=MAX_SESSION_ID_LENGTH).contains(&length) {
            return Err(DomainError::SessionId(
                "length must be between 1 and 32 digits",
            ));
        }
        Ok(Self(random_digits(length, true)))
    }

    fn check(input: &str) -> Result<(), DomainError> {
        if input.is_empty() {
            return Err(DomainError::SessionId("it is empty"));
        }
        if input.len() > MAX_SESSION_ID_LENGTH {
            return Err(DomainError::SessionId("it is longer than 32 digits"));
        }
        if !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::SessionId("it must contain only digits 0-9"));
        }
        Ok(())
    }
}

impl Ord for SessionId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SessionId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_digits_up_to_32() {
        for good in ["1", "0", "123456", "007", &"9".repeat(32)] {
            assert_eq!(SessionId::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn refuses_empty_long_and_non_digits() {
        for bad in [
            "",
            &"1".repeat(33),
            "12a",
            " 12",
            "12 ",
            "-1",
            "1.0",
            "١٢٣",
            "+1",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn error_says_what_is_wrong() {
        let message = SessionId::parse("12a").unwrap_err().to_string();
        assert!(message.contains("digits"), "{message}");
    }

    #[test]
    fn generate_gives_digits_of_the_length_without_leading_zero() {
        for length in [1, 6, 32] {
            for _ in 0..200 {
                let id = SessionId::generate(length).unwrap();
                assert_eq!(id.as_str().len(), length);
                assert!(id.as_str().bytes().all(|b| b.is_ascii_digit()));
                assert_ne!(id.as_str().as_bytes()[0], b'0');
            }
        }
    }

    #[test]
    fn generate_refuses_impossible_lengths() {
        assert!(SessionId::generate(0).is_err());
        assert!(SessionId::generate(33).is_err());
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<_> = (0..1000)
            .map(|_| SessionId::generate(12).unwrap())
            .collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn orders_numerically() {
        let mut ids: Vec<_> = ["100", "99", "12", "2"]
            .iter()
            .map(|s| SessionId::parse(s).unwrap())
            .collect();
        ids.sort();
        let sorted: Vec<_> = ids.iter().map(SessionId::as_str).collect();
        assert_eq!(sorted, ["2", "12", "99", "100"]);
    }

    #[test]
    fn serde_is_a_plain_string_and_deserialize_parses() {
        let id = SessionId::parse("4711").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"4711\"");
        assert_eq!(serde_json::from_str::<SessionId>("\"4711\"").unwrap(), id);
        assert!(serde_json::from_str::<SessionId>("\"47x\"").is_err());
        assert!(serde_json::from_str::<SessionId>("4711").is_err());
    }
}
