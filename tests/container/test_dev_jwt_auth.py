"""The default environment (dev_jwt_auth, dev proxy) as a new user brings it up: README and
docs/DEPLOYMENT.md followed literally (the marked blocks run unchanged), then everything a
deployment must survive: restarts of each service and of the whole stack, down + up, the
documented subcommands and key rotation, an admin key, a change of ISM_JWT_ALG, and a start
without `.env`. The tests run in file order and share one stack.
"""

import json
import os
import re
import time

import pytest
import requests

from conftest import LOOPBACK_BINDS
from doc_blocks import doc_block
from stack_checks import (Endpoints, check_messages_flow, close_session, connect_device,
                          create_session, full_session_check, join, published_ports,
                          refused_with, unique, wait_until)

DEPLOYMENT = "docs/DEPLOYMENT.md"
endpoints = Endpoints()


def service_log_lines(compose):
    """The service's JSON log records (compose prefixes each line with the container)."""
    records = []
    for line in compose.logs("session-manager").splitlines():
        _, _, text = line.partition("| ")
        if text.startswith("{"):
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError:
                pass
    return records


def test_quickstart_builds_and_every_service_becomes_healthy(compose):
    compose.shell(doc_block(DEPLOYMENT, "quickstart-env"))
    compose.set_env(**LOOPBACK_BINDS)
    compose.shell(doc_block(DEPLOYMENT, "quickstart-up"), timeout=3600)
    compose.wait_healthy()


def test_ports_are_the_documented_ones(compose):
    assert published_ports(compose, "session-manager") == {"50001/tcp": "127.0.0.1:50001"}
    assert published_ports(compose, "broker") == {"1883/tcp": "127.0.0.1:1883",
                                                  "8883/tcp": "127.0.0.1:8883",
                                                  "8884/tcp": "127.0.0.1:8884"}
    assert published_ports(compose, "proxy") == {"80/tcp": "127.0.0.1:80",
                                                 "443/tcp": "127.0.0.1:443"}


def test_images_carry_stripped_binaries(compose):
    size = compose.run("exec", "-T", "session-manager", "stat", "-c", "%s",
                       "/usr/local/bin/session-manager-bin").stdout.strip()
    assert int(size) < 50_000_000, f"service binary is {size} bytes"
    plugin = compose.run("exec", "-T", "broker", "stat", "-c", "%s",
                         "/usr/lib/mosquitto-session-auth/libmosquitto_session_auth.so")
    assert int(plugin.stdout.strip()) < 10_000_000, f"plugin is {plugin.stdout} bytes"


def test_the_ca_file_command_and_the_whole_check_from_the_docs(compose):
    result = compose.shell(doc_block(DEPLOYMENT, "ca-file") + "\n" + doc_block(DEPLOYMENT, "check"),
                           timeout=120)
    lines = result.stdout.splitlines()
    assert any(re.fullmatch(r"/\d+/light on", line) for line in lines), result.stdout
    assert "All subscription requests were denied." in lines, result.stdout
    assert lines[-2:] == ["401", "404"], result.stdout
    endpoints.ca_file = f"{compose.directory}/ca.pem"


def test_sessions_joins_mqtt_on_every_transport_isolation_and_close(compose):
    full_session_check(endpoints)


def test_broker_log_lines_reach_docker_logs_within_a_second(compose):
    name = unique("log-probe")
    session_id, pin = create_session(endpoints)
    before = compose.logs("broker").count(name)
    device = connect_device(endpoints, "tcp", session_id, pin, name)
    try:
        deadline = time.monotonic() + 1.0
        while compose.logs("broker").count(name) == before:
            assert time.monotonic() < deadline, "the broker's connect line is not in its log after 1 s"
            time.sleep(0.05)
    finally:
        device.close()


def test_a_quiet_log_health_checks_and_start_up_make_no_noise(compose):
    # Two health-check intervals (10 s each) after the stack came up.
    time.sleep(21)
    broker_log = compose.logs("broker")
    assert "127.0.0.1" not in broker_log, "health checks show up in the broker log:\n" + broker_log[-2000:]
    proxy_log = compose.logs("proxy")
    assert "127.0.0.1 - " not in proxy_log, "health checks show up in the proxy log"
    records = service_log_lines(compose)
    assert records, "no JSON log records from the service"
    healthz = [r for r in records if "/healthz" in json.dumps(r) and r.get("level") == "INFO"]
    assert not healthz, f"/healthz logged at INFO: {healthz[:2]}"
    # Expected warnings: no admin key (the default), and the wrong PINs the tests sent.
    warnings = [r for r in records if r.get("level") in ("WARN", "ERROR")
                and "ISM_ADMIN_API_KEY_HASH" not in json.dumps(r)
                and not r.get("message", "").startswith("join refused")]
    assert not warnings, f"warnings during a normal start: {warnings[:3]}"


def test_documented_subcommands_run_in_the_running_container(compose):
    result = compose.shell(doc_block(DEPLOYMENT, "subcommands"), timeout=120)
    # The commands print the files they wrote; `cat` prints the JWKS between them.
    exported = json.loads(re.search(r"^\{$.*?^\}$", result.stdout, re.M | re.S).group(0))
    served = requests.get(f"{endpoints.public_url}/.well-known/jwks.json", timeout=10).json()
    assert {k["kid"] for k in exported["keys"]} <= {k["kid"] for k in served["keys"]}, \
        "export-public-key exported another key than the one the service publishes"
    assert "private_key.pem" in compose.run("exec", "-T", "session-manager", "ls",
                                            "/tmp/spare-key").stdout


