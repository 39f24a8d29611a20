//! One service per data directory: an exclusive `flock` on `<data dir>/lock`, held for
//! the life of the process.
//!
//! Two processes appending to one journal would interleave their records and hand out
//! each other's session ids. The lock file holds the pid of its holder, so a second
//! process can say who has the directory. The kernel releases the lock when the holder
//! exits in any way (kill -9 included), so a stale file never blocks a restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE_NAME: &str = "lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    #[error(
        "the data directory {} is in use by another session-manager ({holder}); stop it or use another ISM_DATA_DIR",
        dir.display()
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` (created if missing) and writes this process's pid into
    /// the lock file; fails at once, naming the holder, when another process has it.
    pub fn acquire(data_dir: &Path) -> Result<Self, DataDirLockError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| DataDirLockError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(data_dir).map_err(io("create the data directory", data_dir))?;
        let path = data_dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        if let Err(errno) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if errno == rustix::io::Errno::WOULDBLOCK {
                let mut contents = String::new();
                let holder = match file.read_to_string(&mut contents) {
                    Ok(_) if !contents.trim().is_empty() => format!("pid {}", contents.trim()),
                    _ => "pid unknown".to_owned(),
                };
                return Err(DataDirLockError::InUse {
                    dir: data_dir.to_owned(),
                    holder,
                });
            }
            return Err(io("lock", &path)(errno.into()));
        }
        let pid = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        if let Err(error) = pid {
            // The lock itself holds; only the name of its holder is missing (a full disk).
            tracing::warn!(%error, path = %path.display(), "cannot write the pid into the lock file");
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_free_again_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
