//! The structs `ffi.rs` mirrors must match the broker's headers byte for byte: a small C
//! program compiled against the installed `mosquitto_broker.h` / `mosquitto_plugin.h`
//! prints every size and field offset, and they are compared with the Rust side.

use std::mem::{offset_of, size_of};
use std::process::Command;

use mosquitto_session_auth::ffi::{
    self, EvtAclCheck, EvtBasicAuth, EvtControl, EvtDisconnect, EvtTick, MosquittoOpt,
};

const HEADERS: [&str; 2] = [
    "/usr/include/mosquitto_broker.h",
    "/usr/include/mosquitto_plugin.h",
];

/// (struct, field or "" for the size, value)
fn rust_layout() -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("mosquitto_opt", "", size_of::<MosquittoOpt>()),
        ("mosquitto_opt", "key", offset_of!(MosquittoOpt, key)),
        ("mosquitto_opt", "value", offset_of!(MosquittoOpt, value)),
        ("mosquitto_evt_basic_auth", "", size_of::<EvtBasicAuth>()),
        (
            "mosquitto_evt_basic_auth",
            "client",
            offset_of!(EvtBasicAuth, client),
        ),
        (
            "mosquitto_evt_basic_auth",
            "username",
            offset_of!(EvtBasicAuth, username),
        ),
        (
            "mosquitto_evt_basic_auth",
            "password",
            offset_of!(EvtBasicAuth, password),
        ),
        ("mosquitto_evt_acl_check", "", size_of::<EvtAclCheck>()),
        (
            "mosquitto_evt_acl_check",
            "client",
            offset_of!(EvtAclCheck, client),
        ),
        (
            "mosquitto_evt_acl_check",
            "topic",
            offset_of!(EvtAclCheck, topic),
        ),
        (
            "mosquitto_evt_acl_check",
            "payload",
            offset_of!(EvtAclCheck, payload),
        ),
        (
            "mosquitto_evt_acl_check",
            "properties",
            offset_of!(EvtAclCheck, properties),
        ),
        (
            "mosquitto_evt_acl_check",
            "access",
            offset_of!(EvtAclCheck, access),
        ),
        (
            "mosquitto_evt_acl_check",
            "payloadlen",
            offset_of!(EvtAclCheck, payloadlen),
        ),
        (
            "mosquitto_evt_acl_check",
            "qos",
            offset_of!(EvtAclCheck, qos),
        ),
        (
            "mosquitto_evt_acl_check",
            "retain",
            offset_of!(EvtAclCheck, retain),
        ),
        ("mosquitto_evt_control", "", size_of::<EvtControl>()),
        (
            "mosquitto_evt_control",
            "client",
            offset_of!(EvtControl, client),
        ),
        (
            "mosquitto_evt_control",
            "topic",
            offset_of!(EvtControl, topic),
        ),
        (
            "mosquitto_evt_control",
            "payload",
            offset_of!(EvtControl, payload),
        ),
        (
            "mosquitto_evt_control",
            "properties",
            offset_of!(EvtControl, properties),
        ),
        (
            "mosquitto_evt_control",
            "reason_string",
            offset_of!(EvtControl, reason_string),
        ),
        (
            "mosquitto_evt_control",
            "payloadlen",
            offset_of!(EvtControl, payloadlen),
        ),
        ("mosquitto_evt_control", "qos", offset_of!(EvtControl, qos)),
        (
            "mosquitto_evt_control",
            "reason_code",
            offset_of!(EvtControl, reason_code),
        ),
        (
            "mosquitto_evt_control",
            "retain",
            offset_of!(EvtControl, retain),
        ),
        ("mosquitto_evt_disconnect", "", size_of::<EvtDisconnect>()),
        (
            "mosquitto_evt_disconnect",
            "client",
            offset_of!(EvtDisconnect, client),
        ),
        (
            "mosquitto_evt_disconnect",
            "reason",
            offset_of!(EvtDisconnect, reason),
        ),
        ("mosquitto_evt_tick", "", size_of::<EvtTick>()),
        ("mosquitto_evt_tick", "now_ns", offset_of!(EvtTick, now_ns)),
        (
            "mosquitto_evt_tick",
            "next_ns",
            offset_of!(EvtTick, next_ns),
        ),
        ("mosquitto_evt_tick", "now_s", offset_of!(EvtTick, now_s)),
        ("mosquitto_evt_tick", "next_s", offset_of!(EvtTick, next_s)),
    ]
}

