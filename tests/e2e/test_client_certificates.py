"""Client certificates end to end over the native stack (service + Mosquitto with our plugin
+ nginx): a device joins with a CSR made by `openssl req`, connects to the broker's
certificate listener with the certificate it got (paho, and `mosquitto_sub --cert/--key`),
talks inside its session and nowhere else, and is disconnected when its session is closed
or it is kicked. Attacks: a certificate of another CA (even around a valid token), a
certificate of the client CA without a token, or around another session's token (a forged
identity), and no certificate at all."""

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import unique_name

WITHIN_SECS = 5.0
# The token extension's OID (session_token::TOKEN_EXTENSION_OID_TEXT).
TOKEN_OID = "2.25.7144009399852894525"


def openssl(*args, cwd):
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, f"openssl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def key_and_csr(directory, name):
    """A fresh P-256 key and a CSR for it, as a device would make them: (key path, CSR text)."""
    key = os.path.join(directory, f"{name}.key")
    csr = os.path.join(directory, f"{name}.csr")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-subj", f"/CN={name}", "-out", csr, cwd=directory)
    with open(csr) as file:
        return key, file.read()


def subject_of(common_name):
    """`openssl -subj` for a common name that holds a `/` (escaped there)."""
    return "/CN=" + common_name.replace("/", "\\/")


def join_with_csr(stack, session, client, csr):
    response = stack.public("POST", f"/api/v1/sessions/{session['id']}/join",
                            json={"pin": session["pin"], "client": client, "csr": csr})
    assert response.status_code == 200, response.text
    return response.json()


class CertDevice:
    """A device that joined with a CSR: its grant, key and certificate files."""

    def __init__(self, stack, directory, session, name):
        self.name = name
        self.key_file, csr = key_and_csr(directory, name)
        self.grant = join_with_csr(stack, session, name, csr)
        self.cert_file = os.path.join(directory, f"{name}.pem")
        with open(self.cert_file, "w") as file:
            file.write(self.grant["certificate"])


def connect_by_certificate(stack, devices, cert_file, key_file, client_id):
    """A paho connection to the certificate listener with no username or password; None
    when the TLS handshake itself fails."""
    try:
        return devices(stack, "cert", None, None, client_id=client_id,
                       cert_file=cert_file, key_file=key_file)
    except OSError:  # ssl.SSLError and resets: refused during the handshake
        return None


def refused(device, timeout=5):
    return device is None or not device.wait_connected(timeout=timeout)


def refused_at_tls(device, timeout=5):
    """Refused before MQTT: the handshake failed, no CONNACK ever came."""
    return refused(device, timeout) and (device is None or device.connect_result is None)


def wait_disconnected(device, since, why):
    while device.disconnected_at is None:
        assert time.monotonic() - since < WITHIN_SECS, f"{why}: the device is still connected"
        time.sleep(0.02)


def test_the_stack_serves_a_certificate_listener(stack):
    assert stack["mqtt_cert_port"] not in (stack["mqtt_port"], stack["mqtt_tls_port"])
    assert os.path.isfile(stack["client_ca_file"])


def test_devices_with_certificates_talk_inside_their_session_only(stack, devices, tmp_path):
    session, other = stack.create_session(), stack.create_session()
    root, other_root = session["topic_root"], other["topic_root"]
    lamp = CertDevice(stack, tmp_path, session, "lamp")
    switch = CertDevice(stack, tmp_path, session, "switch")
    assert lamp.grant["client_id"] == f"{session['id']}/lamp"

    receiver = connect_by_certificate(stack, devices, lamp.cert_file, lamp.key_file,
                                      lamp.grant["client_id"])
    sender = connect_by_certificate(stack, devices, switch.cert_file, switch.key_file,
                                    switch.grant["client_id"])
    assert receiver.wait_connected(), f"refused: {receiver.connect_result}"
    assert sender.wait_connected(), f"refused: {sender.connect_result}"
    outsider = devices(stack, "tcp", "outsider", stack.join(other, "outsider")["token"])
    assert outsider.wait_connected()
    assert outsider.subscribe(f"{other_root}#")

    assert receiver.subscribe(f"{root}#")
    sender.publish(f"{root}light", "on")
    assert (f"{root}light", "on") in receiver.received(2)

    # Another session's topics: no subscription, and a publish is dropped.
    assert not receiver.subscribe(f"{other_root}#")
    assert not receiver.subscribe("#")
    sender.publish(f"{other_root}light", "off")
    assert outsider.received(1.5) == [], "a certificate device reached another session"


