"""Client library for IoT Session Manager.

- :class:`AdminClient` talks to the admin API (trusted network): create, list, inspect and
  close sessions.
- :func:`join` asks the public API for a device token.
- :class:`SessionDevice` is a connected MQTT client confined to its session: topics you
  pass are relative to the session's topic root (``/{session_id}/``).
"""

from .admin import AdminClient, Session
from .device import Credentials, SessionDevice, join
from .errors import ApiError

__all__ = ["AdminClient", "ApiError", "Credentials", "Session", "SessionDevice", "join"]
