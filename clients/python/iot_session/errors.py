"""The one error type of the library: what the service answered when it said no."""


class ApiError(Exception):
    """An HTTP error from the service, with its ``{"error": {"code", "message"}}`` body."""

    def __init__(self, status: int, code: str, message: str, retry_after: "int | None" = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response) -> "ApiError":
        code, message = "http_error", response.text[:200]
        try:
            body = response.json()
            code = body["error"]["code"]
            message = body["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        retry_after = response.headers.get("Retry-After")
        return cls(response.status_code, code, message, int(retry_after) if retry_after and retry_after.isdigit() else None)


def check(response):
    """Return the response if it succeeded, else raise :class:`ApiError`."""
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    return response
