//! `ServiceTokenName`: what an operator calls a service token (a trusted backend). It
//! becomes the token's `sub`, MQTT username and client id as `$svc-<name>`
//! (`session_token::service_subject`), so it keeps to a plain alphabet: 1 to 64 ASCII
//! letters, digits, `-`, `_` and `.`, starting with a letter or digit. Nothing in it can
//! break a client id or a log line, and `$svc-<name>` can never look like the service's
//! own control link (`$ism-link-...`).

use std::fmt;

use super::DomainError;

pub const MAX_SERVICE_TOKEN_NAME_CHARS: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ServiceTokenName(String);

checked_string_type!(ServiceTokenName);

impl ServiceTokenName {
    fn check(input: &str) -> Result<(), DomainError> {
        if input.is_empty() {
            return Err(DomainError::ServiceTokenName("it is empty"));
        }
        if input.len() > MAX_SERVICE_TOKEN_NAME_CHARS {
            return Err(DomainError::ServiceTokenName(
                "it is longer than 64 characters",
            ));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(DomainError::ServiceTokenName(
                "it may hold only ASCII letters, digits, '-', '_' and '.'",
            ));
        }
        if !input.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(DomainError::ServiceTokenName(
                "it must start with a letter or a digit",
            ));
        }
        Ok(())
    }
}

impl ServiceTokenName {
    /// The name a token is listed under when the journal record that named it was lost
    /// to damage (the token itself stays refused).
    pub(crate) fn lost_to_journal_damage() -> Self {
        Self("lost-to-journal-damage".to_owned())
    }
}

impl fmt::Debug for ServiceTokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServiceTokenName").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_parse_and_everything_else_is_refused_with_a_reason() {
        for name in ["backend-1", "a", "Billing.Worker_2", &"x".repeat(64)] {
            assert_eq!(
                ServiceTokenName::parse(name).map(|n| n.to_string()),
                Ok(name.to_owned())
            );
        }
        for name in [
            "",
            "-lead",
            ".hidden",
            "has space",
            "a/b",
            "a+b",
            "#",
            "$ism-link-0",
            "ümlaut",
            &"x".repeat(65),
        ] {
            let error = ServiceTokenName::parse(name).expect_err(name);
            assert!(
                error.to_string().starts_with("invalid service token name"),
                "{error}"
            );
        }
        let lost = ServiceTokenName::lost_to_journal_damage();
        assert_eq!(ServiceTokenName::parse(lost.as_str()), Ok(lost));
    }
}
