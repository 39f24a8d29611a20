//! `ServiceTokens`: the service tokens the journal store keeps, by `jti`: what each
//! grants, until when, and whether it was revoked. Few (an operator mints them by hand or
//! by automation, one per backend), so one map under one lock, apart from the sessions,
//! in issue order (the journal's order, which replay and compaction keep).
//!
//! An expired token is left out of every answer and dropped by the next compaction: no
//! broker can admit it any more, revoked or not.

use std::sync::{Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;

use super::record::{Record, ServiceTokenRecord, ServiceTokenRevokedRecord};
use crate::domain::ServiceTokenName;
use crate::store::{ServiceTokenInfo, MAX_SERVICE_TOKEN_TTL_SECS};

#[derive(Debug, Default)]
pub(crate) struct ServiceTokens {
    tokens: Mutex<IndexMap<String, ServiceTokenInfo>>,
}

impl ServiceTokens {
    fn lock(&self) -> MutexGuard<'_, IndexMap<String, ServiceTokenInfo>> {
        // Every change is one insert or one field write: a panic cannot tear the map.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replays an issued token; a token already known (a record the snapshot holds too)
    /// keeps its revocation.
    pub(crate) fn issued(&self, record: ServiceTokenRecord) {
        self.lock()
            .entry(record.jti.clone())
            .or_insert_with(|| ServiceTokenInfo {
                jti: record.jti,
                name: record.name,
                subscribe: record.subscribe,
                publish: record.publish,
                issued_at: record.issued_at,
                expires_at: record.expires_at,
                revoked_at: None,
            });
    }

    /// Inserts a new token; false when its `jti` is taken (never, for UUIDs).
    pub(crate) fn insert(&self, token: ServiceTokenInfo) -> bool {
        let mut tokens = self.lock();
        if tokens.contains_key(&token.jti) {
            return false;
        }
        tokens.insert(token.jti.clone(), token);
        true
    }

    /// Forgets a token whose issue did not reach the disk.
    pub(crate) fn remove(&self, jti: &str) {
        self.lock().shift_remove(jti);
    }

    /// Marks `jti` revoked at `revoked_at` unless it already is; the token as it is now,
    /// and whether this call revoked it. `None` when unknown.
    pub(crate) fn revoke(&self, jti: &str, revoked_at: u64) -> Option<(ServiceTokenInfo, bool)> {
        let mut tokens = self.lock();
        let token = tokens.get_mut(jti)?;
        let newly = token.revoked_at.is_none();
        if newly {
            token.revoked_at = Some(revoked_at);
        }
        Some((token.clone(), newly))
    }

    /// Takes back a revocation that did not reach the disk.
    pub(crate) fn unrevoke(&self, jti: &str) {
        if let Some(token) = self.lock().get_mut(jti) {
            token.revoked_at = None;
        }
    }

    /// Recovery lost a record of token `jti` (damaged body): whatever it said, the token
    /// is refused from `now` for as long as any service token can live
    /// ([`MAX_SERVICE_TOKEN_TTL_SECS`]). Its grants are
    /// unknown, so it is listed with none.
    pub(crate) fn lost(&self, jti: &str, now: u64) {
        let mut tokens = self.lock();
        let token = tokens
            .entry(jti.to_owned())
            .or_insert_with(|| ServiceTokenInfo {
                jti: jti.to_owned(),
                name: ServiceTokenName::lost_to_journal_damage(),
                subscribe: Vec::new(),
                publish: Vec::new(),
                issued_at: now,
                expires_at: now.saturating_add(MAX_SERVICE_TOKEN_TTL_SECS),
                revoked_at: None,
            });
        token.revoked_at.get_or_insert(now);
    }

    /// The operator's repair of an undecidable journal range: any record in it may have
    /// been a revocation, so every known token is revoked.
    pub(crate) fn revoke_all(&self, now: u64) -> usize {
        let mut tokens = self.lock();
        for token in tokens.values_mut() {
            token.revoked_at.get_or_insert(now);
        }
        tokens.len()
    }

    /// The tokens not expired at `now`, in issue order.
    pub(crate) fn live(&self, now: u64) -> Vec<ServiceTokenInfo> {
        self.lock()
            .values()
            .filter(|token| token.expires_at > now)
            .cloned()
            .collect()
    }

    /// The records that re-create the tokens live at `now`, for a snapshot.
    pub(crate) fn snapshot(&self, now: u64) -> Vec<Record> {
        self.live(now)
            .into_iter()
            .flat_map(|token| {
                let revoked = token.revoked_at.map(|revoked_at| {
                    Record::ServiceTokenRevoked(ServiceTokenRevokedRecord {
                        jti: token.jti.clone(),
                        revoked_at,
                    })
                });
                std::iter::once(Record::ServiceTokenIssued(issued_record(&token))).chain(revoked)
            })
            .collect()
    }

    /// Records a snapshot would hold, at most.
    pub(crate) fn snapshot_records_estimate(&self) -> usize {
        2 * self.lock().len()
    }
}

/// The journal record of an issued token.
pub(crate) fn issued_record(token: &ServiceTokenInfo) -> ServiceTokenRecord {
    ServiceTokenRecord {
        jti: token.jti.clone(),
        name: token.name.clone(),
        subscribe: token.subscribe.clone(),
        publish: token.publish.clone(),
        issued_at: token.issued_at,
        expires_at: token.expires_at,
    }
}
