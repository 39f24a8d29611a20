"""Device side: join a session over the public API, then talk MQTT inside it.

Topics given to :class:`SessionDevice` are relative to the session's topic root, so a device
writes ``device.publish("lamp/state", b"on")`` and the message goes to
``/{session_id}/lamp/state``, the only tree its token allows.
"""

import queue
import ssl
import threading
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import requests

from .errors import check


@dataclass
class Credentials:
    """What a join returns: MQTT username, client id and password (the token)."""

    token: str
    username: str
    client_id: str
    session_id: str
    topic_root: str
    expires_at: Optional[int]


def join(public_url: str, session_id: str, pin: str, client: str, timeout: float = 10.0) -> Credentials:
    """Ask the public API for a token for ``client`` in session ``session_id``."""
    url = f"{public_url.rstrip('/')}/api/v1/sessions/{session_id}/join"
    body = check(requests.post(url, json={"pin": pin, "client": client}, timeout=timeout)).json()
    return Credentials(
        token=body["token"],
        username=body["username"],
        client_id=body["client_id"],
        session_id=body["session_id"],
        topic_root=body["topic_root"],
        expires_at=body.get("expires_at"),
    )


@dataclass
class Message:
    topic: str
    """Topic relative to the session root."""
    payload: bytes


class SessionDevice:
    """An MQTT connection confined to one session.

    ``broker`` is ``mqtt://host:port``, ``mqtts://host:port`` or ``ws(s)://host:port/path``.
    ``ca_file`` pins the CA for TLS connections.
    """

    def __init__(self, credentials: Credentials, broker: str, ca_file: Optional[str] = None):
        self.credentials = credentials
        url = urlparse(broker)
        websockets = url.scheme in ("ws", "wss")
        tls = url.scheme in ("mqtts", "wss")
        self._host = url.hostname or "localhost"
        self._port = url.port or {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}[url.scheme]
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=credentials.client_id,
            transport="websockets" if websockets else "tcp",
        )
        if websockets:
            self._client.ws_set_options(path=url.path or "/mqtt")
        if tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.username_pw_set(credentials.username, credentials.token)
        self._connected = threading.Event()
        self._connect_result = None
        # SUBACKs can arrive before subscribe() returns its message id: the lock makes the
        # callback wait until the waiter is registered.
        self._subscribe_lock = threading.Lock()
        self._subscribed = {}
        self.messages: "queue.Queue[Message]" = queue.Queue()
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def _absolute(self, relative: str) -> str:
        return self.credentials.topic_root + relative.lstrip("/")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._connect_result = reason_code
        self._connected.set()

    def _on_message(self, client, userdata, message):
        topic = message.topic
        root = self.credentials.topic_root
        self.messages.put(Message(topic[len(root):] if topic.startswith(root) else topic, message.payload))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._subscribe_lock:
            event = self._subscribed.pop(mid, None)
        if event is not None:
            event[1].extend(reason_codes)
            event[0].set()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and wait for the broker's answer; raises ConnectionRefusedError on refusal."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise TimeoutError("no CONNACK from the broker")
        if self._connect_result is None or self._connect_result.is_failure:
            self.close()
            raise ConnectionRefusedError(f"broker refused the connection: {self._connect_result}")

    def subscribe(self, relative_filter: str, qos: int = 1, timeout: float = 10.0) -> bool:
        """Subscribe inside the session; returns whether the broker granted it."""
        return self.subscribe_absolute(self._absolute(relative_filter), qos, timeout)

    def subscribe_absolute(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> bool:
        """Subscribe to a filter as given (not rooted in the session); the broker decides."""
        done = threading.Event()
        codes = []
        with self._subscribe_lock:
            _, mid = self._client.subscribe(topic_filter, qos)
            self._subscribed[mid] = (done, codes)
        if not done.wait(timeout):
            raise TimeoutError("no SUBACK from the broker")
        return all(not code.is_failure for code in codes)

    def publish(self, relative_topic: str, payload: bytes, qos: int = 1, timeout: float = 10.0) -> None:
        info = self._client.publish(self._absolute(relative_topic), payload, qos)
        info.wait_for_publish(timeout)

    def receive(self, timeout: float = 5.0) -> Message:
        """The next message for this device; raises queue.Empty after ``timeout``."""
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> "SessionDevice":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
