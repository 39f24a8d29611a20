//! `ClientName`: what a device calls itself. It becomes the MQTT username, part of the
//! MQTT client id and the token's `sub`, and may appear as a topic level, so it must not
//! contain anything that breaks one of those: `+`, `#`, `/`, NUL or control characters.
//!
//! It must also survive the broker and stay readable to people: Unicode non-characters
//! (U+FFFE, U+FDD0, U+10FFFF, ...) are refused by MQTT brokers, and format characters
//! (bidi overrides and isolates, zero-width characters, U+FEFF, ...) and line/paragraph
//! separators make one name look like another. Names starting with `$` are reserved for
//! the system's own principals (see `session_token::client_id`).

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
        if input.starts_with(session_token::client_id::RESERVED_CLIENT_ID_PREFIX) {
            return Err(DomainError::ClientName(
                "names starting with '$' are reserved for the system",
            ));
        }
        if input.chars().any(is_noncharacter) {
            return Err(DomainError::ClientName(
                "it must not contain Unicode non-characters (such as U+FFFE or U+FDD0)",
            ));
        }
        if input.chars().any(is_invisible_format) {
            return Err(DomainError::ClientName(
                "it must not contain invisible formatting characters (bidi controls, zero-width characters, U+FEFF, line or paragraph separators)",
            ));
        }
        Ok(())
    }
}

/// U+FDD0..=U+FDEF and the last two code points of every plane.
fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// Unicode general category Cf (format), plus the line and paragraph separators.
fn is_invisible_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
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
    fn refuses_what_the_broker_refuses_or_what_hides_the_name() {
        for bad in [
            "a\u{FFFE}",
            "a\u{FFFF}",
            "\u{FDD0}x",
            "x\u{FDEF}",
            "a\u{10FFFF}",
            "a\u{1FFFE}",
            "a\u{202A}b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{2069}b",
            "a\u{200B}b",
            "a\u{200C}b",
            "a\u{200D}b",
            "a\u{2060}b",
            "\u{FEFF}a",
            "a\u{00AD}b",
            "a\u{2028}b",
            "a\u{E0041}",
        ] {
            let error = ClientName::parse(bad).expect_err(&format!("{bad:?} was accepted"));
            assert!(error.to_string().contains("it must not"), "{error}");
        }
        assert!(ClientName::parse("a\u{FFFD}b").is_ok());
        assert!(ClientName::parse("\u{1F600}").is_ok());
    }

    #[test]
    fn refuses_names_reserved_for_the_system() {
        let error = ClientName::parse("$control").unwrap_err().to_string();
        assert!(error.contains("reserved"), "{error}");
        assert!(ClientName::parse("a$").is_ok());
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
