"""Errors with a stable `code`, shared by every interface (HTTP maps them to statuses)."""

from __future__ import annotations


class BgAgentsError(Exception):
    """Base of every error an interface shows to a person: a stable code and a clear message."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(BgAgentsError):
    code = "invalid_input"
    status = 400


class UnknownModel(InvalidInput):
    code = "unknown_model"


class UnknownAgent(InvalidInput):
    code = "unknown_agent"


class NotFound(BgAgentsError):
    code = "not_found"
    status = 404


class Conflict(BgAgentsError):
    """The operation is not allowed in the task's current state."""

    code = "invalid_state"
    status = 409
