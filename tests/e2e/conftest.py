"""Harness of the end-to-end tests: each stack fixture runs `scripts/dev-stack` (the
session manager, Mosquitto with our plugin and nginx, on free loopback ports, from the
same config templates as the compose stack) and stops it afterwards; `Device` is a real
MQTT client (paho) over plain TCP, TLS or WebSocket through nginx.

A missing dependency (mosquitto, nginx, ...) makes dev-stack fail with a message saying
how to install it, and so fails the tests: nothing is skipped.
"""

import os
import queue
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from devstack import ROOT, RunningStack, finish_stack  # noqa: E402,F401  (shared harness)


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


class Device:
    """A real MQTT client; `transport` is "tcp", "tls" or "ws" (through nginx's /mqtt)."""

    def __init__(self, stack, transport, username, password, client_id=None, ca_file="stack",
                 will=None, clean_session=True):
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = {}
        self.connect_result = None
        self.disconnected_at = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or username,
            protocol=mqtt.MQTTv311, clean_session=clean_session,
            transport="websockets" if transport in ("ws", "wss") else "tcp")
        if will is not None:
            self.client.will_set(will[0], will[1], qos=0)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *args: self._on_disconnect()
        host = stack["mqtt_host"]
        if transport == "tcp":
            port = stack["mqtt_port"]
        elif transport == "tls":
            port = stack["mqtt_tls_port"]
            self.client.tls_set(ca_certs=stack["ca_file"] if ca_file == "stack" else ca_file)
        else:
            # ws_url is ws://127.0.0.1:PORT/mqtt (dev) or wss://... (prod)
            scheme, rest = stack["ws_url"].split("://", 1)
            hostport, path = rest.split("/", 1)
            host, port = hostport.rsplit(":", 1)
            port = int(port)
            self.client.ws_set_options(path="/" + path)
            if scheme == "wss":
                self.client.tls_set(ca_certs=stack["ca_file"])
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        self.connect_result = reason_code
        if not reason_code.is_failure:
            self.connected.set()

    def _on_disconnect(self):
        if self.connected.is_set():
            self.disconnected_at = time.monotonic()
        self.connected.clear()

    def _on_message(self, _client, _userdata, message):
        self.messages.put((message.topic, message.payload.decode()))

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        self.subscribed[mid] = [not code.is_failure for code in reason_codes]

    def wait_connected(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return True
            if self.connect_result is not None and self.connect_result.is_failure:
                return False
            time.sleep(0.02)
        return False

    def subscribe(self, topic_filter, timeout=5):
        """True when the broker granted the subscription."""
        _, mid = self.client.subscribe(topic_filter, qos=0)
        deadline = time.monotonic() + timeout
        while mid not in self.subscribed:
            assert time.monotonic() < deadline, f"no SUBACK for {topic_filter}"
            time.sleep(0.02)
        return all(self.subscribed[mid])

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=0).wait_for_publish(timeout=5)

    def received(self, timeout):
        """Every message that arrives within `timeout` seconds."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return got
            try:
                got.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                return got

    def next_message(self, timeout=5):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Loses the connection without a DISCONNECT, as a device that loses power would
        (the broker then sends its will)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


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
