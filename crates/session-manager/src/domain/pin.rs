//! `Pin`: the shared secret of a session, 3–32 ASCII digits.
//!
//! `Debug` never shows the digits, so a PIN that ends up in a log line or a panic message
//! does not leak. `Display` and `Serialize` do show them: they exist for the one response
//! that hands a new PIN to the operator who created the session.

use std::fmt;

use super::{random_digits, DomainError};

pub const MIN_PIN_LENGTH: usize = 3;
pub const MAX_PIN_LENGTH: usize = 32;

#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Pin(String);

checked_string_type!(Pin);

impl Pin {
    /// A fresh random PIN of `length` digits from a CSPRNG (leading zeros allowed).
    pub fn generate(length: usize) -> Result<Self, DomainError> {
        if !(MIN_PIN_LENGTH..=MAX_PIN_LENGTH).contains(&length) {
            return Err(DomainError::Pin("length must be between 3 and 32 digits"));
        }
        Ok(Self(random_digits(length, false)))
    }

    fn check(input: &str) -> Result<(), DomainError> {
        if input.len() < MIN_PIN_LENGTH {
            return Err(DomainError::Pin("it is shorter than 3 digits"));
        }
        if input.len() > MAX_PIN_LENGTH {
            return Err(DomainError::Pin("it is longer than 32 digits"));
        }
        if !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::Pin("it must contain only digits 0-9"));
        }
        Ok(())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_3_to_32_digits() {
        for good in ["000", "123", "123456", &"7".repeat(32)] {
            assert_eq!(Pin::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn refuses_short_long_and_non_digits() {
        for bad in ["", "12", &"1".repeat(33), "12a4", "123 ", "1234\n", "١٢٣"] {
            assert!(Pin::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn debug_hides_the_digits() {
        let pin = Pin::parse("987654").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(***)");
        assert_eq!(format!("{:?}", Some(&pin)), "Some(Pin(***))");
        assert_eq!(pin.to_string(), "987654");
    }

    #[test]
    fn generate_gives_digits_of_the_length() {
        for length in [3, 6, 32] {
            let pin = Pin::generate(length).unwrap();
            assert_eq!(pin.as_str().len(), length);
            assert!(pin.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        assert!(Pin::generate(2).is_err());
        assert!(Pin::generate(33).is_err());
    }

    #[test]
    fn generated_pins_use_every_digit_including_leading_zero() {
        let mut seen_leading = [false; 10];
        for _ in 0..2000 {
            let pin = Pin::generate(3).unwrap();
            seen_leading[usize::from(pin.as_str().as_bytes()[0] - b'0')] = true;
        }
        assert!(seen_leading.iter().all(|seen| *seen));
    }

    #[test]
    fn serde_is_a_plain_string_and_deserialize_parses() {
        let pin = Pin::parse("0042").unwrap();
        assert_eq!(serde_json::to_string(&pin).unwrap(), "\"0042\"");
        assert_eq!(serde_json::from_str::<Pin>("\"0042\"").unwrap(), pin);
        assert!(serde_json::from_str::<Pin>("\"42\"").is_err());
        assert!(serde_json::from_str::<Pin>("42").is_err());
    }
}
