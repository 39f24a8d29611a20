//! A real Mosquitto on loopback, loading the plugin built from this workspace (or only
//! given settings). Mosquitto cannot listen on port 0, so a broker takes a port the kernel
//! just handed out and counts as started only once its own log shows that port opened and
//! it still runs: a port another process took first is retried on a new one, never
//! mistaken for ours. The log (stderr, unbuffered) is kept in the broker's directory.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::fixture_tokens::ISSUER;

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

const PLUGIN_FILE: &str = "libmosquitto_session_auth.so";

/// The plugin: from `ISM_TEST_RELEASE_DIR` (the release build `scripts/test` makes), else
/// the one built by the same cargo invocation as this binary. The plugin's library unit
/// is compiled once with both its crate types, so building the `rlib` that its tests and
/// benches link also writes the `cdylib` in `target/<profile>/deps`.
///
/// Mosquitto started as root drops to its own user before it loads the plugin, and the
/// checkout may sit under a directory only root can enter (`mktemp -d` makes them 0700),
/// so the broker gets a copy of the built plugin in the system's temporary directory,
/// readable by every user, made once per test process.
pub fn plugin_path() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let built = crate::find_build_output(PLUGIN_FILE).unwrap_or_else(|| {
            panic!(
                "{PLUGIN_FILE} not found in $ISM_TEST_RELEASE_DIR or this profile's target \
                 directory; build it: cargo build -p mosquitto-session-auth (scripts/test does)"
            )
        });
        readable_copy(&built, "current")
    })
    .clone()
}

/// A copy of the plugin library `built`, in the system's temporary directory and readable by
/// the broker's user (see [`plugin_path`]); `label` keeps copies of different builds apart.
pub fn readable_copy(built: &Path, label: &str) -> PathBuf {
    let copy = std::env::temp_dir().join(format!(
        "ism-test-{}-{label}-{PLUGIN_FILE}",
        std::process::id()
    ));
    std::fs::copy(built, &copy).expect("copy the plugin where the broker's user can read it");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the plugin copy readable");
    copy
}

/// Fails, saying how to install it, when Mosquitto is missing.
pub fn require_mosquitto() {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} not found; install it: apt-get install mosquitto mosquitto-dev"
    );
}

/// What test brokers log: everything, one line per message included, so tests can read
/// what the broker did.
pub const LOG_EVERYTHING: &str = "log_type all\n";

/// What the deployed broker logs (deployment/broker/mosquitto.conf.template): no line
/// per message. Benchmarks use it, since a line per message would double the cost of
/// every message and hide what the plugin adds.
pub const LOG_AS_DEPLOYED: &str =
    "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";

/// A running Mosquitto, killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// What `start` was given, so `restart` can run the same configuration again.
    settings: String,
    persistence: bool,
    log_types: &'static str,
}

impl Broker {
    /// A broker loading the plugin with `jwks` as its key file, issuer `ism`, and `options`
    /// (`plugin_opt_` prefix added) on top.
    pub fn with_plugin(jwks: &str, options: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = plugin_settings(&dir, jwks, options);
        Self::start(dir, &conf)
    }

    /// Like [`with_plugin`](Self::with_plugin), with Mosquitto's own persistence on (in the
    /// broker's directory), so persistent sessions and their queues survive a `restart`.
    pub fn with_plugin_persistent(jwks: &str, options: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = plugin_settings(&dir, jwks, options);
        Self::launch(dir, &conf, true, LOG_EVERYTHING)
    }

    /// Stops the broker the way an operator does (SIGTERM: Mosquitto saves its persistence
    /// database and unloads the plugin), then starts it again with the same configuration
    /// and directory, on a fresh port.
    pub fn restart(self) -> Broker {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM delivered");
        let mut this = self;
        let deadline = Instant::now() + Duration::from_secs(10);
        while this.child.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not stop on SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let settings = std::mem::take(&mut this.settings);
        let persistence = this.persistence;
        let log_types = this.log_types;
        let dir = std::mem::replace(&mut this.dir, tempfile::tempdir().expect("temp dir"));
        drop(this);
        Self::launch(dir, &settings, persistence, log_types)
    }

    /// The same broker without any authentication.
    pub fn anonymous() -> Broker {
        Self::start(
            tempfile::tempdir().expect("temp dir"),
            "allow_anonymous true\n",
        )
    }

    /// Starts mosquitto with `settings` plus a listener and a log file; the port is found
    /// by binding port 0, so a rare race with another process is retried.
    pub fn start(dir: tempfile::TempDir, settings: &str) -> Broker {
        Self::launch(dir, settings, false, LOG_EVERYTHING)
    }

