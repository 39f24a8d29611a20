//! The on-disk format of the session journal: what a record says and how it is framed.
//!
//! The file starts with the line [`JOURNAL_HEADER`]; then one frame per line:
//!
//! ```text
//! <kind> <id> <body length> <key crc32> <body crc32> <body JSON>\n
//! x 123456789 58 1c2b3a4d 9f8e7d6c {"closed":{"id":"123456789","closed_at":1700000000}}
//! ```
//!
//! `kind` is `c` (created), `j` (joined), `k` (kicked), `x` (closed) or `o` (the session's
//! conductor started or stopped), whose `<id>` is the session's, or `s` (service token
//! issued) or `v` (service token revoked), whose `<id>` is the token's `jti` (see
//! [`RecordSubject`]); the key checksum covers
//! `<kind> <id> <body length>`, the body checksum covers the JSON. So a damaged frame is
//! recognised, its extent is known from the length, and, as long as its key is intact, so
//! is *what* was lost: recovery can stay on the safe side (a lost close still closes, a
//! lost create still reserves its id) and go on with the next frame. JSON never holds a raw
//! newline, so when even the key is damaged the reader resynchronises at the next line
//! that is an intact frame.
//!
//! Journals written before the header existed (`<crc32> <JSON>\n` per line, format 1)
//! are still read ([`decode_v1_frame`]); start-up rewrites them in the current format.
//!
//! This module knows nothing of files or sessions in memory; `journal` writes frames and
//! `recovery` reads them back.

use serde::{Deserialize, Serialize};

use super::canonical_body;

use crate::domain::{ClientName, ServiceTokenName, SessionId, SessionType};

/// First line of every journal in the current format.
pub const JOURNAL_HEADER: &[u8] = b"ism-session-journal 2\n";

/// Length of the `<crc32 hex> ` prefix of a format-1 frame.
const V1_HEADER_LEN: usize = 9;
/// Longest key (`<kind> <id> <length> <crc>`) of a plausible frame.
const MAX_KEY_LEN: usize = 64;
/// Largest body a frame may declare; far above any real record.
const MAX_BODY_LEN: usize = 1 << 20;

/// One fact in the history of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Created(CreatedRecord),
    Joined(JoinedRecord),
    /// An operator kicked a client out of a live session, raising its generation.
    Kicked(KickedRecord),
    /// The session is over. Compaction also writes this for every id that was ever used
    /// (expired sessions included), so a restarted service never hands out an old id again
    /// (old device tokens name it).
    Closed(ClosedRecord),
    /// The session's conductor was started, or stopped (or paused), by an operator: a
    /// started conductor is started again after a restart. Journals written before
    /// conductors existed have none; every conductor then starts stopped.
    Conductor(ConductorRecord),
    /// A service token was issued (the token itself is never written, only what it
    /// grants).
    ServiceTokenIssued(ServiceTokenRecord),
    /// A service token was revoked: the broker refuses it until its end.
    ServiceTokenRevoked(ServiceTokenRevokedRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedRecord {
    pub id: SessionId,
    pub session_type: SessionType,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_clients: Option<u32>,
    /// argon2id PHC string; the PIN itself is never written anywhere.
    pub pin_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedRecord {
    pub id: SessionId,
    pub client: ClientName,
    pub joined_at: u64,
}

/// A kick: the client's generation after it (tokens of a lower one are refused) and when
/// it happened. Journals written before kicks existed have none; every client then has
/// generation 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KickedRecord {
    pub id: SessionId,
    pub client: ClientName,
    pub generation: u32,
    pub kicked_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedRecord {
    pub id: SessionId,
    /// When the session was closed (or expired), seconds since the epoch. Records written
    /// before this field existed lack it; recovery then takes the recovery time, the
    /// choice that keeps the session's tokens refused longest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<u64>,
    /// The session's own end, if it had one: no token of it lives beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_end: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConductorRecord {
    pub id: SessionId,
    /// Whether the conductor runs from now on.
    pub started: bool,
    /// When it was started or stopped, seconds since the epoch.
    pub at: u64,
}

/// An issued service token; `jti` is a UUID, which is also the frame's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTokenRecord {
    pub jti: String,
    pub name: ServiceTokenName,
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
    pub issued_at: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTokenRevokedRecord {
    pub jti: String,
    pub revoked_at: u64,
}

/// What a frame's key names, readable even when the body is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSubject {
    /// The session a session record belongs to.
    Session(SessionId),
    /// The `jti` of the service token a service-token record is about.
    ServiceToken(String),
}

/// Is `text` a service token id as the service makes them (a hyphenated UUID)? Checked
/// when a frame key is read, so a key can never smuggle spaces or newlines.
pub fn is_service_token_id(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok_and(|uuid| uuid.hyphenated().to_string() == text)
}

/// The kind of a record, readable from a frame's key even when its body is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Created,
    Joined,
    Kicked,
    Closed,
    Conductor,
    ServiceTokenIssued,
    ServiceTokenRevoked,
}

