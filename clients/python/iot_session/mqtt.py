"""One MQTT connection (paho) to the broker, with absolute topics.

:class:`MqttConnection` is the only wrapper around paho in the project: the device side of
the library (:class:`~iot_session.device.SessionDevice`) builds on it, and so do the
end-to-end tests. It connects over ``mqtt://``, ``mqtts://``, ``ws://`` or ``wss://``,
waits for the broker's answers (CONNACK, SUBACK, PUBACK) instead of guessing, and can
also behave like a real device: leave a will, keep a persistent session, or lose its
connection without a DISCONNECT.
"""

import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


@dataclass
class Message:
    topic: str
    """Topic as the connection reports it (relative to the session root for a device)."""
    payload: bytes


class MqttConnection:
    """An MQTT 3.1.1 client connection.

    ``broker`` is ``mqtt://host:port``, ``mqtts://host:port`` or ``ws(s)://host:port/path``;
    ``ca_file`` pins the CA for TLS connections; ``cert_file`` and ``key_file`` present a
    client certificate (the broker's certificate listener: the certificate a join with a
    CSR returned, which carries the token, so no username or password is needed).
    ``will`` is ``(topic, payload)``, sent by
    the broker if the connection is lost without a DISCONNECT. ``clean_session=False``
    asks the broker to keep the session (subscriptions, queued messages) across
    disconnects.
    """

    def __init__(self, broker: str, username: Optional[str], password: Optional[str],
                 client_id: str, ca_file: Optional[str] = None,
                 will: Optional[Tuple[str, Union[str, bytes]]] = None,
                 clean_session: bool = True, cert_file: Optional[str] = None,
                 key_file: Optional[str] = None):
        url = urlparse(broker)
        if url.scheme not in DEFAULT_PORTS:
            raise ValueError(f"unsupported broker URL {broker!r}: use mqtt, mqtts, ws or wss")
        self._host = url.hostname or "localhost"
        self._port = url.port or DEFAULT_PORTS[url.scheme]
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
            transport="websockets" if url.scheme in ("ws", "wss") else "tcp",
        )
        if url.scheme in ("ws", "wss"):
            self._client.ws_set_options(path=url.path or "/mqtt")
        if url.scheme in ("mqtts", "wss"):
            self._client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file,
                                 cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=0)
        if username is not None:
            self._client.username_pw_set(username, password)
        self.connected = threading.Event()
        """Set while the broker has accepted the connection and it is not lost."""
        self.connect_result = None
        """The CONNACK's reason code, once it arrived."""
        self.disconnected_at: Optional[float] = None
        """``time.monotonic()`` when an accepted connection was lost or closed."""
        self._answered = threading.Event()
        # SUBACKs can arrive before subscribe() returns its message id: the lock makes the
        # callback wait until the waiter is registered.
        self._subscribe_lock = threading.Lock()
        self._subscribed = {}
        self.messages: "queue.Queue[Message]" = queue.Queue()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def _message_topic(self, topic: str) -> str:
        """How a received topic is reported; subclasses may make it relative."""
        return topic

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connect_result = reason_code
        if not reason_code.is_failure:
            self.connected.set()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set():
            self.disconnected_at = time.monotonic()
        self.connected.clear()

    def _on_message(self, client, userdata, message):
        self.messages.put(Message(self._message_topic(message.topic), message.payload))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._subscribe_lock:
            waiter = self._subscribed.pop(mid, None)
        if waiter is not None:
            waiter[1].extend(reason_codes)
            waiter[0].set()

    def start(self) -> None:
        """Opens the network connection and sends CONNECT without waiting for the answer."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Whether the broker accepted the connection within ``timeout`` seconds."""
        self._answered.wait(timeout)
        return self.connected.is_set()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and wait for the broker's answer; raises ConnectionRefusedError on refusal."""
        self.start()
        if not self._answered.wait(timeout):
            self.close()
            raise TimeoutError("no CONNACK from the broker")
        if not self.connected.is_set():
            self.close()
            raise ConnectionRefusedError(f"broker refused the connection: {self.connect_result}")

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> bool:
        """Subscribe to a filter as given; returns whether the broker granted it."""
        done = threading.Event()
        codes = []
        with self._subscribe_lock:
            _, mid = self._client.subscribe(topic_filter, qos)
            self._subscribed[mid] = (done, codes)
        if not done.wait(timeout):
            raise TimeoutError(f"no SUBACK for {topic_filter}")
        return all(not code.is_failure for code in codes)

    def publish(self, topic: str, payload: Union[str, bytes], qos: int = 1,
                timeout: float = 10.0) -> None:
        """Publish and wait until paho has sent it (QoS 0) or the broker acknowledged it."""
        self._client.publish(topic, payload, qos).wait_for_publish(timeout)

    def receive(self, timeout: float = 5.0) -> Message:
        """The next message; raises queue.Empty after ``timeout``."""
        return self.messages.get(timeout=timeout)

    def next_message(self, timeout: float = 5.0) -> Optional[Message]:
        """The next message, or None if none arrives within ``timeout``."""
        try:
            return self.receive(timeout)
        except queue.Empty:
            return None

    def received_within(self, timeout: float) -> List[Message]:
        """Every message that arrives within ``timeout`` seconds."""
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

    def drop(self) -> None:
        """Loses the connection without a DISCONNECT, as a device that loses power would
        (the broker then sends its will)."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