def test_mosquitto_sub_with_the_certificate_receives_its_session(stack, devices, tmp_path):
    mosquitto_sub = shutil.which("mosquitto_sub")
    assert mosquitto_sub, "mosquitto_sub is missing (Debian package mosquitto-clients)"
    session = stack.create_session()
    root = session["topic_root"]
    sensor = CertDevice(stack, tmp_path, session, "sensor")
    publisher = devices(stack, "tcp", "publisher", stack.join(session, "publisher")["token"])
    assert publisher.wait_connected()
    publisher._client.publish(f"{root}reading", "21.5", qos=1, retain=True).wait_for_publish(5)

    result = subprocess.run(
        [mosquitto_sub, "-h", stack["mqtt_host"], "-p", str(stack["mqtt_cert_port"]),
         "--cafile", stack["ca_file"], "--cert", sensor.cert_file, "--key", sensor.key_file,
         "-i", sensor.grant["client_id"], "-t", f"{root}reading", "-C", "1", "-W", "10"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "21.5"

    # The same certificate gets nothing of another session, even a retained message.
    other = stack.create_session()
    other_device = devices(stack, "tcp", "other", stack.join(other, "other")["token"])
    assert other_device.wait_connected()
    other_device._client.publish(f"{other['topic_root']}secret", "42", qos=1,
                                 retain=True).wait_for_publish(5)
    denied = subprocess.run(
        [mosquitto_sub, "-h", stack["mqtt_host"], "-p", str(stack["mqtt_cert_port"]),
         "--cafile", stack["ca_file"], "--cert", sensor.cert_file, "--key", sensor.key_file,
         "-i", sensor.grant["client_id"], "-t", f"{other['topic_root']}#", "-C", "1", "-W", "2"],
        capture_output=True, text=True, timeout=30)
    assert denied.stdout == "", denied
    assert denied.returncode != 0 or "denied" in denied.stderr, denied


def test_a_certificate_of_another_ca_is_refused_even_around_a_valid_token(
        stack, devices, tmp_path):
    session = stack.create_session()
    grant = stack.join(session, "rogue")
    # The attacker holds a genuine token but signs their own certificate around it.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "1",
            "-subj", subject_of(f"{session['id']}/rogue"),
            "-addext", f"{TOKEN_OID}=ASN1:UTF8String:{grant['token']}", cwd=tmp_path)
    device = connect_by_certificate(stack, devices, str(tmp_path / "rogue.pem"),
                                    str(tmp_path / "rogue.key"), grant["client_id"])
    assert refused_at_tls(device), "a certificate of another CA got past TLS"


def test_the_certificate_listener_refuses_a_client_without_a_certificate(stack, devices):
    session = stack.create_session()
    grant = stack.join(session, "plain")
    try:
        device = devices(stack, "cert", "plain", grant["token"], client_id=grant["client_id"])
    except OSError:
        device = None
    assert refused_at_tls(device), "a password client got past TLS on the certificate listener"


def client_ca_certificate(stack, directory, name, subject, extension=None):
    """A certificate signed by the stack's own client CA (as only the service can), for
    the attacks the plugin must catch: (cert path, key path)."""
    client_ca_key = os.path.join(os.path.dirname(stack["client_ca_file"]), "client-ca.key")
    key, _ = key_and_csr(directory, name)
    openssl("req", "-new", "-key", key, "-subj", subject, "-out", f"{name}.req", cwd=directory)
    extfile = os.path.join(directory, f"{name}.ext")
    with open(extfile, "w") as file:
        file.write("extendedKeyUsage=clientAuth\n")
        if extension:
            file.write(f"{TOKEN_OID}=ASN1:UTF8String:{extension}\n")
    openssl("x509", "-req", "-in", f"{name}.req", "-CA", stack["client_ca_file"],
            "-CAkey", client_ca_key, "-CAcreateserial", "-days", "1", "-extfile", extfile,
            "-out", f"{name}.pem", cwd=directory)
    return os.path.join(directory, f"{name}.pem"), key


@pytest.mark.parametrize("attack", ["none (control)", "no token", "forged identity",
                                    "forged token"])
def test_a_client_ca_certificate_without_its_own_token_is_refused(
        stack, devices, tmp_path, attack):
    victim_session, attacker_session = stack.create_session(), stack.create_session()
    victim_token = stack.join(victim_session, "lamp")["token"]
    attacker_token = stack.join(attacker_session, "lamp")["token"]
    victim_id = f"{victim_session['id']}/lamp"
    token = {
        # Made the same way around the right token: admitted, so the refusals below are
        # the plugin's checks, not a flaw of the certificates the test makes.
        "none (control)": victim_token,
        "no token": None,
        # The attacker's genuine token under the victim's identity.
        "forged identity": attacker_token,
        # A token the attacker made up, its signature from no key of the service.
        "forged token": victim_token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl",
    }[attack]
    cert, key = client_ca_certificate(stack, str(tmp_path), unique_name("attack"),
                                      subject_of(victim_id), token)
    device = connect_by_certificate(stack, devices, cert, key, victim_id)
    if attack == "none (control)":
        assert device.wait_connected(), f"refused: {device.connect_result}"
    else:
        assert refused(device), f"{attack}: admitted"


def test_closing_the_session_disconnects_the_certificate_device(stack, devices, tmp_path):
    session = stack.create_session()
    dev = CertDevice(stack, tmp_path, session, "closing")
    device = connect_by_certificate(stack, devices, dev.cert_file, dev.key_file,
                                    dev.grant["client_id"])
    assert device.wait_connected()
    closed_at = time.monotonic()
    response = stack.admin("DELETE", f"/api/v1/sessions/{session['id']}")
    assert response.status_code in (200, 204), response.text
    wait_disconnected(device, closed_at, "session closed")
    device.close()
    again = connect_by_certificate(stack, devices, dev.cert_file, dev.key_file,
                                   dev.grant["client_id"])
    assert refused(again, timeout=3), "the certificate of a closed session still works"


def test_kicking_disconnects_the_certificate_device(stack, devices, tmp_path):
    session = stack.create_session()
    dev = CertDevice(stack, tmp_path, session, "kicked")
    device = connect_by_certificate(stack, devices, dev.cert_file, dev.key_file,
                                    dev.grant["client_id"])
    assert device.wait_connected()
    kicked_at = time.monotonic()
    deadline = kicked_at + WITHIN_SECS
    while True:
        response = stack.admin("DELETE", f"/api/v1/sessions/{session['id']}/clients/kicked")
        # The kick names a device the service has seen online (its presence report).
        if response.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 204, response.text
    wait_disconnected(device, kicked_at, "kicked")
    device.close()
    again = connect_by_certificate(stack, devices, dev.cert_file, dev.key_file,
                                   dev.grant["client_id"])
    assert refused(again, timeout=3), "the certificate issued before the kick still works"


def service_cli(stack, *args):
    """`session-manager <args>` against the stack's admin API; its JSON answer."""
    env = {**os.environ, "ISM_ADMIN_URL": stack["admin_url"],
           "ISM_ADMIN_API_KEY": stack["admin_api_key"] or ""}
    result = subprocess.run([stack["service_bin"], *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"session-manager {' '.join(args)}:\n{result.stderr}"
    return json.loads(result.stdout)


def test_a_service_token_issued_as_a_certificate_reaches_every_session_until_revoked(
        stack, devices, tmp_path):
    name = unique_name("backend")
    answer = service_cli(stack, "certs", "client", "--name", name, "--subscribe", "/+/#",
                         "--publish", "/+/#", "--out", str(tmp_path))
    assert "token" not in answer and "certificate" not in answer, answer
    assert answer["client_id"] == f"$svc-{name}"
    cert_file, key_file = answer["certificate_file"], answer["key_file"]
    assert os.stat(key_file).st_mode & 0o077 == 0, "the key must be private"
    # The certificate names the backend and carries its token.
    text = openssl("x509", "-in", cert_file, "-noout", "-subject", "-ext", TOKEN_OID,
                   cwd=tmp_path)
    assert f"CN = $svc-{name}" in text, text

    first, second = stack.create_session(), stack.create_session()
    lamps = []
    for session in (first, second):
        lamp = devices(stack, "tcp", "lamp", stack.join(session, "lamp")["token"],
                       client_id=f"{session['id']}/lamp")
        assert lamp.wait_connected()
        assert lamp.subscribe(f"{session['topic_root']}cmd")
        lamps.append(lamp)
    backend = connect_by_certificate(stack, devices, cert_file, key_file, f"$svc-{name}")
    assert backend.wait_connected(), f"refused: {backend.connect_result}"
    assert backend.subscribe("/+/#")
    assert not backend.subscribe("$CONTROL/#"), "a backend must never read the control channel"

    # It hears and reaches the devices of both sessions.
    lamps[0].publish(f"{first['topic_root']}state", "on")
    lamps[1].publish(f"{second['topic_root']}state", "off")
    heard = backend.received(2)
    assert (f"{first['topic_root']}state", "on") in heard, heard
    assert (f"{second['topic_root']}state", "off") in heard, heard
    backend.publish(f"{first['topic_root']}cmd", "dim")
    assert (f"{first['topic_root']}cmd", "dim") in lamps[0].received(2)

    # Revoking the token cuts the certificate's holder off, and the certificate is refused.
    since = time.monotonic()
    service_cli(stack, "token", "revoke", answer["jti"])
    wait_disconnected(backend, since, "revoked")
    again = connect_by_certificate(stack, devices, cert_file, key_file, f"$svc-{name}")
    assert refused(again), "a revoked service token's certificate was admitted"

