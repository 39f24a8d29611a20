//! Files that are written once and never replaced (keys, certificates): created
//! exclusively, with their permissions set at creation, and synced before the path is
//! reported.

use std::io::Write as _;
use std::path::Path;

use crate::error::Error;

/// Writes a file readable only by its owner; fails if it exists.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    write_new_file(path, contents, 0o600)
}

pub(crate) fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}
