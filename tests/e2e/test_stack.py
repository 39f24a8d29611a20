"""The product end to end over the native stack (dev_jwt_auth, plain-HTTP proxy):
sessions created on the admin port, devices joining through nginx, MQTT over WebSocket
(nginx /mqtt), plain TCP and TLS, isolation between sessions, and what the proxy must
never let through."""

import socket
import ssl
import time

import requests

from conftest import unique_name

QUIET_SECS = 1.0  # how long "nothing arrives" is watched for


def test_devices_of_one_session_talk_over_websocket_tcp_and_tls_and_never_across(
        stack, devices):
    session_a = stack.create_session("kitchen")
    session_b = stack.create_session("garage")
    root_a, root_b = session_a["topic_root"], session_b["topic_root"]
    assert root_a == f"/{session_a['id']}/" and root_b == f"/{session_b['id']}/"

    grants = {name: stack.join(session_a, name) for name in ("a-ws", "a-tls", "a-tcp")}
    grant_b = stack.join(session_b, "b-tcp")
    a_ws = devices(stack, "ws", "a-ws", grants["a-ws"]["token"])
    a_tls = devices(stack, "tls", "a-tls", grants["a-tls"]["token"])
    a_tcp = devices(stack, "tcp", "a-tcp", grants["a-tcp"]["token"])
    b_tcp = devices(stack, "tcp", "b-tcp", grant_b["token"])
    for device in (a_ws, a_tls, a_tcp, b_tcp):
        assert device.wait_connected(), f"connect refused: {device.connect_result}"

    for device in (a_ws, a_tls, a_tcp):
        assert device.subscribe(f"{root_a}#")
    assert b_tcp.subscribe(f"{root_b}#")

    a_ws.publish(f"{root_a}lights", "on")
    for device in (a_tls, a_tcp, a_ws):
        assert device.next_message() == (f"{root_a}lights", "on")
    a_tls.publish(f"{root_a}door", "open")
    assert a_ws.next_message() == (f"{root_a}door", "open")
    assert b_tcp.received(QUIET_SECS) == [], "a message crossed into another session"

    b_tcp.publish(f"{root_b}engine", "started")
    assert b_tcp.next_message() == (f"{root_b}engine", "started")
    # A device cannot write into another session's tree, nor read it.
    b_tcp.publish(f"{root_a}lights", "off")
    assert not b_tcp.subscribe(f"{root_a}#")
    assert not b_tcp.subscribe("#")
    for device in (a_ws, a_tls, a_tcp):
        assert [m for m in device.received(QUIET_SECS) if m[1] in ("off", "started")] == []


def test_closing_a_session_disconnects_its_devices_within_a_second(stack, devices):
    stack.wait_broker_link()
    closing = stack.create_session()
    staying = stack.create_session()
    grants = {name: stack.join(closing, name) for name in ("closing-ws", "closing-tcp")}
    closing_ws = devices(stack, "ws", "closing-ws", grants["closing-ws"]["token"])
    closing_tcp = devices(stack, "tcp", "closing-tcp", grants["closing-tcp"]["token"])
    stay = devices(stack, "tcp", "staying", stack.join(staying, "staying")["token"])
    for device in (closing_ws, closing_tcp, stay):
        assert device.wait_connected(), f"connect refused: {device.connect_result}"
    assert stay.subscribe(f"{staying['topic_root']}#")

    sent = time.monotonic()
    assert stack.admin("DELETE", f"/api/v1/sessions/{closing['id']}").status_code == 204
    for device in (closing_ws, closing_tcp):
        while device.disconnected_at is None:
            assert time.monotonic() - sent < 1.0, "a device of the closed session is still connected"
            time.sleep(0.005)
        assert device.disconnected_at - sent < 1.0

    again = devices(stack, "tcp", "closing-tcp", grants["closing-tcp"]["token"])
    assert not again.wait_connected(timeout=5), "a closed session's token still gets in"
    stay.publish(f"{staying['topic_root']}ping", "1")
    assert stay.next_message() == (f"{staying['topic_root']}ping", "1")


def test_sys_topics_are_not_readable_by_devices(stack, devices):
    session = stack.create_session()
    grant = stack.join(session, "curious")
    device = devices(stack, "tcp", "curious", grant["token"])
    assert device.wait_connected()
    device.subscribe("$SYS/#")
    assert device.received(QUIET_SECS) == []


