"""OpenAI-style API errors, raised by the lifecycle and turned into JSON by the server."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the fake answers with, in OpenAI's ``{"error": {...}}`` envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The ``ErrorResponse`` envelope; every field present, as the real API sends it."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def not_found(kind: str, object_id: str, *, param: str | None = None) -> ApiError:
    """404 worded like OpenAI's ("No run found with id 'run_x'.")."""
    return ApiError(404, f"No {kind} found with id '{object_id}'.", param=param)
