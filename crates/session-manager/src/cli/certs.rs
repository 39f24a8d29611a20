//! `session-manager certs`: a development certificate authority and one server
//! certificate signed by it, for nginx (HTTPS) and the broker's MQTT-over-TLS listener.
//!
//! Files written into `--out`:
//! - `ca.pem`: the CA certificate devices and test clients trust (`--cafile`);
//! - `ca.key`: the CA's private key (mode 0600), kept only so more certificates can be
//!   issued by hand; nothing in the stack reads it;
//! - `server.pem` / `server.key` (0600): the server certificate, valid for every `--host`
//!   plus `localhost`, `127.0.0.1` and `::1`.
//!
//! This is for development and test stacks. Production brings certificates from a real
//! CA instead (see the deployment docs); nothing here is meant to replace that. Like
//! `keygen`, it never overwrites a file: replacing a CA is a decision, not a side effect.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;
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
pub(super) struct CertsArgs {
    /// Directory to write the files into (created if missing; existing files are never
    /// overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Extra DNS name or IP address the server certificate is valid for (repeatable),
    /// e.g. the broker's and proxy's host names.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Validity of the server certificate in days (the CA gets ten times as long).
    #[arg(long, default_value_t = 397, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

/// The four files `certs` writes, as paths inside the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertificateFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl CertificateFiles {
    fn in_dir(dir: &Path) -> Self {
        CertificateFiles {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }

    fn all(&self) -> [&Path; 4] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
        ]
    }
}

/// Issues a new CA and server certificate into `args.out`; returns the paths written.
pub(super) fn run(args: &CertsArgs) -> Result<CertificateFiles, Error> {
    let files = CertificateFiles::in_dir(&args.out);
    if let Some(existing) = files.all().into_iter().find(|path| path.exists()) {
        return Err(Error::Config(format!(
            "{} already exists; choose an empty directory",
            existing.display()
        )));
    }
    let issued = issue(&args.hosts, args.days, OffsetDateTime::now_utc())?;
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
        action: "create the output directory",
        path: args.out.clone(),
        source,
    })?;
    write_public_file(&files.ca_cert, issued.ca_cert_pem.as_bytes())?;
    write_private_file(&files.ca_key, issued.ca_key_pem.as_bytes())?;
    write_public_file(&files.server_cert, issued.server_cert_pem.as_bytes())?;
    write_private_file(&files.server_key, issued.server_key_pem.as_bytes())?;
    Ok(files)
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
    fn writes_four_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertsArgs {
            out: dir.path().join("tls"),
            hosts: vec!["broker".into()],
            days: 30,
        };
        let files = run(&args).unwrap();
        for path in files.all() {
            assert!(path.is_file(), "{} missing", path.display());
        }
        let ca = std::fs::read_to_string(&files.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(run(&args).is_err(), "a second run must not overwrite");
    }
}
