//! `kms_jwt_auth` end to end: the real `session-manager` binary signing with a KMS key
//! served by moto (a real KMS API on loopback: CreateKey, GetPublicKey and Sign with real
//! RSA and P-256 signatures), and a real Mosquitto with our plugin admitting a device
//! with the exported public key; and a client certificate, signed by the local client CA,
//! around a KMS-signed token.
//!
//! moto runs through `tests/support/moto_kms_server.py`, which keeps key material across a
//! moto restart (see that file), so the outage test can stop KMS, watch joins fail fast
//! with 503, start it again on the same port and watch the service recover by itself.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use reqwest::StatusCode;
use serde_json::{json, Value};
use session_token::{Claims, KeySet, TokenVerifier};
use test_support::mosquitto::{plugin_path, Broker};
use test_support::mqtt_device::Device;
use test_support::now;
use test_support::service::{self, Launch};
use test_support::session_api::{self, CreatedSession};
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
const REGION: &str = "us-east-1";
const INSTALL_HINT: &str =
    "run scripts/test, or: python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that has moto: `ISM_TEST_PYTHON` (set by scripts/test) or the project venv.
fn moto_python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin");
    let python = match std::env::var_os("ISM_TEST_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => {
            assert!(
                venv.join("moto_server").exists(),
                "moto is missing ({} not found): {INSTALL_HINT}",
                venv.join("moto_server").display()
            );
            venv.join("python")
        }
    };
    let has_moto = Command::new(&python)
        .args(["-c", "import moto.server, moto.kms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        has_moto,
        "{} cannot import moto: {INSTALL_HINT}",
        python.display()
    );
    python
}

/// moto's KMS server on 127.0.0.1, first on a port the kernel chooses (port 0, read back
/// from moto's log), then, after a [`stop`](Moto::stop), again on that same port, where
/// the service expects KMS; killed on drop.
struct Moto {
    child: Option<Child>,
    port: u16,
    state: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let mut moto = Moto {
            child: None,
            port: 0,
            state: tempfile::tempdir().unwrap(),
        };
        moto.launch();
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_kms_server.py");
        let log = std::fs::File::create(self.state.path().join("moto.log")).unwrap();
        let mut child = Command::new(moto_python())
            .arg(script)
            .arg(self.state.path().join("keys"))
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Our own moto says where it listens; a connect alone could reach another process.
        let port = loop {
            if let Some(port) = self.announced_port() {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break port;
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("moto exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            self.port == 0 || self.port == port,
            "moto came back on port {port}, not {}",
            self.port
        );
        self.port = port;
        self.child = Some(child);
    }

    /// The port of moto's ` * Running on http://127.0.0.1:<port>` log line.
    fn announced_port(&self) -> Option<u16> {
        let log = self.log();
        let (_, rest) = log.split_once("Running on http://127.0.0.1:")?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("moto.log")).unwrap_or_default()
    }