impl RecordKind {
    fn letter(self) -> u8 {
        match self {
            Self::Created => b'c',
            Self::Joined => b'j',
            Self::Kicked => b'k',
            Self::Closed => b'x',
            Self::Conductor => b'o',
            Self::ServiceTokenIssued => b's',
            Self::ServiceTokenRevoked => b'v',
        }
    }

    fn from_letter(letter: &[u8]) -> Option<Self> {
        match letter {
            b"c" => Some(Self::Created),
            b"j" => Some(Self::Joined),
            b"k" => Some(Self::Kicked),
            b"x" => Some(Self::Closed),
            b"o" => Some(Self::Conductor),
            b"s" => Some(Self::ServiceTokenIssued),
            b"v" => Some(Self::ServiceTokenRevoked),
            _ => None,
        }
    }
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Created(_) => RecordKind::Created,
            Record::Joined(_) => RecordKind::Joined,
            Record::Kicked(_) => RecordKind::Kicked,
            Record::Closed(_) => RecordKind::Closed,
            Record::Conductor(_) => RecordKind::Conductor,
            Record::ServiceTokenIssued(_) => RecordKind::ServiceTokenIssued,
            Record::ServiceTokenRevoked(_) => RecordKind::ServiceTokenRevoked,
        }
    }

    /// The `<id>` of the frame's key: the session id, or the service token's `jti`.
    pub fn key(&self) -> &str {
        match self {
            Record::Created(record) => record.id.as_str(),
            Record::Joined(record) => record.id.as_str(),
            Record::Kicked(record) => record.id.as_str(),
            Record::Closed(record) => record.id.as_str(),
            Record::Conductor(record) => record.id.as_str(),
            Record::ServiceTokenIssued(record) => &record.jti,
            Record::ServiceTokenRevoked(record) => &record.jti,
        }
    }

    /// Appends this record, framed, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let body = serde_json::to_vec(self)?;
        let key = format!(
            "{} {} {}",
            char::from(self.kind().letter()),
            self.key(),
            body.len()
        );
        let key_crc = crc32fast::hash(key.as_bytes());
        let body_crc = crc32fast::hash(&body);
        out.extend_from_slice(format!("{key} {key_crc:08x} {body_crc:08x} ").as_bytes());
        out.extend_from_slice(&body);
        out.push(b'\n');
        Ok(())
    }

    /// This record as one frame.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// A whole journal file holding `records`, header included: what tests and benchmarks
/// build journals with.
pub fn encode_journal<'a>(
    records: impl IntoIterator<Item = &'a Record>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = JOURNAL_HEADER.to_vec();
    for record in records {
        record.encode_into(&mut bytes)?;
    }
    Ok(bytes)
}

