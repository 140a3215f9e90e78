"""Errors a request gets: a status and a message, sent as JSON `{"error": "..."}`, never a traceback."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ServiceError(Exception):
    """A request the service cannot answer with summaries: its HTTP status, a message saying why, and headers
    (`Retry-After` for an overloaded service, `WWW-Authenticate` for a missing key)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, headers=self.headers)


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body `{"error": message}` with `status`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)