def test_closed_session_stays_closed_across_every_kind_of_restart(compose):
    session_id, pin = create_session(endpoints)
    device = connect_device(endpoints, "tcp", session_id, pin)
    close_session(endpoints, session_id)
    wait_until(lambda: not device.connected.is_set(), 5, "device disconnected by the close")
    device.close()
    for command in (("restart", "broker"), ("restart", "session-manager"), ("restart",)):
        compose.run(*command, timeout=300)
        compose.wait_healthy()
        for transport in ("tcp", "tls", "ws"):
            assert refused_with(endpoints, transport, device.joined, device.name), \
                f"closed session's token admitted over {transport} after `{' '.join(command)}`"


def test_data_is_kept_across_down_and_up(compose):
    session_id, pin = create_session(endpoints)
    name = unique("keeper")
    joined = join(endpoints, session_id, pin, name)
    compose.run("down", timeout=300)
    compose.run("up", "-d", timeout=600)
    compose.wait_healthy()
    view = requests.get(f"{endpoints.admin_url}/api/v1/sessions/{session_id}",
                        headers=endpoints.admin_headers(), timeout=10)
    assert view.status_code == 200, view.text
    assert not refused_with(endpoints, "tcp", joined, name), "a valid token refused after down+up"
    full_session_check(endpoints, transports=("tcp", "ws"))


def test_admin_key_made_with_compose_run_while_the_stack_is_up(compose):
    result = compose.shell(doc_block(DEPLOYMENT, "admin-key") + '\necho "KEY=$KEY" >&2')
    hash_value = result.stdout.strip().splitlines()[-1]
    key = re.search(r"^KEY=(\S+)$", result.stderr, re.M).group(1)
    assert hash_value.startswith("'$argon2id$") and hash_value.endswith("'"), hash_value
    compose.set_env(ISM_ADMIN_API_KEY_HASH=hash_value, ISM_ADMIN_INSECURE="false")
    compose.run("up", "-d", "session-manager", timeout=300)
    compose.wait_healthy()
    anonymous = requests.get(f"{endpoints.admin_url}/api/v1/sessions", timeout=10)
    assert anonymous.status_code == 401
    assert "Authorization: Bearer" in anonymous.text, anonymous.text
    endpoints.admin_key = key
    assert requests.get(f"{endpoints.admin_url}/api/v1/sessions",
                        headers=endpoints.admin_headers(), timeout=10).status_code == 200


def test_documented_key_rotation_keeps_old_devices_and_admits_new_ones(compose):
    session_id, pin = create_session(endpoints)
    old = connect_device(endpoints, "tcp", session_id, pin, unique("old-key"))
    old_kid = requests.get(f"{endpoints.public_url}/.well-known/jwks.json", timeout=10).json()["keys"][0]["kid"]
    try:
        compose.shell(doc_block(DEPLOYMENT, "rotation-keygen"), timeout=120)
        apply_env_block(compose, doc_block(DEPLOYMENT, "rotation-env"))
        compose.shell(doc_block(DEPLOYMENT, "rotation-apply"), timeout=300)
        compose.wait_healthy()
        kids = [k["kid"] for k in requests.get(f"{endpoints.public_url}/.well-known/jwks.json",
                                               timeout=10).json()["keys"]]
        assert len(kids) == 2 and kids[1] == old_kid, kids

        # New joins are signed by the new key; the broker admits them after its next poll.
        name = unique("new-key")
        joined = join(endpoints, session_id, pin, name)
        wait_until(lambda: not refused_with(endpoints, "tcp", joined, name), 15,
                   "a token of the new key admitted")
        new = connect_device(endpoints, "ws", session_id, pin, unique("new-key"))
        assert old.connected.is_set(), "the old key's device was cut off by the rotation"
        check_messages_flow([old, new], session_id)
        new.close()

        apply_env_block(compose, doc_block(DEPLOYMENT, "rotation-retire-env"))
        compose.shell(doc_block(DEPLOYMENT, "rotation-retire-apply"), timeout=300)
        compose.wait_healthy()
        wait_until(lambda: not old.connected.is_set(), 20,
                   "the retired key's device disconnected")
    finally:
        old.close()


def apply_env_block(compose, block):
    settings = dict(line.split("=", 1) for line in block.splitlines()
                    if re.match(r"^[A-Z0-9_]+=", line))
    compose.set_env(**settings)


def test_changing_the_algorithm_after_the_first_start_does_not_crash_loop(compose):
    compose.set_env(ISM_SIGNING_KEY_FILE="", ISM_ADDITIONAL_PUBLIC_KEY_FILES="",
                    ISM_JWT_ALG="ES256")
    compose.run("up", "-d", "session-manager", timeout=300)
    compose.wait_healthy()
    assert compose.inspect("session-manager", "{{.RestartCount}}") == "0"
    served = requests.get(f"{endpoints.public_url}/.well-known/jwks.json", timeout=10).json()
    assert served["keys"][0]["alg"] == "ES256", served
    session_id, pin = create_session(endpoints)
    name = unique("es256")
    joined = join(endpoints, session_id, pin, name)
    wait_until(lambda: not refused_with(endpoints, "tls", joined, name), 15,
               "an ES256 token admitted by the broker")


def test_the_stack_starts_without_an_env_file(compose, monkeypatch):
    compose.down()
    os.remove(compose.env_path())
    # Without .env every setting takes its default; only the host binds stay on loopback
    # (given through the environment, which compose reads like .env).
    for name, value in LOOPBACK_BINDS.items():
        monkeypatch.setenv(name, value)
    try:
        compose.run("up", "-d", timeout=600)
        compose.wait_healthy()
        assert compose.inspect("session-manager", "{{.RestartCount}}") == "0"
        endpoints.admin_key = None
        full_session_check(endpoints, transports=("tcp", "ws"))
    finally:
        compose.down()


@pytest.fixture(autouse=True, scope="module")
def _module_teardown(compose):
    yield
    compose.down()
