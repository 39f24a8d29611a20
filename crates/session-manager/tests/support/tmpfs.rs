//! A small tmpfs mounted for a test (a data directory that can be filled to the last byte),
//! unmounted when dropped.
//!
//! Needs root (or CAP_SYS_ADMIN) for `mount -t tmpfs`; without it the test fails saying so.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` spells it) on `path`, creating it.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("cannot run `mount` (install util-linux)");
        assert!(
            output.status.success(),
            "this test needs to mount a tmpfs (run it as root or with CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Fills the file system with a ballast file, to the last byte; returns its path.
    pub fn fill(&self) -> PathBuf {
        let ballast = self.path.join("ballast");
        let mut file = std::fs::File::create(&ballast).expect("ballast");
        let chunk = vec![0xAB; 4096];
        loop {
            if let Err(error) = file.write_all(&chunk) {
                assert_eq!(error.raw_os_error(), Some(28), "expected ENOSPC: {error}");
                break;
            }
        }
        // Any byte still free goes too.
        while file.write_all(&[0]).is_ok() {}
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
