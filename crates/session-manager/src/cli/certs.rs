//! `session-manager certs`: a development certificate authority and one server
//! certificate signed by it, for nginx (HTTPS) and the broker's MQTT-over-TLS listener,
//! plus the client CA; `session-manager certs client-ca`: the client CA alone.
//!
//! Files written into `--out`:
//! - `ca.pem`: the CA certificate devices and test clients trust (`--cafile`);
//! - `ca.key`: the CA's private key (mode 0600), kept only so more certificates can be
//!   issued by hand; nothing in the stack reads it;
//! - `server.pem` / `server.key` (0600): the server certificate, valid for every `--host`
//!   plus `localhost`, `127.0.0.1` and `::1`;
//! - `client-ca.pem` / `client-ca.key` (0600): the client CA, a key of its own (never the
//!   token signing key) that signs the client certificates joins hand out
//!   ([`crate::client_ca`]); the broker's certificate listener trusts `client-ca.pem`.
//!
//! The development CA and server certificate are for development and test stacks;
//! production brings server certificates from a real CA instead (see the deployment docs).
//! The client CA is for every mode, including bring-your-own server certificates and KMS
//! signing: `certs client-ca` writes only it. Like `keygen`, neither ever overwrites a
//! file: replacing a CA is a decision, not a side effect.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::Error;
use crate::new_file::write_private_file;

/// Names every development server certificate is valid for, whatever `--host` says.
const ALWAYS_VALID_FOR: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct CertsArgs {
    #[command(subcommand)]
    pub command: Option<CertsCommand>,
    /// Directory to write the files into (created if missing; existing files are never
    /// overwritten).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Extra DNS name or IP address the server certificate is valid for (repeatable),
    /// e.g. the broker's and proxy's host names.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Validity of the server certificate in days (the CA and the client CA get ten times as long).
    #[arg(long, default_value_t = 397, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

#[derive(Debug, Clone, Subcommand)]
pub(super) enum CertsCommand {
    /// Write only the client CA (client-ca.pem, client-ca.key), for deployments that bring
    /// their own server certificates or sign tokens with KMS.
    ClientCa(ClientCaArgs),
}

#[derive(Debug, Clone, Args)]
pub(super) struct ClientCaArgs {
    /// Directory to write client-ca.pem and client-ca.key into (created if missing;
    /// existing files are never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Validity of the client CA in days.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
}

/// The files `certs` writes, as paths inside the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertificateFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_ca: ClientCaFiles,
}

/// The two files of the client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientCaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientCaFiles {
    fn in_dir(dir: &Path) -> Self {
        ClientCaFiles {
            cert: dir.join("client-ca.pem"),
            key: dir.join("client-ca.key"),
        }
    }

    pub(super) fn into_paths(self) -> Vec<PathBuf> {
        vec![self.cert, self.key]
    }
}

impl CertificateFiles {
    fn in_dir(dir: &Path) -> Self {
        CertificateFiles {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_ca: ClientCaFiles::in_dir(dir),
        }
    }

    fn all(&self) -> [&Path; 6] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.client_ca.cert,
            &self.client_ca.key,
        ]
    }

    pub(super) fn into_paths(self) -> Vec<PathBuf> {
        let mut paths = vec![self.ca_cert, self.ca_key, self.server_cert, self.server_key];
        paths.extend(self.client_ca.into_paths());
        paths
    }
}

/// Carries out `certs` or `certs client-ca`; returns the paths written.
pub(super) fn run(args: &CertsArgs) -> Result<Vec<PathBuf>, Error> {
    match (&args.command, &args.out) {
        (Some(CertsCommand::ClientCa(client_ca)), _) => {
            run_client_ca(client_ca).map(ClientCaFiles::into_paths)
        }
        (None, Some(out)) => run_development(out, args).map(CertificateFiles::into_paths),
        (None, None) => Err(Error::Config("--out is required".to_owned())),
    }
}

/// Issues a new development CA, server certificate and client CA into `out`.
fn run_development(out: &Path, args: &CertsArgs) -> Result<CertificateFiles, Error> {
    let files = CertificateFiles::in_dir(out);
    refuse_existing(&files.all())?;
    let now = OffsetDateTime::now_utc();
    let issued = issue(&args.hosts, args.days, now)?;
    let client_ca = issue_client_ca(args.days.saturating_mul(10), now)?;
    create_dir(out)?;
    write_public_file(&files.ca_cert, issued.ca_cert_pem.as_bytes())?;
    write_private_file(&files.ca_key, issued.ca_key_pem.as_bytes())?;
    write_public_file(&files.server_cert, issued.server_cert_pem.as_bytes())?;
    write_private_file(&files.server_key, issued.server_key_pem.as_bytes())?;
    write_client_ca(&files.client_ca, &client_ca)?;
    Ok(files)
}

/// Issues a new client CA alone into `args.out`.
fn run_client_ca(args: &ClientCaArgs) -> Result<ClientCaFiles, Error> {
    let files = ClientCaFiles::in_dir(&args.out);
    refuse_existing(&[&files.cert, &files.key])?;
    let client_ca = issue_client_ca(args.days, OffsetDateTime::now_utc())?;
    create_dir(&args.out)?;
    write_client_ca(&files, &client_ca)?;
    Ok(files)
}

