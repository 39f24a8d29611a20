//! The one way tests run the real `session-manager` binary: start it on a data directory
//! with ports chosen by the kernel (port 0, read back from its start-up line), wait until
//! it answers, stop it with SIGTERM or SIGKILL, or run it to its exit when it must refuse
//! to start. Its stderr (the log) is kept in a file next to the data directory.
//!
//! Test files include it with `#[path = "support/service.rs"] mod service;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running service.
pub struct Service {
    pub child: Child,
    /// `http://127.0.0.1:<port>` of the admin API.
    pub admin: String,
    /// `http://127.0.0.1:<port>` of the public API.
    pub public: String,
    pub log_path: PathBuf,
}

fn command(data_dir: &Path, env: &[(&str, &str)]) -> (Command, PathBuf) {
    let log_path = data_dir.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("cannot open the service log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_session-manager"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ISM_DATA_DIR", data_dir)
        .env("ISM_ADMIN_ADDR", "127.0.0.1:0")
        .env("ISM_PUBLIC_ADDR", "127.0.0.1:0")
        .env("MQTT_AUTH_MODE", "dev_no_auth")
        .env("ISM_LOG_FORMAT", "json")
        .env("ISM_IP_MAX_FAILURES", "100000")
        .env("ISM_SESSION_MAX_FAILURES", "100000");
    for (name, value) in env {
        command.env(name, value);
    }
    command.stdin(Stdio::null()).stderr(log);
    (command, log_path)
}

/// Starts the service on `data_dir` with `env` on top of the test defaults (dev_no_auth,
/// JSON logs, generous failure limits) and waits until both ports answer `/healthz`.
pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Service {
    let (mut command, log_path) = command(data_dir, env);
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the session-manager binary");
    let stdout = child.stdout.take().expect("stdout is piped");
    let log = log_path.clone();
    let addresses = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        match read {
            Ok(n) if n > 0 => serde_json::from_str::<Value>(&line).ok(),
            _ => None,
        }
    })
    .await
    .expect("reading the start-up line panicked");
    let Some(addresses) = addresses else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the service did not print its start-up line; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let service = Service {
        child,
        admin: format!(
            "http://{}",
            addresses["admin_addr"].as_str().expect("admin_addr")
        ),
        public: format!(
            "http://{}",
            addresses["public_addr"].as_str().expect("public_addr")
        ),
        log_path,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for base in [&service.admin, &service.public] {
        // Any answer will do: a store that cannot write answers 503, and that is a state
        // some tests start in.
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "service did not answer on {base}/healthz; log:\n{}",
                service.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    service
}

/// Runs the service on `data_dir` until it exits by itself (it must refuse to start);
/// its exit status and log.
pub fn run_to_exit(data_dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let (mut command, log_path) = command(data_dir, env);
    let mut child = command
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start the session-manager binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("cannot wait for the service") {
            return (
                status,
                std::fs::read_to_string(log_path).unwrap_or_default(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the service did not exit by itself; log:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Service {
    /// Everything the service logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("cannot SIGKILL the service");
        self.child.wait().expect("cannot wait for the service");
    }

    /// SIGTERM, and wait for the graceful stop.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("cannot wait for the service")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A test that failed half-way must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
