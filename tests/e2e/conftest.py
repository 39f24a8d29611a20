"""Harness of the end-to-end tests: each stack fixture runs `scripts/dev-stack` (the
session manager, Mosquitto with our plugin and nginx, on free loopback ports, from the
same config templates as the compose stack) and stops it afterwards; `Device` is a real
MQTT client (paho) over plain TCP, TLS or WebSocket through nginx.

A missing dependency (mosquitto, nginx, ...) makes dev-stack fail with a message saying
how to install it, and so fails the tests: nothing is skipped.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV_STACK = os.path.join(ROOT, "scripts", "dev-stack")
STACK_START_TIMEOUT_SECS = 300  # includes a release build when the binaries are missing


class RunningStack:
    """One dev-stack process and the JSON it announced."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [DEV_STACK, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.stderr_lines = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()),
                         daemon=True).start()
        try:
            line = lines.get(timeout=STACK_START_TIMEOUT_SECS)
        except queue.Empty:
            self.stop()
            pytest.fail("dev-stack did not come up in time:\n" + self.stderr())
        if not line:
            self.process.wait()
            pytest.fail(f"dev-stack failed (status {self.process.returncode}):\n"
                        + self.stderr())
        self.info = json.loads(line)

    def _drain_stderr(self):
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def stderr(self):
        time.sleep(0.2)
        return "".join(self.stderr_lines)

    def __getitem__(self, key):
        return self.info[key]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    # --- HTTP helpers ---------------------------------------------------------------------

    def admin(self, method, path, **kwargs):
        headers = {"authorization": f"Bearer {self['admin_api_key']}"}
        return requests.request(method, self["admin_url"] + path, headers=headers,
                                timeout=10, **kwargs)

    def public(self, method, path, **kwargs):
        """A request through nginx (the public URL), verifying the dev CA for HTTPS."""
        kwargs.setdefault("verify", self["ca_file"])
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self["public_url"] + path, **kwargs)

    def create_session(self, session_type="e2e"):
        response = self.admin("POST", "/api/v1/sessions", json={"type": session_type})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def join(self, session, client):
        response = self.public("POST", f"/api/v1/sessions/{session['id']}/join",
                               json={"pin": session["pin"], "client": client})
        assert response.status_code == 200, response.text
        return response.json()


def finish_stack(stack):
    status = stack.stop()
    assert status == 0, f"dev-stack exited with {status}:\n{stack.stderr()}"


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

    def __init__(self, stack, transport, username, password, client_id=None, ca_file="stack"):
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = {}
        self.connect_result = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or username,
            protocol=mqtt.MQTTv311,
            transport="websockets" if transport in ("ws", "wss") else "tcp")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *args: self.connected.clear()
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
