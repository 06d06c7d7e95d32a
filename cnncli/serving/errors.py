"""The one error type of the HTTP API: an HTTP status, a short code and a message for people."""

from __future__ import annotations


class ApiError(Exception):
    """A request the server refuses; app.py turns it into a JSON answer with this status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, str | int]:
        """The answer's body: {"error": code, "message": ..., "status": ...}."""
        return {"error": self.code, "message": self.message, "status": self.status}
