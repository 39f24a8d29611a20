//! The one way tests run the real `session-manager` binary. A [`Launch`] starts it with a
//! clean environment and both listeners on port 0 (`ISM_ADMIN_ADDR=127.0.0.1:0`,
//! `ISM_PUBLIC_ADDR=127.0.0.1:0`), and the ports the kernel chose are read back from the
//! binary's JSON start-up line on stdout, so no port is ever guessed. Settings on top come
//! from [`Launch::env`]. A started [`Service`] is stopped with SIGTERM (or any signal) and
//! a bounded wait, or SIGKILL; a binary that must refuse to start is run to its exit with
//! [`Launch::run_to_exit`]. Its stderr (the log) always goes to a file.
//!
//! The binary is found by [`binary`]: `ISM_TEST_RELEASE_DIR` (the release build
//! `scripts/test` makes), else this profile's build (`cargo test` of the workspace or of
//! `session-manager` builds it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BINARY_FILE: &str = "session-manager";

/// How long a started service has to answer, and one that must refuse to start to exit.
const PATIENCE: Duration = Duration::from_secs(30);

/// How long a signalled service has to exit.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// The `session-manager` binary: from `ISM_TEST_RELEASE_DIR`, else this profile's build.
pub fn binary() -> PathBuf {
    crate::find_build_output(BINARY_FILE).unwrap_or_else(|| {
        panic!(
            "the {BINARY_FILE} binary was not found in $ISM_TEST_RELEASE_DIR or this \
             profile's target directory; build it: cargo build -p session-manager"
        )
    })
}

/// A `session-manager` command being prepared.
pub struct Launch {
    command: Command,
    log_path: Option<PathBuf>,
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    /// The binary with nothing in its environment but `PATH`, both listeners on port 0
    /// and JSON logs.
    pub fn new() -> Launch {
        Self::prepare(Command::new(binary()))
    }

    /// As [`new`](Self::new), run through `wrapper` (e.g. `prlimit --nofile=…`), which gets
    /// the binary as its last argument.
    pub fn wrapped(mut wrapper: Command) -> Launch {
        wrapper.arg(binary());
        Self::prepare(wrapper)
    }