def test_a_bad_token_is_refused_over_websocket(stack, devices):
    session = stack.create_session()
    grant = stack.join(session, "honest")
    forged = grant["token"][:-4] + ("AAAA" if not grant["token"].endswith("AAAA") else "BBBB")
    device = devices(stack, "ws", "honest", forged)
    assert not device.wait_connected(timeout=5)


def test_compat_routes_work_through_the_proxy(stack, devices):
    created = stack.admin("GET", "/api/createSession", params={"type": "legacy"})
    assert created.status_code == 200, created.text
    session = created.json()
    assert set(session) >= {"id", "pin", "type", "clients"} and session["type"] == "legacy"

    joined = stack.public("POST", "/api/joinSession",
                          json={"id": session["id"], "pin": session["pin"], "client": "old-1"})
    assert joined.status_code == 200, joined.text
    device = devices(stack, "ws", "old-1", joined.json()["token"])
    assert device.wait_connected()
    root = f"/{session['id']}/"
    assert device.subscribe(f"{root}#")
    device.publish(f"{root}ping", "pong")
    assert device.next_message() == (f"{root}ping", "pong")

    wrong = stack.public("POST", "/api/joinSession",
                         json={"id": session["id"], "pin": "000", "client": "old-2"})
    assert wrong.status_code == 401


def test_wrong_pin_through_the_proxy_is_401(stack):
    session = stack.create_session()
    pin = session["pin"]
    wrong_pin = ("1" if pin[0] != "1" else "2") + pin[1:]
    response = stack.public("POST", f"/api/v1/sessions/{session['id']}/join",
                            json={"pin": wrong_pin, "client": unique_name("guess")})
    assert response.status_code == 401
    assert response.json()["error"]["code"]


def test_admin_api_is_not_reachable_through_the_proxy(stack):
    session = stack.create_session()
    before = stack.admin("GET", "/api/v1/sessions").json()
    key = {"authorization": f"Bearer {stack['admin_api_key']}"}
    attempts = [
        ("POST", "/api/v1/sessions", {"json": {"type": "sneaky"}}),
        ("GET", "/api/v1/sessions", {}),
        ("GET", f"/api/v1/sessions/{session['id']}", {}),
        ("DELETE", f"/api/v1/sessions/{session['id']}", {}),
        ("GET", "/api/createSession?type=sneaky", {}),
        ("GET", f"/api/closeSession?id={session['id']}", {}),
        ("GET", f"/api/conductorRequest?id={session['id']}&method=m&params=p", {}),
    ]
    for method, path, extra in attempts:
        # Even with the right admin key, the public server block has no way to the admin API.
        response = stack.public(method, path, headers=key, **extra)
        assert response.status_code in (404, 405), f"{method} {path}: {response.status_code}"
    assert stack.admin("GET", f"/api/v1/sessions/{session['id']}").status_code == 200
    assert stack.admin("GET", "/api/v1/sessions").json() == before


def test_jwks_through_the_proxy_is_the_services(stack):
    through_proxy = stack.public("GET", "/.well-known/jwks.json")
    direct = requests.get(stack["service_public_url"] + "/.well-known/jwks.json", timeout=10)
    assert through_proxy.status_code == 200
    assert through_proxy.json() == direct.json()
    assert through_proxy.json()["keys"][0]["kid"]


def test_demo_page_and_security_headers(stack):
    page = stack.public("GET", "/")
    assert page.status_code == 200
    assert "IoT Session Manager" in page.text
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    script = stack.public("GET", "/mqtt-ws.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("application/javascript")
    assert "Server" not in page.headers or page.headers["Server"] == "nginx"


def test_oversized_bodies_are_refused_by_the_proxy(stack):
    response = stack.public("POST", "/api/joinSession", data="x" * 64 * 1024,
                            headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_tls_client_that_does_not_trust_the_dev_ca_is_refused(stack, devices):
    context = ssl.create_default_context()  # system trust store only
    with socket.create_connection((stack["mqtt_host"], stack["mqtt_tls_port"]), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost"):
                raise AssertionError("TLS handshake succeeded without the dev CA")
        except ssl.SSLCertVerificationError:
            pass

    session = stack.create_session()
    grant = stack.join(session, "no-ca")
    device = None
    try:
        device = devices(stack, "tls", "no-ca", grant["token"], ca_file=None)
    except ssl.SSLError:
        return
    assert not device.wait_connected(timeout=5)


def test_tls_client_trusting_the_dev_ca_checks_the_host_name(stack):
    context = ssl.create_default_context(cafile=stack["ca_file"])
    with socket.create_connection((stack["mqtt_host"], stack["mqtt_tls_port"]), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
