//! `ClientName`: what a device calls itself. It becomes the MQTT username, the default
//! MQTT client id and the token's `sub`, and may appear as a topic level, so it must not
//! contain anything that breaks one of those: `+`, `#`, `/`, NUL or control characters.

use std::fmt;

use super::DomainError;

pub const MAX_CLIENT_NAME_CHARS: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ClientName(String);

checked_string_type!(ClientName);

impl ClientName {
    fn check(input: &str) -> Result<(), DomainError> {
        if input.is_empty() {
            return Err(DomainError::ClientName("it is empty"));
        }
        if input.chars().count() > MAX_CLIENT_NAME_CHARS {
            return Err(DomainError::ClientName("it is longer than 64 characters"));
        }
        if input.chars().any(|c| matches!(c, '+' | '#' | '/')) {
            return Err(DomainError::ClientName(
                "it must not contain '+', '#' or '/' (MQTT wildcards and level separator)",
            ));
        }
        if input.chars().any(char::is_control) {
            return Err(DomainError::ClientName(
                "it must not contain NUL or other control characters",
            ));
        }
        if input.chars().all(char::is_whitespace) {
            return Err(DomainError::ClientName("it consists only of whitespace"));
        }
        Ok(())
    }
}

impl fmt::Debug for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "a",
            "sensor-1",
            "Kitchen Lamp",
            "gerät_ä",
            "温度计",
            "x.y:z@w",
            &"n".repeat(64),
            &"ü".repeat(64),
        ] {
            assert_eq!(ClientName::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(ClientName::parse(&"ü".repeat(64)).is_ok());
        assert!(ClientName::parse(&"ü".repeat(65)).is_err());
        assert!(ClientName::parse(&"n".repeat(65)).is_err());
    }

    #[test]
    fn refuses_mqtt_special_and_control_characters() {
        for bad in [
            "", "a+b", "a#", "/a", "a/b", "a\0b", "a\nb", "\t", "a\u{7f}", "a\u{85}",
        ] {
            assert!(ClientName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn refuses_only_whitespace() {
        for bad in [" ", "   ", "\u{3000}", " \u{a0} "] {
            assert!(ClientName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ClientName::parse(" a ").is_ok());
    }

    #[test]
    fn error_says_what_is_wrong() {
        let message = ClientName::parse("a/b").unwrap_err().to_string();
        assert!(message.contains("'/'"), "{message}");
        let message = ClientName::parse("").unwrap_err().to_string();
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn serde_is_a_plain_string_and_deserialize_parses() {
        let name = ClientName::parse("lamp").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"lamp\"");
        assert_eq!(
            serde_json::from_str::<ClientName>("\"lamp\"").unwrap(),
            name
        );
        assert!(serde_json::from_str::<ClientName>("\"a#\"").is_err());
    }
}
