//! `SessionType`: a free label an operator attaches to a session (the original service's
//! `type` query parameter), 1–64 characters of `[A-Za-z0-9_.-]`, `"default"` when not given.

use std::fmt;

use super::DomainError;

pub const MAX_SESSION_TYPE_CHARS: usize = 64;
const DEFAULT_SESSION_TYPE: &str = "default";

#[derive(Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct SessionType(String);

checked_string_type!(SessionType);

impl SessionType {
    fn check(input: &str) -> Result<(), DomainError> {
        if input.is_empty() {
            return Err(DomainError::SessionType("it is empty"));
        }
        if input.len() > MAX_SESSION_TYPE_CHARS {
            return Err(DomainError::SessionType("it is longer than 64 characters"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(DomainError::SessionType(
                "only letters A-Z a-z, digits, '_', '.' and '-' are allowed",
            ));
        }
        Ok(())
    }
}

impl Default for SessionType {
    fn default() -> Self {
        Self(DEFAULT_SESSION_TYPE.to_owned())
    }
}

impl fmt::Debug for SessionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionType({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_default() {
        assert_eq!(SessionType::default().as_str(), "default");
    }

    #[test]
    fn accepts_the_allowed_alphabet() {
        for good in ["a", "chat", "Game_v2.1-beta", &"x".repeat(64)] {
            assert_eq!(SessionType::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn refuses_empty_long_and_other_characters() {
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a/b",
            "a+b",
            "ä",
            "a\n",
            "a#",
            "a:b",
        ] {
            assert!(SessionType::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn serde_is_a_plain_string_and_deserialize_parses() {
        let kind = SessionType::parse("chat").unwrap();
        assert_eq!(serde_json::to_string(&kind).unwrap(), "\"chat\"");
        assert_eq!(
            serde_json::from_str::<SessionType>("\"chat\"").unwrap(),
            kind
        );
        assert!(serde_json::from_str::<SessionType>("\"a b\"").is_err());
    }
}
