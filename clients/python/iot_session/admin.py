"""Admin API client: sessions are created, listed, inspected and closed here."""

from dataclasses import dataclass, field
from typing import Iterator, List, Optional

import requests

from .errors import check


@dataclass
class Session:
    id: str
    type: str
    created_at: int
    expires_at: Optional[int]
    topic_root: str
    pin: Optional[str] = None
    clients: List[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict) -> "Session":
        return cls(
            id=body["id"],
            type=body.get("type", "default"),
            created_at=body.get("created_at", 0),
            expires_at=body.get("expires_at"),
            topic_root=body.get("topic_root", f"/{body['id']}/"),
            pin=body.get("pin"),
            clients=body.get("clients") or [],
        )


class AdminClient:
    """Talks to the admin port. ``api_key`` is sent as a Bearer token when given."""

    def __init__(self, base_url: str, api_key: Optional[str] = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.timeout = timeout
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def create_session(self, type: str = "default", ttl_secs: Optional[int] = None,
                       max_clients: Optional[int] = None) -> Session:
        body = {"type": type}
        if ttl_secs is not None:
            body["ttl_secs"] = ttl_secs
        if max_clients is not None:
            body["max_clients"] = max_clients
        response = check(self.http.post(f"{self.base_url}/api/v1/sessions", json=body, timeout=self.timeout))
        return Session.from_json(response.json())

    def get_session(self, session_id: str) -> Session:
        response = check(self.http.get(f"{self.base_url}/api/v1/sessions/{session_id}", timeout=self.timeout))
        return Session.from_json(response.json())

    def sessions(self, page_size: int = 100) -> Iterator[Session]:
        """Every live session, following the pagination cursor."""
        params = {"limit": page_size}
        while True:
            response = check(self.http.get(f"{self.base_url}/api/v1/sessions", params=params, timeout=self.timeout))
            body = response.json()
            for item in body["sessions"]:
                yield Session.from_json(item)
            cursor = body.get("next")
            if not cursor:
                return
            params = {"limit": page_size, "after": cursor}

    def close_session(self, session_id: str) -> None:
        check(self.http.delete(f"{self.base_url}/api/v1/sessions/{session_id}", timeout=self.timeout))
