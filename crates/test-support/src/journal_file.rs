//! Session journals written straight in the service's on-disk format (format 2, see
//! `session-manager`'s `store::journal::record`), for tests and benchmarks that need
//! many sessions without creating each over HTTP and hashing a PIN for each: every
//! session may share one argon2 hash.
//!
//! A frame is one line: `<kind> <id> <body length> <key crc32> <body crc32> <body JSON>`,
//! the key checksum covering `<kind> <id> <body length>`. Bodies are spelled byte for
//! byte as the service spells them (its fields in its order), so a journal written here
//! replays exactly as one the service wrote itself.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

/// First line of a journal in the current format.
pub const JOURNAL_HEADER: &[u8] = b"ism-session-journal 2\n";
/// Name of the journal file inside the data directory.
pub const JOURNAL_FILE_NAME: &str = "sessions.journal";

/// A record body, its fields in the order the service writes them.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Body<'a> {
    Created {
        id: &'a str,
        session_type: &'a str,
        created_at: u64,
        expires_at: Option<u64>,
        max_clients: Option<u32>,
        pin_hash: &'a str,
    },
    Joined {
        id: &'a str,
        client: &'a str,
        joined_at: u64,
    },
    Closed {
        id: &'a str,
        closed_at: u64,
    },
}

/// A journal being written; [`JournalWriter::finish`] flushes it.
pub struct JournalWriter {
    out: BufWriter<File>,
    records: usize,
}

impl JournalWriter {
    /// Creates `data_dir/sessions.journal` (and `data_dir`) with the header.
    pub fn create(data_dir: &Path) -> JournalWriter {
        std::fs::create_dir_all(data_dir).expect("create the data directory");
        let file = File::create(data_dir.join(JOURNAL_FILE_NAME)).expect("create the journal");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(JOURNAL_HEADER).expect("write the journal");
        JournalWriter { out, records: 0 }
    }

    /// A `created` record of a session of type `default`.
    pub fn created(
        &mut self,
        id: &str,
        created_at: u64,
        expires_at: Option<u64>,
        max_clients: Option<u32>,
        pin_hash: &str,
    ) {
        self.frame(
            b'c',
            id,
            &Body::Created {
                id,
                session_type: "default",
                created_at,
                expires_at,
                max_clients,
                pin_hash,
            },
        );
    }

    /// A `joined` record.
    pub fn joined(&mut self, id: &str, client: &str, joined_at: u64) {
        self.frame(
            b'j',
            id,
            &Body::Joined {
                id,
                client,
                joined_at,
            },
        );
    }

    /// A `closed` record.
    pub fn closed(&mut self, id: &str, closed_at: u64) {
        self.frame(b'x', id, &Body::Closed { id, closed_at });
    }

    /// Records written so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Flushes the file; returns its number of records.
    pub fn finish(mut self) -> usize {
        self.out.flush().expect("write the journal");
        self.records
    }

    fn frame(&mut self, kind: u8, id: &str, body: &Body<'_>) {
        let body = serde_json::to_vec(body).expect("a record encodes");
        let key = format!("{} {id} {}", char::from(kind), body.len());
        let key_crc = crc32fast::hash(key.as_bytes());
        let body_crc = crc32fast::hash(&body);
        write!(self.out, "{key} {key_crc:08x} {body_crc:08x} ").expect("write the journal");
        self.out.write_all(&body).expect("write the journal");
        self.out.write_all(b"\n").expect("write the journal");
        self.records += 1;
    }
}
