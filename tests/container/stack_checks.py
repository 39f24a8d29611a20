"""What the container tests check on a running compose stack, from the host, through the
published ports only (as devices and an operator would): sessions on the admin port, joins
through nginx, MQTT over TCP, TLS and WebSocket, isolation between sessions, and closing.
"""

import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Optional

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from iot_session import MqttConnection  # noqa: E402


@dataclass
class Endpoints:
    """The stack as the host sees it, with the documented default ports."""

    prod: bool = False
    ca_file: Optional[str] = None
    admin_key: Optional[str] = None
    admin_url: str = "http://127.0.0.1:50001"

    @property
    def public_url(self):
        return "https://localhost" if self.prod else "http://127.0.0.1"

    @property
    def verify(self):
        return self.ca_file if self.prod else True

    def broker(self, transport):
        return {"tcp": "mqtt://127.0.0.1:1883", "tls": "mqtts://localhost:8883",
                "ws": "wss://localhost/mqtt" if self.prod else "ws://127.0.0.1/mqtt"}[transport]

    def admin_headers(self):
        return {"authorization": f"Bearer {self.admin_key}"} if self.admin_key else {}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_session(endpoints, **body):
    response = requests.post(f"{endpoints.admin_url}/api/v1/sessions",
                             json={"type": "container-test", **body},
                             headers=endpoints.admin_headers(), timeout=10)
    assert response.status_code == 201, response.text
    created = response.json()
    return created["id"], created["pin"]


def join(endpoints, session_id, pin, client):
    response = requests.post(f"{endpoints.public_url}/api/v1/sessions/{session_id}/join",
                             json={"pin": pin, "client": client}, verify=endpoints.verify,
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def close_session(endpoints, session_id):
    response = requests.delete(f"{endpoints.admin_url}/api/v1/sessions/{session_id}",
                               headers=endpoints.admin_headers(), timeout=10)
    assert response.status_code == 204, response.text


class Device(MqttConnection):
    """A joined device on one transport; remembers its token to reconnect with it."""

    def __init__(self, endpoints, transport, joined, name):
        super().__init__(endpoints.broker(transport), name, joined["token"],
                         joined.get("client_id", name), ca_file=endpoints.ca_file)
        self.endpoints, self.transport, self.joined, self.name = endpoints, transport, joined, name


def connect_device(endpoints, transport, session_id, pin, name=None):
    name = name or unique(transport)
    device = Device(endpoints, transport, join(endpoints, session_id, pin, name), name)
    device.connect()
    return device


def refused_with(endpoints, transport, joined, name):
    """True when the broker refuses a new connection with this token."""
    probe = MqttConnection(endpoints.broker(transport), name, joined["token"],
                           joined.get("client_id", name), ca_file=endpoints.ca_file)
    try:
        probe.connect(timeout=10)
    except ConnectionRefusedError:
        return True
    probe.close()
    return False


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"not within {timeout}s: {what}")


def check_messages_flow(devices, session_id):
    """Every device hears every other one, whatever the transports."""
    for device in devices:
        assert device.subscribe(f"/{session_id}/#", qos=1), f"{device.transport}: SUBACK refused"
    for sender in devices:
        text = f"from-{sender.transport}-{uuid.uuid4().hex[:6]}"
        sender.publish(f"/{session_id}/chat", text, qos=1)
        for receiver in devices:
            if receiver is sender:
                continue
            heard = [m.payload.decode() for m in receiver.received_within(1.5)]
            assert text in heard, f"{receiver.transport} did not hear {sender.transport}"


def check_isolation(endpoints, session_a, device_a):
    """A device of another session can neither read nor write session A's topics."""
    session_b, pin_b = create_session(endpoints)
    intruder = connect_device(endpoints, "tcp", session_b, pin_b)
    try:
        assert not intruder.subscribe(f"/{session_a}/#", qos=1), "read another session"
        assert not intruder.subscribe("#", qos=1), "subscribed to everything"
        intruder.publish(f"/{session_a}/chat", "forged", qos=1)
        heard = [m.payload.decode() for m in device_a.received_within(1.5)]
        assert "forged" not in heard
    finally:
        intruder.close()


def check_public_api(endpoints, session_id):
    """Wrong PIN 401 through nginx; the admin API unreachable through nginx."""
    wrong = requests.post(f"{endpoints.public_url}/api/v1/sessions/{session_id}/join",
                          json={"pin": "0" * 6, "client": "guess"}, verify=endpoints.verify,
                          timeout=15)
    assert wrong.status_code == 401, wrong.text
    for method, path in (("POST", "/api/v1/sessions"), ("GET", "/api/v1/sessions"),
                         ("GET", "/api/createSession?type=x"),
                         ("DELETE", f"/api/v1/sessions/{session_id}")):
        response = requests.request(method, endpoints.public_url + path,
                                    headers=endpoints.admin_headers(), verify=endpoints.verify,
                                    timeout=10)
        assert response.status_code in (404, 405), f"{method} {path}: {response.status_code}"
    assert requests.get(f"{endpoints.admin_url}/api/v1/sessions/{session_id}",
                        headers=endpoints.admin_headers(), timeout=10).status_code == 200


def check_close_disconnects(endpoints, session_id, devices):
    close_session(endpoints, session_id)
    for device in devices:
        wait_until(lambda d=device: not d.connected.is_set(), 5,
                   f"{device.transport} device disconnected after the close")
        device.close()
    for device in devices:
        assert refused_with(endpoints, device.transport, device.joined, device.name), \
            f"closed session's token still admitted over {device.transport}"


def full_session_check(endpoints, transports=("tcp", "tls", "ws")):
    """Create, join through nginx, MQTT both ways on every transport, isolation, wrong
    PIN, no admin through nginx, close → disconnected and refused. Returns nothing."""
    session_id, pin = create_session(endpoints)
    check_public_api(endpoints, session_id)
    devices = [connect_device(endpoints, transport, session_id, pin) for transport in transports]
    try:
        check_messages_flow(devices, session_id)
        check_isolation(endpoints, session_id, devices[0])
        check_close_disconnects(endpoints, session_id, devices)
    finally:
        for device in devices:
            device.close()


def published_ports(compose, service):
    """{container port: "host ip:host port"} of a service's container."""
    ports = {}
    template = ("{{range $p, $b := .NetworkSettings.Ports}}{{if $b}}"
                "{{$p}}={{(index $b 0).HostIp}}:{{(index $b 0).HostPort}} {{end}}{{end}}")
    for item in compose.inspect(service, template).split():
        port, binding = item.split("=")
        ports[port] = binding
    return ports
