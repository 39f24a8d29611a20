//! Reading a record body spelled exactly as [`Record::encode_into`] writes it, without the
//! general JSON parser: replay at start-up reads millions of bodies, and going through
//! serde's visitor for each (field names matched as strings, every string copied before it
//! is checked) was the largest single cost of a restart.
//!
//! Only the compact spelling serde_json itself produces for the four records is accepted,
//! field for field and in order: numbers in plain digits without leading zeros, strings of
//! printable ASCII without escapes, nothing before, between or after. Anything else (an
//! older spelling, an escape, a field this version does not know, damage that slipped past
//! the checksum) yields `None`, and the caller hands the body to serde_json, which decides
//! as it always did. So this reader only ever accepts bodies that serde_json accepts too,
//! with the same result, and the same domain checks (`SessionType`, `ClientName`) apply.

use super::record::{ClosedRecord, CreatedRecord, JoinedRecord, KickedRecord, Record, RecordKind};
use crate::domain::{ClientName, SessionId, SessionType};

/// Decodes `body`, a frame's body whose key named `kind` and `id`; `None` when it is not
/// in the canonical spelling or does not name that id (the caller then asks serde_json).
pub(crate) fn decode(kind: RecordKind, id: &SessionId, body: &[u8]) -> Option<Record> {
    let mut body = Cursor(body);
    let record = match kind {
        RecordKind::Created => {
            body.literal(b"{\"created\":{\"id\":\"")?;
            body.literal(id.as_str().as_bytes())?;
            body.literal(b"\",\"session_type\":\"")?;
            let session_type = SessionType::parse(body.string()?).ok()?;
            body.literal(b",\"created_at\":")?;
            let created_at = body.number()?;
            body.literal(b",\"expires_at\":")?;
            let expires_at = body.optional_number()?;
            body.literal(b",\"max_clients\":")?;
            let max_clients = match body.optional_number()? {
                Some(max) => Some(u32::try_from(max).ok()?),
                None => None,
            };
            body.literal(b",\"pin_hash\":\"")?;
            let pin_hash = body.string()?.to_owned();
            Record::Created(CreatedRecord {
                id: id.clone(),
                session_type,
                created_at,
                expires_at,
                max_clients,
                pin_hash,
            })
        }
        RecordKind::Joined => {
            body.literal(b"{\"joined\":{\"id\":\"")?;
            body.literal(id.as_str().as_bytes())?;
            body.literal(b"\",\"client\":\"")?;
            let client = ClientName::parse(body.string()?).ok()?;
            body.literal(b",\"joined_at\":")?;
            let joined_at = body.number()?;
            Record::Joined(JoinedRecord {
                id: id.clone(),
                client,
                joined_at,
            })
        }
        RecordKind::Kicked => {
            body.literal(b"{\"kicked\":{\"id\":\"")?;
            body.literal(id.as_str().as_bytes())?;
            body.literal(b"\",\"client\":\"")?;
            let client = ClientName::parse(body.string()?).ok()?;
            body.literal(b",\"generation\":")?;
            let generation = u32::try_from(body.number()?).ok()?;
            body.literal(b",\"kicked_at\":")?;
            let kicked_at = body.number()?;
            Record::Kicked(KickedRecord {
                id: id.clone(),
                client,
                generation,
                kicked_at,
            })
        }
        // Rare enough that serde_json reads them.
        RecordKind::Conductor => return None,
        RecordKind::Closed => {
            body.literal(b"{\"closed\":{\"id\":\"")?;
            body.literal(id.as_str().as_bytes())?;
            body.literal(b"\"")?;
            let closed_at = body.field(b",\"closed_at\":")?;
            let session_end = body.field(b",\"session_end\":")?;
            Record::Closed(ClosedRecord {
                id: id.clone(),
                closed_at,
                session_end,
            })
        }
        // Rare records: serde_json reads them.
        RecordKind::ServiceTokenIssued | RecordKind::ServiceTokenRevoked => return None,
    };
    body.literal(b"}}")?;
    body.0.is_empty().then_some(record)
}

