//! End to end against a real Mosquitto loading the plugin: start-up configuration errors,
//! session isolation, the forgery suite and the ACL-escape suite.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use session_token::Algorithm;
use test_support::fixture_tokens::{device_claims, fixture, jwks, SigningKey, ISSUER};
use test_support::mosquitto::{plugin_path, Broker};
use test_support::mqtt_device::Device;

const WINDOW: Duration = Duration::from_millis(500);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn invalid_configuration_stops_mosquitto_with_a_message_naming_the_problem() {
    let plugin = plugin_path();
    let dir = tempfile::tempdir().expect("temp dir");
    let good_jwks = dir.path().join("jwks.json");
    std::fs::write(&good_jwks, jwks(&[&SigningKey::rsa()])).expect("write jwks");
    let cases = [
        (
            format!(
                "plugin_opt_jwks_file {}\nplugin_opt_isuer ism\n",
                good_jwks.display()
            ),
            "unknown option plugin_opt_isuer",
        ),
        (String::new(), "no key configured"),
        (
            "plugin_opt_jwks_file /nonexistent/jwks.json\n".to_owned(),
            "cannot read jwks_file /nonexistent/jwks.json",
        ),
        (
            format!(
                "plugin_opt_jwks_file {}\nplugin_opt_state_file /nonexistent/dir/state\n",
                good_jwks.display()
            ),
            "cannot write state_file /nonexistent/dir/state",
        ),
    ];
    for (options, expected) in cases {
        let settings = format!(
            "allow_anonymous false\nplugin {}\n{options}",
            plugin.display()
        );
        let (status, log) = Broker::run_until_exit(&settings);
        assert!(
            !status.success(),
            "mosquitto must not start with {options:?}"
        );
        assert!(log.contains(expected), "log lacks {expected:?}:\n{log}");
    }
}

#[test]
fn devices_of_one_session_talk_and_other_sessions_see_nothing() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let connect = |session: &str, client: &str| {
        Device::connect(
            port,
            client,
            client,
            &key.device_token(session, client, 600),
        )
        .unwrap_or_else(|e| panic!("{client} refused: {e}"))
    };
    let mut lamp = connect("111", "lamp");
    let switch = connect("111", "switch");
    let mut intruder = connect("222", "intruder");
    assert!(lamp.subscribe("/111/#"));
    assert!(intruder.subscribe("/222/#"));

    switch.publish("/111/lamp/on", b"1");
    intruder.publish("/222/x", b"elsewhere");
    let at_lamp = lamp.messages_within(WINDOW);
    assert_eq!(at_lamp, vec![("/111/lamp/on".to_owned(), b"1".to_vec())]);
    let at_intruder = intruder.messages_within(WINDOW);
    assert_eq!(
        at_intruder,
        vec![("/222/x".to_owned(), b"elsewhere".to_vec())]
    );
}

/// Every forged, stale or mismatched credential is refused, and the refusal is logged
/// with its reason but without the token.
#[test]
fn the_forgery_suite_is_refused() {
    let key = SigningKey::rsa();
    let other = SigningKey::other_rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let genuine = key.device_token("111", "dev", 600);

    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&device_claims("111", "dev", 600)).expect("claims json"))
    );
    let public_pem = fixture("rsa_public.pem");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(key.kid.clone());
    let hs256_with_public_key = encode(
        &hs_header,
        &device_claims("111", "dev", 600),
        &EncodingKey::from_secret(&public_pem),
    )
    .expect("HS256 signs");
    let mut other_key_same_kid = Header::new(Algorithm::RS256);
    other_key_same_kid.kid = Some(key.kid.clone());
    let signed_by_other_key = encode(
        &other_key_same_kid,
        &device_claims("111", "dev", 600),
        &other.encoding,
    )
    .expect("signs");
    let mut expired_claims = device_claims("111", "dev", 600);
    expired_claims.iat -= 7200;
    expired_claims.nbf -= 7200;
    expired_claims.exp = test_support::now() - 60;
    let mut future_claims = device_claims("111", "dev", 600);
    future_claims.nbf = test_support::now() + 300;
    let mut wrong_issuer = device_claims("111", "dev", 600);
    wrong_issuer.iss = format!("not-{ISSUER}");
    // MQTT carries a password of at most 65 535 bytes: a 100 KB one is a protocol error
    // the broker rejects before any plugin runs; a 60 KB one reaches the plugin.
    let huge = format!("{genuine}{}", "A".repeat(100 * 1024));
    let oversized = format!("{genuine}{}", "A".repeat(60 * 1024));

    let mut critical = Header::new(Algorithm::RS256);
    critical.kid = Some(key.kid.clone());
    critical.crit = Some(vec!["exp".into()]);
    let with_crit_header =
        encode(&critical, &device_claims("111", "dev", 600), &key.encoding).expect("signs");

    let cases: Vec<(&str, &str, &str, String)> = vec![
        ("alg none", "dev", "dev", unsigned),
        ("crit header", "dev", "dev", with_crit_header),
        (
            "HS256 with the public key",
            "dev",
            "dev",
            hs256_with_public_key,
        ),
        ("signed by another key", "dev", "dev", signed_by_other_key),
        ("expired", "dev", "dev", key.sign(&expired_claims)),
        ("nbf in the future", "dev", "dev", key.sign(&future_claims)),
        ("wrong iss", "dev", "dev", key.sign(&wrong_issuer)),
        (
            "username is not sub",
            "dev",
            "someone-else",
            genuine.clone(),
        ),
        (
            "client id is not sub",
            "someone-else",
            "dev",
            genuine.clone(),
        ),
        (
            "truncated",
            "dev",
            "dev",
            genuine[..genuine.len() - 20].to_owned(),
        ),
        ("garbage", "dev", "dev", "not a token at all".to_owned()),
        ("100 KB token", "dev", "dev", huge),
        ("60 KB token", "dev", "dev", oversized),
        (
            "unknown kid",
            "dev",
            "dev",
            other.device_token("111", "dev", 600),
        ),
        ("no password", "dev", "dev", String::new()),
    ];
    for (name, client_id, username, token) in &cases {
        let outcome = Device::connect(port, client_id, username, token);
        assert!(outcome.is_err(), "{name}: must be refused");
    }
    let log = broker.log();
    let refusals = log
        .matches("mosquitto-session-auth: refused client")
        .count();
    assert_eq!(
        refusals,
        cases.len() - 1,
        "one log line per refusal the plugin sees (all but the 100 KB one):\n{log}"
    );
    assert!(log.contains("token is longer than"), "{log}");
    assert!(
        log.contains("marks extensions [\"exp\"] as critical"),
        "{log}"
    );
    let signature = genuine.rsplit('.').next().expect("signature part");
    assert!(
        !log.contains(signature),
        "the log must never contain a token"
    );

    // And the genuine token still works, so the refusals were about the forgeries.
    Device::connect(port, "dev", "dev", &genuine).expect("genuine token admitted");
}

