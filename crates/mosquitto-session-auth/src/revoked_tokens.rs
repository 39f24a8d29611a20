//! Revoked tokens, by `jti`: the service revokes a token (a service token, above all) by
//! sending a [`RevokedToken`] on the control topic. The plugin disconnects every client
//! that connected with it, ends those clients' grants, and refuses the token at every
//! CONNECT (from the token cache too) until `until`, the token's own `exp`, after which it
//! could not be admitted anyway.
//!
//! Kept in the state file like closed sessions and kicks, so a broker restart keeps
//! refusing them. Revocations are rare: while there are none, the CONNECT check is one
//! emptiness test.

use session_token::RevokedToken;

use crate::expiring::ExpiringSet;

/// Revoked token ids and until when each is refused.
#[derive(Debug, Default)]
pub(crate) struct RevokedTokens {
    until: ExpiringSet,
}

impl RevokedTokens {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records a revocation; a later end extends it, an earlier one never shortens it.
    /// True when anything changed.
    pub(crate) fn insert(&mut self, revoked: &RevokedToken) -> bool {
        let previous = self.until.get(&revoked.jti).unwrap_or(0);
        if revoked.until <= previous {
            return false;
        }
        self.until.set(&revoked.jti, revoked.until);
        true
    }

    /// Is the token with id `jti` refused at `now`?
    pub(crate) fn refuses(&self, jti: &str, now: u64) -> bool {
        self.until.len() != 0 && self.until.get(jti).is_some_and(|until| now < until)
    }

    /// Forgets the revocations whose end has passed; true when any was forgotten.
    pub(crate) fn forget_expired(&mut self, now: u64) -> bool {
        let mut forgot = false;
        while self.until.pop_due(now).is_some() {
            forgot = true;
        }
        forgot
    }

    /// Every running revocation, for the state file.
    pub(crate) fn revoked_tokens(&self) -> impl Iterator<Item = RevokedToken> + '_ {
        self.until.iter().map(|(jti, until)| RevokedToken {
            jti: jti.to_owned(),
            until,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(jti: &str, until: u64) -> RevokedToken {
        RevokedToken {
            jti: jti.into(),
            until,
        }
    }

    #[test]
    fn a_revoked_token_is_refused_until_its_end_and_others_are_not() {
        let mut tokens = RevokedTokens::new();
        assert!(!tokens.refuses("a", 0), "nothing revoked");
        assert!(tokens.insert(&revoked("a", 100)));
        assert!(tokens.refuses("a", 99));
        assert!(!tokens.refuses("a", 100));
        assert!(!tokens.refuses("b", 50));
        assert!(!tokens.insert(&revoked("a", 50)), "never shortened");
        assert!(tokens.insert(&revoked("a", 200)), "extended");
        assert!(!tokens.forget_expired(199));
        assert_eq!(
            tokens.revoked_tokens().collect::<Vec<_>>(),
            vec![revoked("a", 200)]
        );
        assert!(tokens.forget_expired(200));
        assert_eq!(tokens.len(), 0);
    }
}