    /// The container entrypoint `script` run natively (`sh <script>`, which defaults to
    /// `serve`), with the binary's directory first on `PATH`, so the script's
    /// `session-manager` is this build. Point it at temporary directories with `KEYS_DIR`
    /// and `TLS_DIR`.
    pub fn entrypoint(script: &Path) -> Launch {
        let mut command = Command::new("sh");
        command.arg(script);
        let mut launch = Self::prepare(command);
        let binary = binary();
        let binary_dir = binary.parent().expect("the binary lives in a directory");
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(binary_dir.to_path_buf()).chain(std::env::split_paths(&inherited)),
        )
        .expect("PATH entries without separators");
        launch.command.env("PATH", path);
        launch
    }

    fn prepare(mut command: Command) -> Launch {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ISM_ADMIN_ADDR", "127.0.0.1:0")
            .env("ISM_PUBLIC_ADDR", "127.0.0.1:0")
            .env("ISM_LOG_FORMAT", "json")
            .stdin(Stdio::null());
        Launch {
            command,
            log_path: None,
        }
    }

    /// `ISM_DATA_DIR`.
    pub fn data_dir(mut self, dir: &Path) -> Launch {
        self.command.env("ISM_DATA_DIR", dir);
        self
    }

    /// One environment variable, on top of (or replacing) what is set so far.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Launch {
        self.command.env(name, value);
        self
    }

    /// Environment variables, on top of (or replacing) what is set so far.
    pub fn envs(mut self, env: &[(&str, &str)]) -> Launch {
        self.command.envs(env.iter().copied());
        self
    }

    /// The working directory (where a default data directory `data/` lands).
    pub fn current_dir(mut self, dir: &Path) -> Launch {
        self.command.current_dir(dir);
        self
    }

    /// Appends the log (stderr) to `path`; without it, the log goes to a fresh file that
    /// lives as long as the [`Service`].
    pub fn log_file(mut self, path: PathBuf) -> Launch {
        self.log_path = Some(path);
        self
    }

    /// Starts `serve` and reads the addresses from the start-up line; panics with the log
    /// when the binary does not start.
    pub fn start(self) -> Service {
        self.try_start()
            .unwrap_or_else(|refusal| panic!("the service did not start: {refusal}"))
    }

    /// Starts `serve`; `Err` when the binary exits without printing its start-up line.
    pub fn try_start(mut self) -> Result<Service, Refusal> {
        let (log_path, log_dir) = self.open_log();
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the session-manager binary");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        if read.is_err() || line.is_empty() {
            let status = child.wait().expect("cannot wait for the service");
            return Err(Refusal {
                status,
                log: read_log(&log_path),
            });
        }
        // Keep draining stdout, so the service never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let addresses: Value = serde_json::from_str(&line).unwrap_or_else(|error| {
            panic!(
                "start-up line {line:?}: {error}; log:\n{}",
                read_log(&log_path)
            )
        });
        let address = |name: &str| -> SocketAddr {
            addresses[name]
                .as_str()
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in the start-up line {line:?}"))
        };
        let (admin_addr, public_addr) = (address("admin_addr"), address("public_addr"));
        Ok(Service {
            child,
            admin_addr,
            public_addr,
            admin: format!("http://{admin_addr}"),
            public: format!("http://{public_addr}"),
            log_path,
            _log_dir: log_dir,
        })
    }

    /// Runs the binary with `args` (a subcommand such as `export-public-key`) and this
    /// environment to its end; its output, stderr included (no log file).
    pub fn output<I, S>(mut self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command
            .args(args)
            .output()
            .expect("cannot run the session-manager binary")
    }

    /// Runs `serve` until it exits by itself (it must refuse to start); its exit status
    /// and log. Panics, with the log, when it is still running after 30 s.
    pub fn run_to_exit(mut self) -> (ExitStatus, String) {
        let (log_path, _log_dir) = self.open_log();
        let mut child = self
            .command
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start the session-manager binary");
        match wait_with_deadline(&mut child, PATIENCE) {
            Some(status) => (status, read_log(&log_path)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the service did not exit by itself; log:\n{}",
                    read_log(&log_path)
                );
            }
        }
    }

    /// Points stderr at the log file; the temporary directory holding a default one.
    fn open_log(&mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        let (path, dir) = match self.log_path.take() {
            Some(path) => (path, None),
            None => {
                let dir = tempfile::tempdir().expect("temp dir for the service log");
                (dir.path().join("session-manager.log"), Some(dir))
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("cannot open the service log file");
        self.command.stderr(log);
        (path, dir)
    }
}

/// Why a [`Launch::try_start`] got no service: the exit status and the log.
#[derive(Debug)]
pub struct Refusal {
    pub status: ExitStatus,
    pub log: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}: {}", self.status, self.log)
    }
}

/// A running service; killed when dropped, so a failed test leaves no process behind.
pub struct Service {
    pub child: Child,
    pub admin_addr: SocketAddr,
    pub public_addr: SocketAddr,
    /// `http://127.0.0.1:<port>` of the admin API.
    pub admin: String,
    /// `http://127.0.0.1:<port>` of the public API.
    pub public: String,
    pub log_path: PathBuf,
    _log_dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Waits (up to 30 s) until both ports answer `/healthz`. Any answer will do: a store
    /// that cannot write answers 503, and that is a state some tests start in.
    pub async fn wait_until_answering(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        for base in [&self.admin, &self.public] {
            while http.get(format!("{base}/healthz")).send().await.is_err() {
                assert!(
                    Instant::now() < deadline,
                    "service did not answer on {base}/healthz; log:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Everything the service logged so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of the process's `/proc/<pid>/status` in its unit (kB for `VmRSS`).
    pub fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("proc status of the service");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} missing from /proc/<pid>/status"))
    }

    /// Resident memory of the service process (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("cannot SIGKILL the service");
        self.child.wait().expect("cannot wait for the service");
    }

    /// SIGTERM, and wait for the graceful stop.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal_and_wait("-TERM")
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`, `-INT`) and waits up to 15 s for the
    /// exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {signal} failed");
        wait_with_deadline(&mut self.child, STOP_PATIENCE).unwrap_or_else(|| {
            panic!(
                "no exit within {STOP_PATIENCE:?} of {signal}; log:\n{}",
                self.log()
            )
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The exit status, or `None` when `child` still runs after `patience`.
fn wait_with_deadline(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().expect("cannot wait for the process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
