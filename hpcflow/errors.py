"""One exception tree for the whole project; the API maps each class to an HTTP status."""

from __future__ import annotations

from typing import Any


class HpcflowError(Exception):
    """Base of every error hpcflow raises on purpose."""

    status = 500

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_response(self) -> dict[str, Any]:
        """Render as torc's default_error_response plus a readable message."""
        error: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        if self.field:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {
            "error": error,
            "errorNum": self.status,
            "errorMessage": self.message,
            "code": self.status,
        }


class BadRequest(HpcflowError):
    """Malformed request: unparsable JSON, bad query parameter."""

    status = 400


class Unauthorized(HpcflowError):
    """The request carries no valid credentials for a server that requires them."""

    status = 401


class NotFound(HpcflowError):
    """A workflow or document that does not exist."""

    status = 404


class Conflict(HpcflowError):
    """Stale revision, illegal state change, or a duplicate."""

    status = 409


class Invalid(HpcflowError):
    """Well-formed input that fails validation (types, required fields, references)."""

    status = 422


class SubmitterError(HpcflowError):
    """A scheduler command or cloud call failed; carries what it ran and what it said."""

    status = 502

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        exit_code: int | None = None,
        stdout: str = "",
        stderr: str = "",
        code: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(
            message, command=command, exit_code=exit_code, stdout=stdout, stderr=stderr, code=code
        )
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        # AWS's error code (e.g. InsufficientInstanceCapacity); None for shell commands.
        self.code = code
        # True when retrying the same call later may succeed.
        self.transient = transient
