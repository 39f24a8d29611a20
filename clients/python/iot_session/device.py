"""Device side: join a session over the public API, then talk MQTT inside it.

Topics given to :class:`SessionDevice` are relative to the session's topic root, so a device
writes ``device.publish("lamp/state", b"on")`` and the message goes to
``/{session_id}/lamp/state``, the only tree its token allows.

The broker keeps each device's presence as a retained message on
``/{session_id}/$presence/{client}``; a subscription that covers it (``"#"``,
``"$presence/#"``) fills :attr:`SessionDevice.presence` instead of the message queue.
"""

import json
import threading
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import requests

from .errors import check
from .mqtt import Message, MqttConnection

__all__ = ["Credentials", "Message", "SessionDevice", "join"]


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


PRESENCE_PREFIX = "$presence/"


class SessionDevice(MqttConnection):
    """An MQTT connection confined to one session.

    ``presence`` maps the names of the session's devices to what the broker last said
    about them (``{"online": bool, "at": seconds, "reason": ...}``), once the device
    subscribed to a filter covering ``$presence/#``.

    ``broker`` is ``mqtt://host:port``, ``mqtts://host:port`` or ``ws(s)://host:port/path``.
    ``ca_file`` pins the CA for TLS connections. ``will`` (a topic relative to the session
    root, and a payload) and ``clean_session`` are passed on to :class:`MqttConnection`.
    """

    def __init__(self, credentials: Credentials, broker: str, ca_file: Optional[str] = None,
                 will: Optional[Tuple[str, Union[str, bytes]]] = None, clean_session: bool = True):
        self.credentials = credentials
        self._presence: Dict[str, dict] = {}
        self._presence_lock = threading.Lock()
        if will is not None:
            will = (self._absolute(will[0]), will[1])
        super().__init__(broker, credentials.username, credentials.token, credentials.client_id,
                         ca_file=ca_file, will=will, clean_session=clean_session)

    def _absolute(self, relative: str) -> str:
        return self.credentials.topic_root + relative.lstrip("/")

    def _message_topic(self, topic: str) -> str:
        root = self.credentials.topic_root
        return topic[len(root):] if topic.startswith(root) else topic

    @property
    def presence(self) -> Dict[str, dict]:
        """A copy of the session's device presence seen so far, by client name."""
        with self._presence_lock:
            return dict(self._presence)

    def _on_message(self, client, userdata, message):
        relative = self._message_topic(message.topic)
        if not relative.startswith(PRESENCE_PREFIX):
            super()._on_message(client, userdata, message)
            return
        name = relative[len(PRESENCE_PREFIX):]
        with self._presence_lock:
            if not message.payload:  # the session is over: the broker cleared it
                self._presence.pop(name, None)
                return
            try:
                self._presence[name] = json.loads(message.payload)
            except ValueError:
                pass  # only the broker writes here; anything else is not presence

    def subscribe(self, relative_filter: str, qos: int = 1, timeout: float = 10.0) -> bool:
        """Subscribe inside the session; returns whether the broker granted it."""
        return self.subscribe_absolute(self._absolute(relative_filter), qos, timeout)

    def subscribe_absolute(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> bool:
        """Subscribe to a filter as given (not rooted in the session); the broker decides."""
        return super().subscribe(topic_filter, qos, timeout)

    def publish(self, relative_topic: str, payload: Union[str, bytes], qos: int = 1,
                timeout: float = 10.0) -> None:
        """Publish inside the session."""
        super().publish(self._absolute(relative_topic), payload, qos, timeout)

    def __enter__(self) -> "SessionDevice":
        self.connect()
        return self
