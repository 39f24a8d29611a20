//! The on-disk format of the session journal: what a record says and how it is framed.
//!
//! One record per line: `<crc32 of the JSON, 8 lowercase hex digits> <JSON>\n`. JSON keeps
//! the journal readable with `less` and `jq`; the checksum and the trailing newline make a
//! torn write (crash mid-append) or a flipped bit detectable, so recovery can tell the
//! intact prefix from a damaged tail instead of trusting whatever parses.
//!
//! This module knows nothing of files or sessions in memory; `journal` writes frames and
//! `recovery` reads them back.

use serde::{Deserialize, Serialize};

use crate::domain::{ClientName, SessionId, SessionType};

/// Length of the `<crc32 hex> ` prefix of every frame.
const HEADER_LEN: usize = 9;

/// One fact in the history of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Created(CreatedRecord),
    Joined(JoinedRecord),
    /// The session is over. Compaction also writes this for every id that was ever used,
    /// so a restarted service never hands out an old id again (old device tokens name it).
    Closed(ClosedRecord),
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedRecord {
    pub id: SessionId,
}

impl Record {
    /// Appends this record, framed, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let start = out.len();
        out.extend_from_slice(b"00000000 ");
        if let Err(error) = serde_json::to_writer(&mut *out, self) {
            out.truncate(start);
            return Err(error);
        }
        let checksum = crc32fast::hash(&out[start + HEADER_LEN..]);
        let hex = format!("{checksum:08x}");
        out[start..start + 8].copy_from_slice(hex.as_bytes());
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

/// Why the bytes at some offset are not an intact frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDefect {
    /// No newline before the end of the file: the last append was cut short.
    Torn,
    /// The line does not start with 8 hex digits and a space.
    BadHeader,
    /// The checksum does not match the JSON: the bytes were damaged.
    ChecksumMismatch,
    /// The checksum matches but the JSON is not a record this version understands.
    Undecodable,
}

impl FrameDefect {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Torn => "record cut short (no end of line)",
            Self::BadHeader => "record header is not a checksum",
            Self::ChecksumMismatch => "record checksum mismatch",
            Self::Undecodable => "record checksum matches but its content is not understood",
        }
    }
}

/// Decodes the frame at the start of `bytes`; on success returns the record and the
/// frame's length in bytes (newline included).
pub fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), FrameDefect> {
    let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(FrameDefect::Torn);
    };
    let line = &bytes[..newline];
    if line.len() <= HEADER_LEN || line[HEADER_LEN - 1] != b' ' {
        return Err(FrameDefect::BadHeader);
    }
    let expected = std::str::from_utf8(&line[..8])
        .ok()
        .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or(FrameDefect::BadHeader)?;
    let json = &line[HEADER_LEN..];
    if crc32fast::hash(json) != expected {
        return Err(FrameDefect::ChecksumMismatch);
    }
    let record = serde_json::from_slice(json).map_err(|_| FrameDefect::Undecodable)?;
    Ok((record, newline + 1))
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

    #[test]
    fn every_kind_round_trips() {
        let closed = Record::Closed(ClosedRecord {
            id: SessionId::parse("12").unwrap(),
        });
        for record in [created("12"), joined("12"), closed] {
            let frame = record.encode().unwrap();
            assert_eq!(frame.last(), Some(&b'\n'));
            assert_eq!(decode_frame(&frame), Ok((record, frame.len())));
        }
    }

    #[test]
    fn frames_are_readable_lines() {
        let frame = String::from_utf8(joined("12").encode().unwrap()).unwrap();
        let (crc, json) = frame.trim_end().split_once(' ').unwrap();
        assert_eq!(crc.len(), 8);
        assert_eq!(
            json,
            r#"{"joined":{"id":"12","client":"lamp","joined_at":1700000100}}"#
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
        for cut in [1, 8, 9, frame.len() / 2, frame.len() - 1] {
            assert_eq!(
                decode_frame(&frame[..cut]),
                Err(FrameDefect::Torn),
                "cut {cut}"
            );
        }
        assert_eq!(decode_frame(b""), Err(FrameDefect::Torn));
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let frame = created("1").encode().unwrap();
        for position in 0..frame.len() - 1 {
            let mut damaged = frame.clone();
            damaged[position] ^= 0x01;
            assert!(
                decode_frame(&damaged).is_err(),
                "flip at {position} went unnoticed"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(decode_frame(b"\n"), Err(FrameDefect::BadHeader));
        assert_eq!(decode_frame(b"hello world\n"), Err(FrameDefect::BadHeader));
        assert_eq!(
            decode_frame(b"\0\0\0\0\0\0\0\0\0\0\n"),
            Err(FrameDefect::BadHeader)
        );
        assert_eq!(
            decode_frame(b"00000000 {}\n"),
            Err(FrameDefect::ChecksumMismatch)
        );
    }

    #[test]
    fn checksummed_but_invalid_content_is_undecodable() {
        let json = br#"{"joined":{"id":"12x","client":"lamp","joined_at":1}}"#;
        let mut frame = format!("{:08x} ", crc32fast::hash(json)).into_bytes();
        frame.extend_from_slice(json);
        frame.push(b'\n');
        assert_eq!(decode_frame(&frame), Err(FrameDefect::Undecodable));
    }
}