    /// Like [`start`](Self::start), logging `log_types` ([`LOG_EVERYTHING`],
    /// [`LOG_AS_DEPLOYED`]) instead of everything.
    pub fn start_logging(
        dir: tempfile::TempDir,
        settings: &str,
        log_types: &'static str,
    ) -> Broker {
        Self::launch(dir, settings, false, log_types)
    }

    fn launch(
        dir: tempfile::TempDir,
        settings: &str,
        persistent: bool,
        log_types: &'static str,
    ) -> Broker {
        require_mosquitto();
        // Started as root, Mosquitto drops to its own user before loading the plugin; the
        // plugin's state file and the persistence database are written as that user.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("broker directory writable by the broker's user");
        let settings_given = settings;
        let persistence = if persistent {
            format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            )
        } else {
            "persistence false\n".to_owned()
        };
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = format!(
                "listener {port} 127.0.0.1\n{settings}log_dest stderr\n{log_types}max_keepalive 300\n{persistence}"
            );
            let conf_path = dir.path().join("mosquitto.conf");
            std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
            // stderr is unbuffered, unlike mosquitto's log file, so the log is current.
            // Each start appends, so a restarted broker's log keeps what came before.
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("mosquitto.log"))
                .expect("log file");
            let mut child = Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("mosquitto starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            let opened = format!("listen socket on port {port}.");
            while Instant::now() < deadline {
                // Another test's broker may have taken the same free port first, so a
                // successful connect alone could reach the wrong broker: our own broker
                // must have logged opening the port, and still be running.
                let log =
                    std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
                if log.contains(&opened)
                    && child.try_wait().ok().flatten().is_none()
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    return Broker {
                        child,
                        port,
                        dir,
                        settings: settings_given.to_owned(),
                        persistence: persistent,
                        log_types,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log =
                std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
        }
        panic!("mosquitto did not start; its log:\n{last_log}");
    }

    /// Starts mosquitto with a config and returns its exit status and log, for start-up
    /// failures.
    pub fn run_until_exit(settings: &str) -> (std::process::ExitStatus, String) {
        require_mosquitto();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = format!(
            "listener {} 127.0.0.1\n{settings}log_dest stderr\n",
            free_port()
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut log = String::new();
                child
                    .stderr
                    .take()
                    .expect("stderr piped")
                    .read_to_string(&mut log)
                    .expect("read stderr");
                return (status, log);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto kept running although its configuration is invalid");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn jwks_path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits until the broker log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGHUP delivered");
    }

    /// CPU time the broker's main thread has used so far (Mosquitto 2.0 runs every client
    /// and every plugin callback on it), in nanoseconds from /proc/<pid>/schedstat: finer
    /// than the clock ticks of /proc/<pid>/stat, so short runs can be compared.
    pub fn cpu_time(&self) -> Duration {
        let schedstat = std::fs::read_to_string(format!("/proc/{}/schedstat", self.pid()))
            .expect("proc schedstat");
        let nanos = schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .expect("schedstat starts with the run time in ns");
        Duration::from_nanos(nanos)
    }

    /// Resident memory of the broker process, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS present")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `plugin ...` lines for a broker in `dir` with `jwks` as its key file, issuer `ism`,
/// the plugin's state file in `dir`, and `options` (`plugin_opt_` prefix added) on top.
pub fn plugin_settings(dir: &tempfile::TempDir, jwks: &str, options: &[(&str, &str)]) -> String {
    plugin_settings_for(&plugin_path(), dir, jwks, options)
}

/// [`plugin_settings`] for the plugin library at `plugin` (e.g. an older build to compare
/// against, copied with [`readable_copy`]).
pub fn plugin_settings_for(
    plugin: &Path,
    dir: &tempfile::TempDir,
    jwks: &str,
    options: &[(&str, &str)],
) -> String {
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks).expect("write jwks");
    let mut conf = format!(
        "allow_anonymous false\nplugin {}\nplugin_opt_jwks_file {}\nplugin_opt_issuer {ISSUER}\n",
        plugin.display(),
        jwks_path.display()
    );
    if !options.iter().any(|(key, _)| *key == "state_file") {
        conf.push_str(&format!(
            "plugin_opt_state_file {}\n",
            dir.path().join("session-auth.state").display()
        ));
    }
    for (key, value) in options {
        conf.push_str(&format!("plugin_opt_{key} {value}\n"));
    }
    conf
}

/// A port the kernel just handed out (and that someone else may take first: see the module
/// doc).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}
