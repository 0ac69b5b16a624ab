"""Model errors, classified: transient ones are retried and then fall back; permanent ones fail at once.

pydantic-ai already sorts provider errors into kinds (rate limit, overload, quota, context window, …);
this adds the HTTP status and the provider's own error kind, and makes the result picklable so it
crosses a DBOS step boundary intact.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import exceptions as exc

TRANSIENT = (exc.ModelRateLimitError, exc.ModelUnavailableError, exc.ModelServerError, exc.ModelConnectionError)
PERMANENT = (exc.ModelQuotaExceededError, exc.ModelRequestRejectedError)


class ModelCallError(Exception):
    """A failed model request: `transient` says whether trying again (or another model) may help."""

    def __init__(self, message: str, transient: bool, kind: str, status: int | None = None,
                 provider_kind: str | None = None) -> None:
        super().__init__(message, transient, kind, status, provider_kind)
        self.message = message
        self.transient = transient
        self.kind = kind
        self.status = status
        self.provider_kind = provider_kind

    def __str__(self) -> str:
        return self.message


class StaleRequest(ModelCallError):
    """No activity on a model request for the stale timeout."""

    def __init__(self, message: str, *_: Any) -> None:
        super().__init__(message, True, "stale")


def _provider_kind(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            kind = error.get("code") or error.get("type")
            return str(kind) if kind else None
    return None


def classify(error: BaseException, model: str) -> ModelCallError:
    """The classified form of an error raised by a model request."""
    if isinstance(error, ModelCallError):
        return error
    status = getattr(error, "status_code", None)
    provider_kind = _provider_kind(getattr(error, "body", None))
    kind = type(error).__name__.removeprefix("_HTTP").removesuffix("Error").lower() or "error"
    if isinstance(error, PERMANENT):
        transient = False
    elif isinstance(error, TRANSIENT):
        transient = True
    elif isinstance(error, exc.ModelHTTPError):
        transient = status in (408, 409, 425, 429) or (status is not None and status >= 500)
    elif isinstance(error, exc.UnexpectedModelBehavior) or type(error) is exc.ModelAPIError:
        # an answer that could not be read (not JSON, cut off before its end): another try may be whole
        transient = True
        kind = "cut_off_response" if "finish_reason" in str(error) else "malformed_response"
    elif isinstance(error, (TimeoutError, ConnectionError)):
        transient, kind = True, "connection"
    else:
        transient, kind = False, "error"
    where = f"HTTP {status}" if status else kind
    detail = f" ({provider_kind})" if provider_kind else ""
    message = f"model {model}: {where}{detail}: {_short(error)}"
    return ModelCallError(message, transient, kind, status, provider_kind)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"