fn refuse_existing(paths: &[&Path]) -> Result<(), Error> {
    match paths.iter().find(|path| path.exists()) {
        Some(existing) => Err(Error::Config(format!(
            "{} already exists; choose an empty directory",
            existing.display()
        ))),
        None => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: "create the output directory",
        path: dir.to_owned(),
        source,
    })
}

/// A client CA's certificate and key, PEM.
struct IssuedClientCa {
    cert_pem: String,
    key_pem: String,
}

fn write_client_ca(files: &ClientCaFiles, issued: &IssuedClientCa) -> Result<(), Error> {
    write_public_file(&files.cert, issued.cert_pem.as_bytes())?;
    write_private_file(&files.key, issued.key_pem.as_bytes())
}

/// A self-signed CA (ECDSA P-256, a key of its own) that may sign end-entity client
/// certificates only.
fn issue_client_ca(days: u32, now: OffsetDateTime) -> Result<IssuedClientCa, Error> {
    let failed = |what: &str, e: rcgen::Error| Error::Certificate(format!("{what}: {e}"));
    let mut params = CertificateParams::default();
    params.distinguished_name = name("IoT Session Manager client CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    let key = KeyPair::generate().map_err(|e| failed("client CA key", e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| failed("client CA certificate", e))?;
    Ok(IssuedClientCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// PEM texts of a freshly issued CA and server certificate.
struct IssuedCertificates {
    ca_cert_pem: String,
    ca_key_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn issue(hosts: &[String], days: u32, now: OffsetDateTime) -> Result<IssuedCertificates, Error> {
    let failed = |what: &str, e: rcgen::Error| Error::Certificate(format!("{what}: {e}"));
    // Backdated a little so a peer whose clock lags slightly still accepts them.
    let not_before = now - Duration::hours(1);

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("IoT Session Manager development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = now + Duration::days(i64::from(days) * 10);
    let ca_key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| failed("CA certificate", e))?;

    let mut server_params = CertificateParams::default();
    server_params.distinguished_name = name("IoT Session Manager development server");
    server_params.subject_alt_names = subject_alt_names(hosts)?;
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.not_before = not_before;
    server_params.not_after = now + Duration::days(i64::from(days));
    let server_key = KeyPair::generate().map_err(|e| failed("server key", e))?;
    let ca_cert_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|e| failed("server certificate", e))?;

    Ok(IssuedCertificates {
        ca_cert_pem,
        ca_key_pem: ca_key.serialize_pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// Writes a world-readable file; fails if it exists (as `keygen` does for private keys).
fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let io_error = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// `hosts` plus the loopback names, deduplicated, each as an IP or a DNS name.
fn subject_alt_names(hosts: &[String]) -> Result<Vec<SanType>, Error> {
    let mut seen: Vec<&str> = Vec::new();
    let all = hosts
        .iter()
        .map(|host| host.trim())
        .chain(ALWAYS_VALID_FOR)
        .filter(|host| !host.is_empty());
    for host in all {
        if !seen.contains(&host) {
            seen.push(host);
        }
    }
    seen.into_iter()
        .map(|host| match host.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => host.try_into().map(SanType::DnsName).map_err(|e| {
                Error::Config(format!(
                    "{host:?} is neither an IP address nor a DNS name: {e}"
                ))
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_include_loopback_and_each_host_once() {
        let sans =
            subject_alt_names(&["broker".into(), "localhost".into(), "10.0.0.7".into()]).unwrap();
        let rendered: Vec<String> = sans
            .iter()
            .map(|san| match san {
                SanType::DnsName(name) => name.as_str().to_owned(),
                SanType::IpAddress(ip) => ip.to_string(),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(
            rendered,
            ["broker", "localhost", "10.0.0.7", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn a_host_that_is_no_ascii_dns_name_is_refused() {
        assert!(subject_alt_names(&["exämple.org".into()]).is_err());
    }

    #[test]
    fn writes_the_development_ca_server_and_client_ca_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertsArgs {
            command: None,
            out: Some(dir.path().join("tls")),
            hosts: vec!["broker".into()],
            days: 30,
        };
        let paths = run(&args).unwrap();
        assert_eq!(paths.len(), 6);
        for path in &paths {
            assert!(path.is_file(), "{} missing", path.display());
        }
        let ca = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(run(&args).is_err(), "a second run must not overwrite");
        let files = CertificateFiles::in_dir(&dir.path().join("tls"));
        crate::client_ca::ClientCa::load(&files.client_ca.cert, &files.client_ca.key)
            .expect("the client CA loads");
        let server_key = std::fs::read_to_string(&files.server_key).unwrap();
        let client_ca_key = std::fs::read_to_string(&files.client_ca.key).unwrap();
        assert_ne!(
            server_key, client_ca_key,
            "the client CA has a key of its own"
        );
    }

    #[test]
    fn client_ca_alone_writes_two_loadable_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertsArgs {
            command: Some(CertsCommand::ClientCa(ClientCaArgs {
                out: dir.path().join("client"),
                days: 30,
            })),
            out: None,
            hosts: Vec::new(),
            days: 397,
        };
        let paths = run(&args).unwrap();
        assert_eq!(
            paths,
            [
                dir.path().join("client/client-ca.pem"),
                dir.path().join("client/client-ca.key")
            ]
        );
        crate::client_ca::ClientCa::load(&paths[0], &paths[1]).expect("loads");
        assert!(!dir.path().join("client/server.pem").exists());
        assert!(run(&args).is_err(), "a second run must not overwrite");
    }
}
