//! [`SecretText`]: configuration text that must never reach a log line or an error
//! message (the signing key's PEM). Its `Debug` prints a placeholder, it has no
//! `Display`, and the text is read only through [`SecretText::expose`], so every place
//! that handles the secret itself is easy to find.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// The secret itself, for the one place that needs it (parsing the key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl FromStr for SecretText {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretText(text.to_owned()))
    }
}

impl From<String> for SecretText {
    fn from(text: String) -> Self {
        SecretText(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_text() {
        let secret = SecretText::from("-----BEGIN PRIVATE KEY-----abc".to_owned());
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert_eq!(secret.expose(), "-----BEGIN PRIVATE KEY-----abc");
    }
}
