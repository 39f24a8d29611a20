"""Harness of the end-to-end tests: each stack fixture runs `scripts/dev-stack` (the
session manager, Mosquitto with our plugin and nginx, on free loopback ports, from the
same config templates as the compose stack) and stops it afterwards; `Device` is the client
library's MQTT connection (`iot_session.MqttConnection`, paho) over plain TCP, TLS or
WebSocket through nginx.

A missing dependency (mosquitto, nginx, ...) makes dev-stack fail with a message saying
how to install it, and so fails the tests: nothing is skipped.
"""

import os
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from devstack import ROOT, RunningStack, finish_stack  # noqa: E402,F401  (shared harness)

sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from iot_session import MqttConnection  # noqa: E402  (the one MQTT wrapper)


@pytest.fixture(scope="session")
def stack():
    """dev_jwt_auth, DEPLOYMENT_MODE=dev (plain HTTP proxy)."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev")
    yield running
    finish_stack(running)


@pytest.fixture(scope="session")
def prod_stack():
    """dev_jwt_auth, DEPLOYMENT_MODE=prod (HTTPS proxy, HTTP redirects)."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "prod")
    yield running
    finish_stack(running)


@pytest.fixture(scope="session")
def no_auth_stack():
    """dev_no_auth: the broker runs without the plugin, anonymous access."""
    running = RunningStack("--auth-mode", "dev_no_auth", "--deployment-mode", "dev")
    yield running
    finish_stack(running)


def unique_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def broker_url(stack, transport):
    """The stack's broker address for `transport`: "tcp", "tls", "cert" (TLS with client
    certificates), or "ws"/"wss" (nginx's /mqtt)."""
    if transport == "tcp":
        return f"mqtt://{stack['mqtt_host']}:{stack['mqtt_port']}"
    if transport == "tls":
        return f"mqtts://{stack['mqtt_host']}:{stack['mqtt_tls_port']}"
    if transport == "cert":
        return f"mqtts://{stack['mqtt_host']}:{stack['mqtt_cert_port']}"
    # ws_url is ws://127.0.0.1:PORT/mqtt (dev) or wss://... (prod)
    return stack["ws_url"]


class Device(MqttConnection):
    """The client library's MQTT connection, started at once, speaking QoS 0 and text
    payloads: messages are `(topic, text)` pairs."""

    def __init__(self, stack, transport, username, password, client_id=None, ca_file="stack",
                 will=None, clean_session=True, cert_file=None, key_file=None):
        super().__init__(broker_url(stack, transport), username, password,
                         client_id or username,
                         ca_file=stack["ca_file"] if ca_file == "stack" else ca_file,
                         will=will, clean_session=clean_session,
                         cert_file=cert_file, key_file=key_file)
        self.start()

    def subscribe(self, topic_filter, timeout=5):
        """True when the broker granted the subscription."""
        return super().subscribe(topic_filter, qos=0, timeout=timeout)

    def publish(self, topic, payload):
        super().publish(topic, payload, qos=0, timeout=5)

    def received(self, timeout, presence=False):
        """Every message that arrives within `timeout` seconds; the broker's retained
        presence of the session's devices (`/S/$presence/...`, which a subscription to
        `/S/#` also receives) only with `presence=True`."""
        return [(m.topic, m.payload.decode()) for m in self.received_within(timeout)
                if presence or not is_session_presence(m.topic)]

    def next_message(self, timeout=5):
        """The next message that is not the broker's presence of a device, or None."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = super().next_message(remaining)
            if message is None:
                return None
            if not is_session_presence(message.topic):
                return (message.topic, message.payload.decode())
        return None


def is_session_presence(topic):
    """Is `topic` a device's retained presence, `/S/$presence/<client>`?"""
    levels = topic.split("/")
    return len(levels) > 2 and levels[0] == "" and levels[2] == "$presence"


@pytest.fixture(scope="module")
def restartable_stack():
    """A stack of its own for the tests that restart the broker and the service."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev")
    yield running
    finish_stack(running)


@pytest.fixture
def devices():
    """Collects devices a test opens and closes them afterwards."""
    opened = []

    def open_device(*args, **kwargs):
        device = Device(*args, **kwargs)
        opened.append(device)
        return device

    yield open_device
    for device in opened:
        device.close()


@pytest.fixture
def opened():
    """Joins a device into a session, connects it over TCP with its scoped client id (it
    must be admitted), and closes it after the test: `opened(stack, session, client)`."""
    devices = []

    def open_device(stack, session, client):
        grant = stack.join(session, client)
        device = Device(stack, "tcp", client, grant["token"], client_id=grant["client_id"])
        devices.append(device)
        assert device.wait_connected(), f"{client} was not admitted"
        return device

    yield open_device
    for device in devices:
        device.close()
