//! Journals built directly through the record format, for the recovery test and the
//! recovery benchmark: `sessions` live sessions with one joined client each, all sharing
//! one argon2 hash (hashing each would take longer than the test).
//!
//! Included with `#[path = ".../support/journal.rs"] mod journal;`.

#![allow(dead_code)]

use session_manager::domain::{ClientName, Pin, SessionId, SessionType};
use session_manager::join::pin_check::hash_pin_blocking;
use session_manager::store::journal::record::{
    encode_journal, CreatedRecord, JoinedRecord, Record,
};

/// First id of the built sessions; the others follow it.
pub const FIRST_ID: u64 = 1_000_000;

/// The journal file's bytes and its number of records.
pub fn sessions_with_one_client(
    sessions: usize,
    pin: &Pin,
    now: u64,
) -> Result<(Vec<u8>, usize), Box<dyn std::error::Error>> {
    let pin_hash = hash_pin_blocking(pin)?;
    let client = ClientName::parse("device-1")?;
    let mut records = Vec::with_capacity(sessions * 2);
    for n in 0..sessions {
        let id = SessionId::parse(&(FIRST_ID + n as u64).to_string())?;
        records.push(Record::Created(CreatedRecord {
            id: id.clone(),
            session_type: SessionType::default(),
            created_at: now,
            expires_at: Some(now + 86_400),
            max_clients: Some(8),
            pin_hash: pin_hash.clone(),
        }));
        records.push(Record::Joined(JoinedRecord {
            id,
            client: client.clone(),
            joined_at: now + 1,
        }));
    }
    Ok((encode_journal(&records)?, records.len()))
}
