"""Client library for IoT Session Manager.

- :class:`AdminClient` talks to the admin API (trusted network): create, list, inspect and
  close sessions.
- :func:`join` asks the public API for a device token.
- :class:`SessionDevice` is a connected MQTT client confined to its session: topics you
  pass are relative to the session's topic root (``/{session_id}/``).
- :class:`MqttConnection` is the plain MQTT connection underneath (absolute topics, wills,
  persistent sessions, abrupt drops), for tools and tests that act as arbitrary clients.
"""

from .admin import AdminClient, Session
from .device import Credentials, SessionDevice, join
from .errors import ApiError
from .mqtt import Message, MqttConnection

__all__ = [
    "AdminClient", "ApiError", "Credentials", "Message", "MqttConnection", "Session",
    "SessionDevice", "join",
]