#[test]
fn a_pem_public_key_and_ec_tokens_work_too() {
    let key = SigningKey::ec();
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("ec_public.pem");
    std::fs::write(&pem, fixture("ec_public.pem")).expect("write pem");
    let settings = format!(
        "allow_anonymous false\nplugin {}\nplugin_opt_public_key_file {}\nplugin_opt_state_file {}\n",
        plugin_path().display(),
        pem.display(),
        dir.path().join("state").display()
    );
    let broker = Broker::start(dir, &settings);
    let token = key.device_token("333", "sensor", 600);
    Device::connect(broker.port(), "sensor", "sensor", &token).expect("EC token admitted");
    let rsa_token = SigningKey::rsa().device_token("333", "sensor", 600);
    assert!(Device::connect(broker.port(), "sensor", "sensor", &rsa_token).is_err());
}

#[test]
fn the_older_client_id_option_still_admits_free_ids() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[("require_client_id_match", "false")]);
    let token = key.device_token("111", "dev", 600);
    Device::connect(broker.port(), "random-client-id", "dev", &token)
        .expect("admitted with any client id");
    assert!(Device::connect(broker.port(), "dev", "other", &token).is_err());
}

/// Subscriptions outside the session are refused in the SUBACK; publishes outside it reach
/// no one, not even an observer allowed to see everything.
#[test]
fn the_acl_escape_suite_is_denied() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut device = Device::connect(port, "dev", "dev", &key.device_token("111", "dev", 600))
        .expect("device admitted");

    for filter in ["#", "+/#", "/+/#", "/OTHER/#", "$SYS/#", "/111", "+/111/#"] {
        assert!(
            !device.subscribe(filter),
            "subscribe {filter} must be refused"
        );
    }
    assert!(
        device.subscribe("/111/+/x"),
        "a filter inside the session is granted"
    );

    let mut observer_claims = device_claims("0", "observer", 600);
    observer_claims.subs = vec!["#".into(), "$SYS/#".into()];
    observer_claims.publ = vec![];
    let mut observer = Device::connect(port, "observer", "observer", &key.sign(&observer_claims))
        .expect("observer admitted");
    assert!(observer.subscribe("#"));
    assert!(observer.subscribe("$SYS/#"));
    let mut other_session = Device::connect(
        port,
        "other",
        "other",
        &key.device_token("OTHER", "other", 600),
    )
    .expect("other admitted");
    assert!(other_session.subscribe("/OTHER/#"));
    // Let the broker's own $SYS announcements settle before counting.
    let _ = observer.messages_within(Duration::from_millis(200));

    for topic in ["/OTHER/x", "$SYS/x", "/111"] {
        device.publish(topic, b"escape");
    }
    device.publish("/111/done", b"marker");
    let seen_before_marker = observer
        .wait_for_message("/111/done", Duration::from_secs(5))
        .expect("the allowed publish arrives");
    let escaped: Vec<_> = seen_before_marker
        .iter()
        .filter(|t| !t.starts_with("$SYS/broker/"))
        .collect();
    assert!(
        escaped.is_empty(),
        "denied publishes were delivered: {escaped:?}"
    );
    assert!(other_session.messages_within(WINDOW).is_empty());
}

/// A shared subscription is judged by its filter: inside the session it is granted and
/// delivers, outside it (or with a malformed group) it is refused.
#[test]
fn shared_subscriptions_are_allowed_inside_the_session_only() {
    let key = SigningKey::rsa();
    let broker = Broker::with_plugin(&jwks(&[&key]), &[]);
    let port = broker.port();
    let mut worker = Device::connect(
        port,
        "worker",
        "worker",
        &key.device_token("111", "worker", 600),
    )
    .expect("worker admitted");
    for filter in [
        "$share/g/#",
        "$share/g//222/#",
        "$share/g/+/#",
        "$share/g/$SYS/#",
        "$share/+//111/#",
        "$share//111/#",
    ] {
        assert!(
            !worker.subscribe(filter),
            "subscribe {filter} must be refused"
        );
    }
    assert!(worker.subscribe("$share/workers//111/jobs/#"));
    let boss = Device::connect(port, "boss", "boss", &key.device_token("111", "boss", 600))
        .expect("boss admitted");
    boss.publish("/111/jobs/1", b"do it");
    assert_eq!(
        worker.messages_within(WINDOW),
        vec![("/111/jobs/1".to_owned(), b"do it".to_vec())]
    );
}