/// Why the bytes at some offset are not an intact frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameDefect {
    /// The file ends inside the frame: the last append was cut short by a crash.
    Torn,
    /// The key is unreadable or fails its checksum: neither what nor how long is known.
    DamagedKey,
    /// The key is intact but the body (or the end of line after it) is damaged; `len` is
    /// the frame's length as its key declares it.
    DamagedBody {
        kind: RecordKind,
        subject: RecordSubject,
        len: usize,
    },
    /// The checksums match but the body is not a record this version understands, or not
    /// the one its key names.
    Undecodable,
}

impl FrameDefect {
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Torn => "record cut short by the end of the file",
            Self::DamagedKey => "record key unreadable or checksum mismatch",
            Self::DamagedBody { .. } => "record body checksum mismatch",
            Self::Undecodable => "record checksums match but its content is not understood",
        }
    }
}

/// Decodes the frame at the start of `bytes`; on success returns the record and the
/// frame's length in bytes (newline included).
pub fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), FrameDefect> {
    // `<kind> <id> <len> <keycrc> <bodycrc> ` : five fields, each ended by a space.
    let mut fields = [0usize; 5];
    let mut found = 0;
    for (index, &byte) in bytes.iter().take(MAX_KEY_LEN).enumerate() {
        if byte == b'\n' {
            return Err(FrameDefect::DamagedKey);
        }
        if byte == b' ' {
            fields[found] = index;
            found += 1;
            if found == fields.len() {
                break;
            }
        }
    }
    if found < fields.len() {
        return Err(if bytes.len() < MAX_KEY_LEN && !bytes.contains(&b'\n') {
            FrameDefect::Torn
        } else {
            FrameDefect::DamagedKey
        });
    }
    let [kind_end, id_end, len_end, key_crc_end, body_crc_end] = fields;
    let key = &bytes[..len_end];
    let key_crc = parse_hex(&bytes[len_end + 1..key_crc_end]).ok_or(FrameDefect::DamagedKey)?;
    if crc32fast::hash(key) != key_crc {
        return Err(FrameDefect::DamagedKey);
    }
    let kind = RecordKind::from_letter(&bytes[..kind_end]).ok_or(FrameDefect::Undecodable)?;
    let key_text = std::str::from_utf8(&bytes[kind_end + 1..id_end]).ok();
    let subject = match kind {
        RecordKind::ServiceTokenIssued | RecordKind::ServiceTokenRevoked => key_text
            .filter(|jti| is_service_token_id(jti))
            .map(|jti| RecordSubject::ServiceToken(jti.to_owned())),
        _ => key_text
            .and_then(|id| SessionId::parse(id).ok())
            .map(RecordSubject::Session),
    }
    .ok_or(FrameDefect::Undecodable)?;
    let body_len = std::str::from_utf8(&bytes[id_end + 1..len_end])
        .ok()
        .and_then(|len| len.parse::<usize>().ok())
        .filter(|&len| len <= MAX_BODY_LEN)
        .ok_or(FrameDefect::Undecodable)?;
    let body_start = body_crc_end + 1;
    let body_end = body_start + body_len;
    if bytes.len() <= body_end {
        return Err(FrameDefect::Torn);
    }
    let frame_len = body_end + 1;
    let ends_right = bytes[body_end] == b'\n';
    let body = &bytes[body_start..body_end];
    let body_crc = parse_hex(&bytes[key_crc_end + 1..body_crc_end]);
    if body_crc != Some(crc32fast::hash(body)) || !ends_right {
        return Err(FrameDefect::DamagedBody {
            kind,
            subject,
            len: frame_len,
        });
    }
    if let RecordSubject::Session(id) = &subject {
        if let Some(record) = canonical_body::decode(kind, id, body) {
            return Ok((record, frame_len));
        }
    }
    let record: Record = serde_json::from_slice(body).map_err(|_| FrameDefect::Undecodable)?;
    let key = match &subject {
        RecordSubject::Session(id) => id.as_str(),
        RecordSubject::ServiceToken(jti) => jti,
    };
    if record.kind() != kind || record.key() != key {
        return Err(FrameDefect::Undecodable);
    }
    Ok((record, frame_len))
}

