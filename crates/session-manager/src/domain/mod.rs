//! Domain vocabulary of the service: the values a session is made of.
//!
//! Every type here follows "parse, don't validate": the only way to get a value is
//! `parse` (or a generator), so a `SessionId`, `Pin`, `ClientName` or `SessionType` that
//! exists is valid, and handlers and the store never re-check. Each type serialises as a
//! plain JSON string and deserialises through `parse`, so bad data cannot sneak in through
//! a request body or the journal either.

/// What every domain string type shares, given its own `check`: `parse` and
/// `TryFrom<String>` (so serde's `try_from = "String"` parses too), `as_str`, and
/// `Display` / `Serialize` as the plain string. `Debug` stays with each type (a PIN hides
/// its digits).
macro_rules! checked_string_type {
    ($name:ident) => {
        impl $name {
            pub fn parse(input: &str) -> Result<Self, $crate::domain::DomainError> {
                Self::check(input)?;
                Ok(Self(input.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::DomainError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::check(&value)?;
                Ok(Self(value))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

mod client_name;
mod pin;
mod service_token_name;
mod session_id;
mod session_type;

pub use client_name::ClientName;
pub use pin::Pin;
pub use service_token_name::ServiceTokenName;
pub use session_id::SessionId;
pub use session_type::SessionType;

/// Why a value was refused; the message is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid session id: {0}")]
    SessionId(&'static str),
    #[error("invalid PIN: {0}")]
    Pin(&'static str),
    #[error("invalid client name: {0}")]
    ClientName(&'static str),
    #[error("invalid session type: {0}")]
    SessionType(&'static str),
    #[error("invalid service token name: {0}")]
    ServiceTokenName(&'static str),
}

/// A random string of `len` ASCII digits from the thread-local CSPRNG; the first digit is
/// non-zero when `leading_non_zero` is set (so ids keep their length when read as numbers).
fn random_digits(len: usize, leading_non_zero: bool) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|position| {
            let low = if position == 0 && leading_non_zero {
                1
            } else {
                0
            };
            char::from(b'0' + rng.random_range(low..=9u8))
        })
        .collect()
}