/// The constants the shell uses, by their C names.
const CONSTANTS: &[(&str, i32)] = &[
    ("MOSQ_PLUGIN_VERSION", ffi::MOSQ_PLUGIN_VERSION),
    ("MOSQ_ERR_SUCCESS", ffi::MOSQ_ERR_SUCCESS),
    ("MOSQ_ERR_INVAL", ffi::MOSQ_ERR_INVAL),
    ("MOSQ_ERR_AUTH", ffi::MOSQ_ERR_AUTH),
    ("MOSQ_ERR_ACL_DENIED", ffi::MOSQ_ERR_ACL_DENIED),
    ("MOSQ_ERR_UNKNOWN", ffi::MOSQ_ERR_UNKNOWN),
    ("MOSQ_ERR_PLUGIN_DEFER", ffi::MOSQ_ERR_PLUGIN_DEFER),
    ("MOSQ_EVT_RELOAD", ffi::MOSQ_EVT_RELOAD),
    ("MOSQ_EVT_ACL_CHECK", ffi::MOSQ_EVT_ACL_CHECK),
    ("MOSQ_EVT_BASIC_AUTH", ffi::MOSQ_EVT_BASIC_AUTH),
    ("MOSQ_EVT_CONTROL", ffi::MOSQ_EVT_CONTROL),
    ("MOSQ_EVT_TICK", ffi::MOSQ_EVT_TICK),
    ("MOSQ_EVT_DISCONNECT", ffi::MOSQ_EVT_DISCONNECT),
    ("MOSQ_ACL_READ", ffi::MOSQ_ACL_READ),
    ("MOSQ_ACL_WRITE", ffi::MOSQ_ACL_WRITE),
    ("MOSQ_ACL_SUBSCRIBE", ffi::MOSQ_ACL_SUBSCRIBE),
    ("MOSQ_ACL_UNSUBSCRIBE", ffi::MOSQ_ACL_UNSUBSCRIBE),
    ("MOSQ_LOG_INFO", ffi::MOSQ_LOG_INFO),
    ("MOSQ_LOG_NOTICE", ffi::MOSQ_LOG_NOTICE),
    ("MOSQ_LOG_WARNING", ffi::MOSQ_LOG_WARNING),
    ("MOSQ_LOG_ERR", ffi::MOSQ_LOG_ERR),
];

#[test]
fn mirrored_structs_and_constants_match_the_installed_headers() {
    for header in HEADERS {
        assert!(
            std::path::Path::new(header).exists(),
            "{header} not found; install it: apt-get install mosquitto-dev libmosquitto-dev"
        );
    }
    let layout = rust_layout();
    let mut program = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <mosquitto.h>\n#include <mosquitto_broker.h>\n#include <mosquitto_plugin.h>\nint main(void) {\n",
    );
    for (name, field, _) in &layout {
        if field.is_empty() {
            program.push_str(&format!(
                "printf(\"{name}. %zu\\n\", sizeof(struct {name}));\n"
            ));
        } else {
            program.push_str(&format!(
                "printf(\"{name}.{field} %zu\\n\", offsetof(struct {name}, {field}));\n"
            ));
        }
    }
    for (name, _) in CONSTANTS {
        program.push_str(&format!("printf(\"{name} %d\\n\", (int){name});\n"));
    }
    program.push_str("return 0;\n}\n");

    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("layout.c");
    let binary = dir.path().join("layout");
    std::fs::write(&source, program).expect("write C source");
    let compiled = Command::new("gcc")
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .expect("gcc runs (install it: apt-get install gcc)");
    assert!(
        compiled.status.success(),
        "the layout probe does not compile (install mosquitto-dev and libmosquitto-dev): {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = Command::new(&binary).output().expect("layout probe runs");
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let c_values: std::collections::HashMap<&str, i64> = printed
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(k, v)| (k, v.parse().expect("number")))
        .collect();

    for (name, field, rust) in layout {
        let key = format!("{name}.{field}");
        assert_eq!(
            c_values.get(key.as_str()).copied(),
            Some(rust as i64),
            "{key}: C and Rust disagree"
        );
    }
    for &(name, rust) in CONSTANTS {
        assert_eq!(c_values.get(name).copied(), Some(i64::from(rust)), "{name}");
    }
}
