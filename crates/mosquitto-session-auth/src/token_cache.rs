//! Tokens the plugin has already verified, so that a device reconnecting with the token it
//! used before (a network flap, a client restart) is admitted without a second signature
//! check and JSON parse.
//!
//! An entry is keyed by the SHA-256 digest of the whole token, so only the very same bytes
//! find it (a forged token would need a SHA-256 collision), and holds what the verified
//! token says: session, name, key id, `exp` and the parsed grants. It is used only while
//! `exp` is ahead; everything a CONNECT checks beyond the token itself (username, client
//! id, first-come holder, closed session) is checked on every CONNECT as before.
//!
//! The cache is emptied when the keys are reloaded (a withdrawn key's tokens must verify
//! again, and fail), and a closed session's entries are dropped when its close arrives
//! (its tokens are refused by the closed-session check anyway). It holds at most
//! `token_cache_size` entries; when full, the entry expiring first makes room. Expired
//! entries are swept on TICK.

use std::collections::{BTreeSet, HashMap};

use aws_lc_rs::digest::{digest, SHA256};
use session_token::Acl;

/// How many verified tokens are kept by default (about 300 bytes each with device grants).
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 50_000;

/// The SHA-256 digest of a token.
pub type TokenDigest = [u8; 32];

/// What a verified token says, as far as admitting a CONNECT goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGrant {
    pub session_id: String,
    pub name: String,
    pub kid: String,
    pub expires_at: u64,
    pub acl: Acl,
    /// The token's `jti`, reported with the device's presence.
    pub token_id: String,
    /// The token's `gen`: a kick refuses the device's tokens of an older generation.
    pub generation: u32,
}

#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenDigest, VerifiedGrant, foldhash::fast::RandomState>,
    /// (exp, digest): the same entries in the order they expire.
    by_expiry: BTreeSet<(u64, TokenDigest)>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 turns it off.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::default(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// The key a token is cached under.
    pub fn digest(token: &str) -> TokenDigest {
        let mut key = [0u8; 32];
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        key
    }

    /// The grant of a token verified before, while its `exp` is ahead of `now`.
    pub fn get(&self, key: &TokenDigest, now: u64) -> Option<&VerifiedGrant> {
        self.entries.get(key).filter(|grant| now < grant.expires_at)
    }

    /// Remembers a verified token. When the cache is full, expired entries go first, then
    /// the one expiring soonest.
    pub fn insert(&mut self, key: TokenDigest, grant: VerifiedGrant, now: u64) {
        if self.capacity == 0 || self.entries.contains_key(&key) {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.sweep(now);
        }
        if self.entries.len() >= self.capacity {
            if let Some((_, soonest)) = self.by_expiry.pop_first() {
                self.entries.remove(&soonest);
            }
        }
        self.by_expiry.insert((grant.expires_at, key));
        self.entries.insert(key, grant);
    }

    /// Drops the entries whose `exp` has passed.
    pub fn sweep(&mut self, now: u64) {
        while let Some(&(expires_at, key)) = self.by_expiry.first() {
            if expires_at > now {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&key);
        }
    }

    /// Drops every entry (the keys changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_expiry.clear();
    }

    /// Drops the entries of the sessions `is_closed` selects.
    pub fn forget_sessions(&mut self, is_closed: impl Fn(&str) -> bool) {
        let by_expiry = &mut self.by_expiry;
        self.entries.retain(|key, grant| {
            let keep = !is_closed(&grant.session_id);
            if !keep {
                by_expiry.remove(&(grant.expires_at, *key));
            }
            keep
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(session: &str, expires_at: u64) -> VerifiedGrant {
        VerifiedGrant {
            session_id: session.to_owned(),
            name: "lamp".to_owned(),
            kid: "k".to_owned(),
            expires_at,
            token_id: "t".to_owned(),
            generation: 0,
            acl: Acl::from_grants(&["/1/#".into()], &["/1/#".into()]).expect("valid grants"),
        }
    }

    #[test]
    fn a_token_is_found_by_its_exact_bytes_until_its_exp() {
        let mut cache = TokenCache::new(10);
        let key = TokenCache::digest("a.b.c");
        cache.insert(key, grant("1", 100), 0);
        assert!(cache.get(&key, 99).is_some());
        assert!(cache.get(&key, 100).is_none(), "dead from exp on");
        assert!(cache.get(&TokenCache::digest("a.b.d"), 0).is_none());
        cache.sweep(100);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_makes_room_with_the_entry_expiring_first() {
        let mut cache = TokenCache::new(2);
        let (a, b, c) = (
            TokenCache::digest("a"),
            TokenCache::digest("b"),
            TokenCache::digest("c"),
        );
        cache.insert(a, grant("1", 300), 0);
        cache.insert(b, grant("1", 200), 0);
        cache.insert(c, grant("1", 400), 0);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&b, 0).is_none(), "b expired first, so it went");
        assert!(cache.get(&a, 0).is_some() && cache.get(&c, 0).is_some());
    }

    #[test]
    fn closed_sessions_and_key_reloads_empty_it() {
        let mut cache = TokenCache::new(10);
        let (a, b) = (TokenCache::digest("a"), TokenCache::digest("b"));
        cache.insert(a, grant("1", 300), 0);
        cache.insert(b, grant("2", 300), 0);
        cache.forget_sessions(|sid| sid == "1");
        assert!(cache.get(&a, 0).is_none());
        assert!(cache.get(&b, 0).is_some());
        cache.clear();
        assert_eq!(cache.len(), 0);
        let mut off = TokenCache::new(0);
        off.insert(a, grant("1", 300), 0);
        assert_eq!(off.len(), 0);
    }
}