/// The part of a body not read yet.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// Skips `expected`, if the body goes on with it.
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(expected)?;
        Some(())
    }

    /// The rest of a string whose opening quote was read, up to and past its closing
    /// quote; only printable ASCII without escapes.
    fn string(&mut self) -> Option<&'a str> {
        let end = self
            .0
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || !(b' '..=b'~').contains(&b))?;
        let (text, rest) = self.0.split_at(end);
        self.0 = rest.strip_prefix(b"\"")?;
        // Printable ASCII is UTF-8.
        std::str::from_utf8(text).ok()
    }

    /// A `u64` in plain digits, without a leading zero (unless it is `0`).
    fn number(&mut self) -> Option<u64> {
        let digits = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (text, rest) = self.0.split_at(digits);
        if text.is_empty() || (text.len() > 1 && text[0] == b'0') {
            return None;
        }
        let value = text.iter().try_fold(0u64, |value, &digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })?;
        self.0 = rest;
        Some(value)
    }

    /// `null` or a number.
    fn optional_number(&mut self) -> Option<Option<u64>> {
        if self.literal(b"null").is_some() {
            return Some(None);
        }
        self.number().map(Some)
    }

    /// An optional field left out when it has no value: `Some(None)` when the body does
    /// not go on with `name`.
    fn field(&mut self, name: &[u8]) -> Option<Option<u64>> {
        if self.literal(name).is_none() {
            return Some(None);
        }
        self.number().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> SessionId {
        SessionId::parse(text).expect("a valid id")
    }

    fn serde_reads(body: &[u8]) -> Option<Record> {
        serde_json::from_slice(body).ok()
    }

    fn records() -> Vec<Record> {
        let created = |session_type: &str, expires_at, max_clients, pin_hash: &str| {
            Record::Created(CreatedRecord {
                id: id("123456789"),
                session_type: SessionType::parse(session_type).expect("a valid type"),
                created_at: 1_700_000_000,
                expires_at,
                max_clients,
                pin_hash: pin_hash.to_owned(),
            })
        };
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA";
        let closed = |closed_at, session_end| {
            Record::Closed(ClosedRecord {
                id: id("0012"),
                closed_at,
                session_end,
            })
        };
        vec![
            created("default", Some(1_700_086_400), Some(4), phc),
            created("Game_v2.1-beta", None, None, phc),
            created("a", Some(0), Some(u32::MAX), "not a hash"),
            created("default", Some(u64::MAX), Some(0), ""),
            Record::Joined(JoinedRecord {
                id: id("7"),
                client: ClientName::parse("lamp-1").expect("a valid name"),
                joined_at: 1_700_000_100,
            }),
            Record::Kicked(KickedRecord {
                id: id("7"),
                client: ClientName::parse("lamp-1").expect("a valid name"),
                generation: 3,
                kicked_at: 1_700_000_150,
            }),
            Record::Kicked(KickedRecord {
                id: id("7"),
                client: ClientName::parse("x").expect("a valid name"),
                generation: u32::MAX,
                kicked_at: 0,
            }),
            closed(None, None),
            closed(Some(1_700_000_200), None),
            closed(Some(1_700_000_200), Some(1_700_003_600)),
            closed(None, Some(5)),
        ]
    }

    #[test]
    fn reads_what_the_writer_writes_as_serde_json_does() {
        for record in records() {
            let body = serde_json::to_vec(&record).expect("encodes");
            assert_eq!(
                decode(
                    record.kind(),
                    &SessionId::parse(record.key()).expect("a session record"),
                    &body
                ),
                Some(record.clone()),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn leaves_every_other_spelling_to_serde_json() {
        let joined = br#"{"joined":{"id":"7","client":"lamp","joined_at":17}}"#;
        let seven = id("7");
        assert!(decode(RecordKind::Joined, &seven, joined).is_some());
        for body in [
            // Spellings serde_json also reads, differently spelled.
            &br#"{"joined":{"id":"7","client":"l\u0061mp","joined_at":17}}"#[..],
            br#"{"joined":{"client":"lamp","id":"7","joined_at":17}}"#,
            br#"{"joined": {"id":"7","client":"lamp","joined_at":17}}"#,
            br#"{"joined":{"id":"7","client":"lamp","joined_at":17}} "#,
            // Bodies serde_json refuses, or that name another record.
            br#"{"joined":{"id":"7","client":"lamp","joined_at":017}}"#,
            br#"{"joined":{"id":"7","client":"lamp","joined_at":18446744073709551616}}"#,
            br#"{"joined":{"id":"7","client":"lamp","joined_at":-1}}"#,
            br#"{"joined":{"id":"7","client":"","joined_at":17}}"#,
            br#"{"joined":{"id":"8","client":"lamp","joined_at":17}}"#,
            br#"{"joined":{"id":"7","client":"lamp","joined_at":17}}}"#,
            br#"{"joined":{"id":"7","client":"lamp","joined_at":}}"#,
            br#"{"joined":{"id":"7","client":"lamp"#,
            br#"{"closed":{"id":"7"}}"#,
        ] {
            assert_eq!(
                decode(RecordKind::Joined, &seven, body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let wide_gen =
            br#"{"kicked":{"id":"7","client":"lamp","generation":4294967296,"kicked_at":1}}"#;
        assert_eq!(decode(RecordKind::Kicked, &seven, wide_gen), None);
        assert_eq!(serde_reads(wide_gen), None);
        let reordered = br#"{"kicked":{"id":"7","generation":1,"client":"lamp","kicked_at":1}}"#;
        assert_eq!(decode(RecordKind::Kicked, &seven, reordered), None);
        assert!(serde_reads(reordered).is_some());
        let closed = br#"{"closed":{"id":"7","closed_at":1,"closed_at":2}}"#;
        assert_eq!(decode(RecordKind::Closed, &seven, closed), None);
        let wide = br#"{"created":{"id":"7","session_type":"default","created_at":1,"expires_at":null,"max_clients":4294967296,"pin_hash":"x"}}"#;
        assert_eq!(decode(RecordKind::Created, &seven, wide), None);
        assert_eq!(serde_reads(wide), None);
        let bad_type = br#"{"created":{"id":"7","session_type":"a b","created_at":1,"expires_at":null,"max_clients":null,"pin_hash":"x"}}"#;
        assert_eq!(decode(RecordKind::Created, &seven, bad_type), None);
        assert_eq!(serde_reads(bad_type), None);
    }
}