/// Decodes a format-1 frame (`<crc32 hex> <JSON>\n`) at the start of `bytes`.
pub fn decode_v1_frame(bytes: &[u8]) -> Result<(Record, usize), FrameDefect> {
    let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(FrameDefect::Torn);
    };
    let line = &bytes[..newline];
    if line.len() <= V1_HEADER_LEN || line[V1_HEADER_LEN - 1] != b' ' {
        return Err(FrameDefect::DamagedKey);
    }
    let expected = parse_hex(&line[..8]).ok_or(FrameDefect::DamagedKey)?;
    let json = &line[V1_HEADER_LEN..];
    if crc32fast::hash(json) != expected {
        return Err(FrameDefect::DamagedKey);
    }
    let record = serde_json::from_slice(json).map_err(|_| FrameDefect::Undecodable)?;
    Ok((record, newline + 1))
}

fn parse_hex(bytes: &[u8]) -> Option<u32> {
    if bytes.len() != 8 {
        return None;
    }
    bytes.iter().try_fold(0u32, |value, &digit| {
        Some(value << 4 | char::from(digit).to_digit(16)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str) -> Record {
        Record::Created(CreatedRecord {
            id: SessionId::parse(id).unwrap(),
            session_type: SessionType::default(),
            created_at: 1_700_000_000,
            expires_at: Some(1_700_003_600),
            max_clients: Some(4),
            pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        })
    }

    fn joined(id: &str) -> Record {
        Record::Joined(JoinedRecord {
            id: SessionId::parse(id).unwrap(),
            client: ClientName::parse("lamp").unwrap(),
            joined_at: 1_700_000_100,
        })
    }

    fn kicked(id: &str) -> Record {
        Record::Kicked(KickedRecord {
            id: SessionId::parse(id).unwrap(),
            client: ClientName::parse("lamp").unwrap(),
            generation: 2,
            kicked_at: 1_700_000_150,
        })
    }

    fn closed(id: &str) -> Record {
        Record::Closed(ClosedRecord {
            id: SessionId::parse(id).unwrap(),
            closed_at: Some(1_700_000_200),
            session_end: None,
        })
    }

    const JTI: &str = "5f1e2d3c-4b5a-4968-8776-655443322110";

    fn service_token_issued() -> Record {
        Record::ServiceTokenIssued(ServiceTokenRecord {
            jti: JTI.to_owned(),
            name: ServiceTokenName::parse("backend-1").unwrap(),
            subscribe: vec!["/+/#".to_owned()],
            publish: vec!["/+/cmd/#".to_owned()],
            issued_at: 1_700_000_000,
            expires_at: 1_700_086_400,
        })
    }

    fn service_token_revoked() -> Record {
        Record::ServiceTokenRevoked(ServiceTokenRevokedRecord {
            jti: JTI.to_owned(),
            revoked_at: 1_700_000_300,
        })
    }

    #[test]
    fn every_kind_round_trips() {
        for record in [
            created("12"),
            joined("12"),
            kicked("12"),
            closed("12"),
            service_token_issued(),
            service_token_revoked(),
        ] {
            let frame = record.encode().unwrap();
            assert_eq!(frame.last(), Some(&b'\n'));
            assert_eq!(decode_frame(&frame), Ok((record, frame.len())));
        }
    }

    #[test]
    fn frames_are_readable_lines() {
        let frame = String::from_utf8(closed("12").encode().unwrap()).unwrap();
        assert!(frame.starts_with("x 12 "), "{frame}");
        assert!(
            frame.ends_with(" {\"closed\":{\"id\":\"12\",\"closed_at\":1700000200}}\n"),
            "{frame}"
        );
    }

    #[test]
    fn decodes_only_the_first_frame() {
        let mut bytes = created("1").encode().unwrap();
        let first_len = bytes.len();
        joined("1").encode_into(&mut bytes).unwrap();
        let (record, len) = decode_frame(&bytes).unwrap();
        assert_eq!(record, created("1"));
        assert_eq!(len, first_len);
        assert_eq!(decode_frame(&bytes[len..]).unwrap().0, joined("1"));
    }

    #[test]
    fn cut_short_frame_is_torn() {
        let frame = created("1").encode().unwrap();
        for cut in [0, 1, 8, 9, frame.len() / 2, frame.len() - 1] {
            assert_eq!(
                decode_frame(&frame[..cut]),
                Err(FrameDefect::Torn),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_byte_is_detected_and_a_damaged_body_still_names_its_record() {
        let frame = closed("4711").encode().unwrap();
        let key_len = frame.iter().position(|&b| b == b'{').unwrap();
        for position in 0..frame.len() {
            let mut damaged = frame.clone();
            damaged[position] ^= 0x01;
            let defect = decode_frame(&damaged).expect_err("flip went unnoticed");
            if position >= key_len {
                assert_eq!(
                    defect,
                    FrameDefect::DamagedBody {
                        kind: RecordKind::Closed,
                        subject: RecordSubject::Session(SessionId::parse("4711").unwrap()),
                        len: frame.len()
                    },
                    "flip at {position}"
                );
            }
        }
    }

    #[test]
    fn a_damaged_service_token_record_still_names_its_token() {
        let frame = service_token_revoked().encode().unwrap();
        assert!(frame.starts_with(format!("v {JTI} ").as_bytes()));
        let mut damaged = frame.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 0x01;
        assert_eq!(
            decode_frame(&damaged),
            Err(FrameDefect::DamagedBody {
                kind: RecordKind::ServiceTokenRevoked,
                subject: RecordSubject::ServiceToken(JTI.to_owned()),
                len: frame.len()
            })
        );
    }

    #[test]
    fn a_service_token_key_must_be_a_token_id() {
        for key in ["12", "not-a-uuid", "5F1E2D3C-4B5A-4968-8776-655443322110"] {
            let body = format!(r#"{{"service_token_revoked":{{"jti":"{key}","revoked_at":1}}}}"#);
            let head = format!("v {key} {}", body.len());
            let mut frame = format!(
                "{head} {:08x} {:08x} ",
                crc32fast::hash(head.as_bytes()),
                crc32fast::hash(body.as_bytes())
            )
            .into_bytes();
            frame.extend_from_slice(body.as_bytes());
            frame.push(b'\n');
            assert_eq!(decode_frame(&frame), Err(FrameDefect::Undecodable), "{key}");
        }
    }

    #[test]
    fn checksummed_but_invalid_content_is_undecodable() {
        let body = br#"{"joined":{"id":"12x","client":"lamp","joined_at":1}}"#;
        let key = format!("j 12 {}", body.len());
        let mut frame = format!(
            "{key} {:08x} {:08x} ",
            crc32fast::hash(key.as_bytes()),
            crc32fast::hash(body)
        )
        .into_bytes();
        frame.extend_from_slice(body);
        frame.push(b'\n');
        assert_eq!(decode_frame(&frame), Err(FrameDefect::Undecodable));
    }

    #[test]
    fn format_1_frames_still_read() {
        let json = br#"{"closed":{"id":"12"}}"#;
        let mut frame = format!("{:08x} ", crc32fast::hash(json)).into_bytes();
        frame.extend_from_slice(json);
        frame.push(b'\n');
        let expected = Record::Closed(ClosedRecord {
            id: SessionId::parse("12").unwrap(),
            closed_at: None,
            session_end: None,
        });
        assert_eq!(decode_v1_frame(&frame), Ok((expected, frame.len())));
        frame[12] ^= 1;
        assert_eq!(decode_v1_frame(&frame), Err(FrameDefect::DamagedKey));
    }
}