    fn client(&self) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// Creates a key of `spec` and points `alias` at it; returns the alias.
    async fn create_key(&self, spec: KeySpec, usage: KeyUsageType, alias: &str) -> String {
        let client = self.client();
        let key = client
            .create_key()
            .key_spec(spec)
            .key_usage(usage)
            .send()
            .await
            .expect("CreateKey");
        let key_id = key
            .key_metadata()
            .expect("key metadata")
            .key_id()
            .to_owned();
        client
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
            .expect("CreateAlias");
        alias.to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service in kms mode against `moto`.
fn kms_launch(moto: &Moto, key_id: &str, data_dir: &Path) -> Launch {
    Launch::new()
        .data_dir(data_dir)
        .env("MQTT_AUTH_MODE", "kms_jwt_auth")
        .env("ISM_KMS_KEY_ID", key_id)
        .env("ISM_KMS_TIMEOUT_MS", "1000")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// The service binary in kms mode; killed on drop.
struct Service {
    admin: String,
    public: String,
    http: reqwest::Client,
    _process: service::Service,
    _data_dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service; `Err` carries its exit status and log when it refuses to start.
    fn start(moto: &Moto, key_id: &str) -> Result<Service, String> {
        let data_dir = tempfile::tempdir().unwrap();
        let process = kms_launch(moto, key_id, data_dir.path())
            .try_start()
            .map_err(|refusal| refusal.to_string())?;
        Ok(Service {
            admin: process.admin.clone(),
            public: process.public.clone(),
            http: reqwest::Client::new(),
            _process: process,
            _data_dir: data_dir,
        })
    }

    async fn create_session(&self) -> CreatedSession {
        session_api::create_session(&self.http, &self.admin, &json!({})).await
    }

    async fn join(&self, session: &CreatedSession, client: &str) -> reqwest::Response {
        session_api::join(&self.http, &self.public, &session.id, &session.pin, client).await
    }

    async fn token(&self, session: &CreatedSession, client: &str) -> String {
        let response = self.join(session, client).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    async fn jwks(&self) -> KeySet {
        let text = session_api::jwks(&self.http, &self.public).await;
        KeySet::from_jwks_json(&text).unwrap()
    }

    async fn admin_health(&self) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/healthz", self.admin))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

fn verify(keys: KeySet, token: &str) -> Claims {
    TokenVerifier::new(keys)
        .with_issuer("ism")
        .verify(token, now())
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
}

/// Runs `export-public-key` against the same KMS key; returns the output directory.
fn export_public_key(moto: &Moto, key_id: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let output = kms_launch(moto, key_id, data_dir.path()).output([
        "export-public-key".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "export-public-key failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

async fn tokens_verify_against_the_served_jwks(spec: KeySpec, algorithm: jsonwebtoken::Algorithm) {
    let moto = Moto::start();
    let key = moto
        .create_key(spec, KeyUsageType::SignVerify, "alias/ism-tokens")
        .await;
    let service = Service::start(&moto, &key).expect("service starts in kms mode");
    let session = service.create_session().await;
    let token = service.token(&session, "lamp-1").await;

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, algorithm);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let claims = verify(service.jwks().await, &token);
    assert_eq!(claims.sub, "lamp-1");
    assert_eq!(claims.sid, session.id);

    // The exported files name the same key with the same kid.
    let exported = export_public_key(&moto, &key);
    let pem = std::fs::read(exported.path().join("public_key.pem")).unwrap();
    let from_pem = KeySet::from_public_key_pem(&pem).unwrap();
    assert!(from_pem.find(header.kid.as_deref().unwrap()).is_some());
    verify(from_pem, &token);
    let jwks = std::fs::read_to_string(exported.path().join("jwks.json")).unwrap();
    verify(KeySet::from_jwks_json(&jwks).unwrap(), &token);

    let (status, health) = service.admin_health().await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["signer"]["ready"], true, "{health}");
}

#[tokio::test]
async fn an_rsa_key_issues_rs256_tokens_that_verify_against_the_jwks() {
    tokens_verify_against_the_served_jwks(KeySpec::Rsa2048, jsonwebtoken::Algorithm::RS256).await;
}

#[tokio::test]
async fn a_p256_key_issues_es256_tokens_that_verify_against_the_jwks() {
    tokens_verify_against_the_served_jwks(KeySpec::EccNistP256, jsonwebtoken::Algorithm::ES256)
        .await;
}

#[tokio::test]
async fn keys_that_cannot_sign_tokens_stop_the_service_with_a_clear_message() {
    let moto = Moto::start();
    let p384 = moto
        .create_key(KeySpec::EccNistP384, KeyUsageType::SignVerify, "alias/p384")
        .await;
    let error = Service::start(&moto, &p384)
        .err()
        .expect("a P-384 key is refused");
    assert!(error.contains("cannot sign tokens"), "{error}");
    assert!(error.contains("ECC_NIST_P256"), "{error}");

    let encryption = moto
        .create_key(
            KeySpec::Rsa2048,
            KeyUsageType::EncryptDecrypt,
            "alias/encryption",
        )
        .await;
    let error = Service::start(&moto, &encryption)
        .err()
        .expect("an encryption key is refused");
    assert!(error.contains("SIGN_VERIFY"), "{error}");

    let error = Service::start(&moto, "alias/does-not-exist")
        .err()
        .expect("a missing key is refused");
    assert!(error.contains("alias/does-not-exist"), "{error}");
}

#[tokio::test]
async fn a_kms_outage_answers_503_quickly_and_the_service_recovers_by_itself() {
    let mut moto = Moto::start();
    let key = moto
        .create_key(
            KeySpec::Rsa2048,
            KeyUsageType::SignVerify,
            "alias/ism-tokens",
        )
        .await;
    let service = Service::start(&moto, &key).expect("service starts in kms mode");
    let session = service.create_session().await;
    let before = service.token(&session, "lamp-1").await;
    let keys = service.jwks().await;
    verify(keys.clone(), &before);

    moto.stop();
    let started = Instant::now();
    let response = service.join(&session, "lamp-2").await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "signer_unavailable", "{body}");
    // ISM_KMS_TIMEOUT_MS=1000: the whole call is bounded by 2 s, retries included.
    assert!(elapsed < Duration::from_secs(3), "503 after {elapsed:?}");
    let (status, health) = service.admin_health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["signer"]["ready"], false, "{health}");

    // The service stays up meanwhile: admin and JWKS still answer.
    assert!(service
        .jwks()
        .await
        .find(
            jsonwebtoken::decode_header(&before)
                .unwrap()
                .kid
                .as_deref()
                .unwrap()
        )
        .is_some());
    let _ = service.create_session().await;

    // KMS is back on the same port; moto forgot its keys, so the key is created again
    // (with the same material, see tests/support/moto_kms_server.py) under the same alias.
    moto.launch();
    moto.create_key(
        KeySpec::Rsa2048,
        KeyUsageType::SignVerify,
        "alias/ism-tokens",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let response = service.join(&session, "lamp-2").await;
        if response.status() == StatusCode::OK {
            let body: Value = response.json().await.unwrap();
            break body["token"].as_str().unwrap().to_owned();
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "no recovery within 10 s of KMS coming back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(verify(keys, &after).sub, "lamp-2");
    let (status, health) = service.admin_health().await;
    assert_eq!(status, StatusCode::OK, "{health}");
}

/// Mosquitto loading our plugin with the exported `public_key.pem`.
fn broker_with_public_key(public_key_pem: &Path) -> Broker {
    let settings = format!(
        "allow_anonymous false\nplugin {}\nplugin_opt_public_key_file {}\nplugin_opt_issuer ism\n",
        plugin_path().display(),
        public_key_pem.display()
    );
    Broker::start(tempfile::tempdir().unwrap(), &settings)
}

/// Connects to `broker` as `client` with `token`; Ok when the broker accepts.
fn connect(broker: &Broker, client: &str, token: &str) -> Result<(), String> {
    Device::connect(broker.port(), client, client, token).map(drop)
}

#[tokio::test]
async fn mosquitto_with_the_exported_kms_key_admits_the_device() {
    for spec in [KeySpec::Rsa2048, KeySpec::EccNistP256] {
        let moto = Moto::start();
        let key = moto
            .create_key(spec.clone(), KeyUsageType::SignVerify, "alias/ism-tokens")
            .await;
        let service = Service::start(&moto, &key).expect("service starts in kms mode");
        let session = service.create_session().await;
        let token = service.token(&session, "sensor-7").await;
        let exported = export_public_key(&moto, &key);
        let broker = broker_with_public_key(&exported.path().join("public_key.pem"));

        let admitted = tokio::task::spawn_blocking({
            let token = token.clone();
            move || {
                let admitted = connect(&broker, "sensor-7", &token);
                let impostor = connect(&broker, "sensor-8", &token);
                (admitted, impostor)
            }
        })
        .await
        .unwrap();
        assert_eq!(admitted.0, Ok(()), "{spec:?}: the device is refused");
        assert!(
            admitted.1.is_err(),
            "{spec:?}: another client name got in with the token"
        );
    }
}

#[tokio::test]
async fn in_kms_mode_a_client_certificate_carries_the_kms_signed_token() {
    let moto = Moto::start();
    let key = moto
        .create_key(
            KeySpec::EccNistP256,
            KeyUsageType::SignVerify,
            "alias/ism-tokens",
        )
        .await;
    // The client CA is a local key whatever the mode: `certs client-ca` writes it.
    let client_ca = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let output = kms_launch(&moto, &key, scratch.path()).output([
        "certs".as_ref(),
        "client-ca".as_ref(),
        "--out".as_ref(),
        client_ca.path().as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "certs client-ca failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data_dir = tempfile::tempdir().unwrap();
    let process = kms_launch(&moto, &key, data_dir.path())
        .env(
            "ISM_CLIENT_CA_CERT_FILE",
            client_ca.path().join("client-ca.pem"),
        )
        .env(
            "ISM_CLIENT_CA_KEY_FILE",
            client_ca.path().join("client-ca.key"),
        )
        .start();
    let http = reqwest::Client::new();
    let session = session_api::create_session(&http, &process.admin, &json!({})).await;
    let device_key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&device_key)
        .unwrap()
        .pem()
        .unwrap();
    let response = http
        .post(format!(
            "{}/api/v1/sessions/{}/join",
            process.public, session.id
        ))
        .json(&json!({ "pin": session.pin, "client": "lamp-1", "csr": csr }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let keys = KeySet::from_jwks_json(&session_api::jwks(&http, &process.public).await).unwrap();
    verify(keys, token);

    let certificate_pem = pem::parse(body["certificate"].as_str().unwrap()).unwrap();
    let (_, certificate) = X509Certificate::from_der(certificate_pem.contents()).unwrap();
    let oid = Oid::from(&session_token::TOKEN_EXTENSION_OID).unwrap();
    let extension = certificate.get_extension_unique(&oid).unwrap().unwrap();
    assert_eq!(
        extension.value,
        session_token::token_extension_value(token),
        "the certificate carries the KMS-signed token"
    );
    let ca_pem = std::fs::read_to_string(client_ca.path().join("client-ca.pem")).unwrap();
    let ca_der = pem::parse(ca_pem).unwrap();
    let (_, ca) = X509Certificate::from_der(ca_der.contents()).unwrap();
    certificate
        .verify_signature(Some(ca.public_key()))
        .expect("signed by the local client CA");
}
