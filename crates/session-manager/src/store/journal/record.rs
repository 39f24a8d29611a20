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
//! conductor started or stopped); the key checksum covers
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

use crate::domain::{ClientName, SessionId, SessionType};

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

/// The kind of a record, readable from a frame's key even when its body is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Created,
    Joined,
    Kicked,
    Closed,
    Conductor,
}

impl RecordKind {
    fn letter(self) -> u8 {
        match self {
            Self::Created => b'c',
            Self::Joined => b'j',
            Self::Kicked => b'k',
            Self::Closed => b'x',
            Self::Conductor => b'o',
        }
    }

    fn from_letter(letter: &[u8]) -> Option<Self> {
        match letter {
            b"c" => Some(Self::Created),
            b"j" => Some(Self::Joined),
            b"k" => Some(Self::Kicked),
            b"x" => Some(Self::Closed),
            b"o" => Some(Self::Conductor),
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
        }
    }

    pub fn id(&self) -> &SessionId {
        match self {
            Record::Created(record) => &record.id,
            Record::Joined(record) => &record.id,
            Record::Kicked(record) => &record.id,
            Record::Closed(record) => &record.id,
            Record::Conductor(record) => &record.id,
        }
    }

    /// Appends this record, framed, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let body = serde_json::to_vec(self)?;
        let key = format!(
            "{} {} {}",
            char::from(self.kind().letter()),
            self.id().as_str(),
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
        id: SessionId,
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
    let id = std::str::from_utf8(&bytes[kind_end + 1..id_end])
        .ok()
        .and_then(|id| SessionId::parse(id).ok())
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
            id,
            len: frame_len,
        });
    }
    if let Some(record) = canonical_body::decode(kind, &id, body) {
        return Ok((record, frame_len));
    }
    let record: Record = serde_json::from_slice(body).map_err(|_| FrameDefect::Undecodable)?;
    if record.kind() != kind || *record.id() != id {
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

    #[test]
    fn every_kind_round_trips() {
        for record in [created("12"), joined("12"), kicked("12"), closed("12")] {
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
                        id: SessionId::parse("4711").unwrap(),
                        len: frame.len()
                    },
                    "flip at {position}"
                );
            }
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
