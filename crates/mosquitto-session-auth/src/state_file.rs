//! The plugin's state file: what must survive a broker restart even when the session
//! manager is not there to tell it again.
//!
//! - **Closed sessions** and the end of their refusal, so a broker restarted while the
//!   service is down (or before it reconnects) never admits a revoked token.
//! - **Kicked devices** (session, name, the generation below which their tokens are
//!   refused, and until when), for the same reason.
//! - **Revoked tokens** (by `jti`, until their `exp`), for the same reason.
//! - **Persistent client sessions**' token generation and `jti` with the rest, so a kick
//!   still ends a restored session's grants.
//! - **Persistent client sessions** (client id, session, name, key id, expiry, grants), so
//!   that after a restart with Mosquitto's `persistence true` the first-come rule still
//!   protects a persisted session from devices of other sessions, and the messages queued
//!   for it are still checked against its own grants.
//!
//! The file is JSON (`{"version":1,"closed":[...],"kicked":[...],"clients":[...],
//! "revoked":[...]}`; files written before kicks existed lack `kicked` and each client's
//! `gen` and `jti`, and read as none / 0 / empty; files written before token revocations
//! existed lack `revoked`), written atomically:
//! a temporary file next to it is written and fsynced, renamed over it, and the directory
//! fsynced, so a crash leaves either the old or the new file, never a mix. Entries whose end
//! has passed are dropped when the file is read. A file that cannot be read or parsed stops
//! the plugin (and so the broker) with a message naming it: starting without it would
//! silently admit revoked tokens.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use session_token::{Acl, ClosedSession, KickedDevice, RevokedToken};

use crate::clients::ConnectedClient;
use crate::error::PluginError;

/// The format version written; any other version is refused as damaged.
pub const STATE_FILE_VERSION: u32 = 1;

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    pub version: u32,
    pub closed: Vec<ClosedSession>,
    #[serde(default)]
    pub kicked: Vec<KickedDevice>,
    pub clients: Vec<SavedClient>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<RevokedToken>,
}

/// A persistent client session and the grants of the token that opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedClient {
    pub client_id: String,
    pub sid: String,
    pub sub: String,
    pub kid: String,
    pub exp: u64,
    pub grants_end: u64,
    pub subs: Vec<String>,
    pub publ: Vec<String>,
    /// The token's `gen` (absent in files written before kicks existed: 0).
    #[serde(rename = "gen", default)]
    pub generation: u32,
    /// The token's `jti` (absent in files written before presence existed).
    #[serde(default)]
    pub jti: String,
}

impl SavedClient {
    pub fn from_client(client: &ConnectedClient) -> Self {
        SavedClient {
            client_id: client.client_id.clone(),
            sid: client.session_id.clone(),
            sub: client.name.clone(),
            kid: client.kid.clone(),
            exp: client.expires_at,
            grants_end: client.grants_end,
            subs: client.acl.subscribe_grants().map(str::to_owned).collect(),
            publ: client.acl.publish_grants().map(str::to_owned).collect(),
            generation: client.generation,
            jti: client.token_id.clone(),
        }
    }

    /// The client as the registry holds it; `None` when its grants do not parse.
    pub fn into_client(self) -> Option<ConnectedClient> {
        let acl = Acl::from_grants(&self.subs, &self.publ).ok()?;
        Some(ConnectedClient {
            client_id: self.client_id,
            session_id: self.sid,
            name: self.sub,
            kid: self.kid,
            expires_at: self.exp,
            grants_end: self.grants_end.min(self.exp),
            acl,
            persistent: true,
            token_id: self.jti,
            generation: self.generation,
        })
    }
}

/// Reads the state file; `Ok(None)` when there is none yet (the first start).
pub fn load(path: &Path) -> Result<Option<SavedState>, PluginError> {
    let damaged = |problem: String| PluginError::DamagedStateFile {
        path: path.to_owned(),
        problem,
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(damaged(format!("cannot read it: {error}"))),
    };
    let state: SavedState =
        serde_json::from_slice(&bytes).map_err(|error| damaged(error.to_string()))?;
    if state.version != STATE_FILE_VERSION {
        return Err(damaged(format!(
            "version {} is not {STATE_FILE_VERSION}",
            state.version
        )));
    }
    if let Some(bad) = state
        .clients
        .iter()
        .find(|client| Acl::from_grants(&client.subs, &client.publ).is_err())
    {
        return Err(damaged(format!(
            "client {:?} has malformed grants",
            bad.client_id
        )));
    }
    Ok(Some(state))
}

/// Replaces the state file atomically with `state`.
pub fn save(path: &Path, state: &SavedState) -> Result<(), PluginError> {
    let unwritable = |source| PluginError::UnwritableStateFile {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(state)
        .map_err(|error| unwritable(io::Error::new(io::ErrorKind::InvalidData, error)))?;
    let temporary = temporary_path(path);
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        sync_directory(path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(unwritable)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes the rename itself durable.
fn sync_directory(path: &Path) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    OpenOptions::new().read(true).open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SavedState {
        SavedState {
            version: STATE_FILE_VERSION,
            closed: vec![ClosedSession {
                sid: "111".into(),
                until: 2_000,
            }],
            kicked: vec![KickedDevice {
                sid: "222".into(),
                client: "switch".into(),
                below_gen: 3,
                until: 2_500,
            }],
            clients: vec![SavedClient {
                client_id: "lamp".into(),
                sid: "222".into(),
                sub: "lamp".into(),
                kid: "k".into(),
                exp: 3_000,
                grants_end: 3_000,
                subs: vec!["/222/#".into()],
                publ: vec!["/222/#".into()],
                generation: 2,
                jti: "j".into(),
            }],
            revoked: vec![RevokedToken {
                jti: "svc".into(),
                until: 4_000,
            }],
        }
    }

    #[test]
    fn a_saved_state_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        assert_eq!(load(&path).expect("no file is fine"), None);
        save(&path, &state()).expect("saves");
        assert_eq!(load(&path).expect("reads"), Some(state()));
        let client = state().clients[0]
            .clone()
            .into_client()
            .expect("grants parse");
        assert_eq!(SavedClient::from_client(&client), state().clients[0]);
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn a_file_written_before_kicks_existed_still_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        std::fs::write(
            &path,
            br#"{"version":1,"closed":[{"sid":"1","until":5}],"clients":[{"client_id":"a","sid":"2","sub":"a","kid":"k","exp":9,"grants_end":9,"subs":[],"publ":[]}]}"#,
        )
        .expect("write");
        let state = load(&path).expect("reads").expect("a state");
        assert!(state.kicked.is_empty());
        assert!(state.revoked.is_empty());
        assert_eq!(
            (state.clients[0].generation, state.clients[0].jti.as_str()),
            (0, "")
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        let mut bad_grants = state();
        bad_grants.clients[0].subs = vec!["a/#/b".into()];
        for content in [
            b"{\"version\":1,\"closed\":[".to_vec(),
            b"".to_vec(),
            b"{\"version\":2,\"closed\":[],\"clients\":[]}".to_vec(),
            serde_json::to_vec(&bad_grants).expect("json"),
        ] {
            std::fs::write(&path, &content).expect("write");
            let message = load(&path).expect_err("damaged").to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("move it aside"), "{message}");
        }
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_it() {
        let path = Path::new("/nonexistent-dir/state");
        let message = save(path, &state()).expect_err("no such dir").to_string();
        assert!(message.contains("/nonexistent-dir/state"), "{message}");
    }
}
