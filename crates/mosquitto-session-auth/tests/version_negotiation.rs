//! The first thing a broker does with the plugin: load the built shared library and ask
//! `mosquitto_plugin_version` which interface it speaks, listing the versions the broker
//! supports. A small C host does exactly that (`dlopen`, `dlsym`, the call) with the lists
//! of a Mosquitto 2.0 broker and of brokers without the v5 interface, and prints the
//! answers. The host provides the broker functions the plugin links against as stubs; the
//! version call must not reach any of them.

use std::process::Command;

use test_support::mosquitto::plugin_path;

const HOST: &str = r#"
#include <dlfcn.h>
#include <stdio.h>

/* The broker's API the plugin imports; never called while negotiating the version. */
int mosquitto_callback_register(void) { return 1; }
int mosquitto_callback_unregister(void) { return 1; }
const char *mosquitto_client_id(void) { return 0; }
int mosquitto_client_clean_session(void) { return 1; }
int mosquitto_client_protocol_version(void) { return 4; }
int mosquitto_kick_client_by_clientid(void) { return 1; }
int mosquitto_broker_publish_copy(void) { return 1; }
void *mosquitto_client_certificate(void) { return 0; }
/* libcrypto's, which a broker process has loaded. */
int i2d_X509(void) { return -1; }
void X509_free(void) {}
void mosquitto_log_printf(int level, const char *fmt, ...) { (void)level; (void)fmt; }

typedef int (*version_fn)(int, const int *);

static void ask(version_fn version, const char *name, const int *list, int count) {
    printf("%s %d\n", name, version(count, list));
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!plugin) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    version_fn version = (version_fn)dlsym(plugin, "mosquitto_plugin_version");
    if (!version) { fprintf(stderr, "%s\n", dlerror()); return 4; }
    const int mosquitto_2_0[] = {5, 4, 3, 2};
    const int mosquitto_1_6[] = {4, 3, 2};
    const int future[] = {6};
    ask(version, "mosquitto-2.0", mosquitto_2_0, 4);
    ask(version, "mosquitto-1.6", mosquitto_1_6, 3);
    ask(version, "future", future, 1);
    ask(version, "empty", mosquitto_2_0, 0);
    return 0;
}
"#;

#[test]
fn the_built_plugin_speaks_v5_only_to_a_broker_that_lists_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("host.c");
    let host = dir.path().join("host");
    std::fs::write(&source, HOST).expect("write C source");
    let compiled = Command::new("gcc")
        .arg(&source)
        .args(["-rdynamic", "-ldl", "-o"])
        .arg(&host)
        .output()
        .expect("gcc runs (install it: apt-get install gcc)");
    assert!(
        compiled.status.success(),
        "the plugin host does not compile: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = Command::new(&host)
        .arg(plugin_path())
        .output()
        .expect("the plugin host runs");
    assert!(
        output.status.success(),
        "the plugin host could not load {}: {}",
        plugin_path().display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let answers = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        answers.lines().collect::<Vec<_>>(),
        [
            "mosquitto-2.0 5",
            "mosquitto-1.6 -1",
            "future -1",
            "empty -1"
        ]
    );
}
