"""Model errors, classified: transient ones are retried and then fall back; permanent ones fail at once.

An error is classified by what happened, never by a library's wording or the name of its exception class
(both moved between pydantic-ai releases): an HTTP status (or the provider's own error kind), a connection
that failed or broke (a transport error anywhere in the chain of causes), a body that could not be decoded,
or a stream that ended before its answer was whole. The last is judged by us when a stream ends (see
`ensure_whole`), and when pydantic-ai itself refuses a stream mid-way for a reason that is none of the
others. The result is picklable, so it crosses a DBOS step boundary intact.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from pydantic_ai import exceptions as exc
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import Model

# the provider said so: waiting or another try may help
TRANSIENT = (exc.ModelRateLimitError, exc.ModelUnavailableError, exc.ModelServerError, exc.ModelConnectionError)
# the provider said so: the same request will not succeed (quota, credentials, a request it rejects)
PERMANENT = (exc.ModelQuotaExceededError, exc.ModelRequestRejectedError)
RETRY_STATUSES = frozenset({408, 409, 425, 429})
DECODING = (json.JSONDecodeError, UnicodeDecodeError, ValidationError)
CUT_OFF = "cut_off_response"


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


def _transport_errors() -> tuple[type[BaseException], ...]:
    """A connection that could not be made or broke: the transport errors of the HTTP stacks provider SDKs use.
    Only stacks already imported are looked at (an error of one never imported cannot be in a chain), so
    classifying never imports one. The SDKs' own connection errors are raised from these."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("httpcore2", ("NetworkError", "ProtocolError", "TimeoutException")),
                          ("httpcore", ("NetworkError", "ProtocolError", "TimeoutException")),
                          ("aiohttp", ("ClientConnectionError", "ClientPayloadError"))):
        loaded = sys.modules.get(module)
        found += [error for name in names if isinstance(error := getattr(loaded, name, None), type)]
    return tuple(found)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from or while handling, nearest first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _provider_kind(error: BaseException) -> str | None:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            kind = inner.get("code") or inner.get("type")
            if kind:
                return str(kind)
    for attribute in ("provider_error_code", "provider_error_type"):
        if isinstance(value := getattr(error, attribute, None), str) and value:
            return value
    return None


def _what_happened(error: BaseException, status: int | None, mid_stream: bool) -> tuple[str, bool]:
    """(kind, transient) of an error raised by a model request; `mid_stream` says a stream had begun."""
    chain = list(_chain(error))
    if status is not None:
        if isinstance(error, PERMANENT):
            return "http_status", False
        return "http_status", status in RETRY_STATUSES or status >= 500
    if isinstance(error, PERMANENT):
        return "rejected", False
    if any(isinstance(e, _transport_errors()) for e in chain):
        return "connection", True
    if any(isinstance(e, DECODING) for e in chain):
        return "malformed_response", True
    if isinstance(error, (exc.ModelAPIError, exc.UnexpectedModelBehavior)):
        # the library refused the answer, for none of the reasons above: in a stream, because the stream ended
        # before the answer was whole (no finish reason); otherwise because the body was not a usable answer
        return (CUT_OFF if mid_stream else "malformed_response"), True
    if isinstance(error, TRANSIENT):
        return "provider_error", True
    return "error", False


def classify(error: BaseException, model: str, mid_stream: bool = False) -> ModelCallError:
    """The classified form of an error raised by a model request (`mid_stream`: after its stream had begun)."""
    if isinstance(error, ModelCallError):
        return error
    status = _status(error)
    provider_kind = _provider_kind(error)
    kind, transient = _what_happened(error, status, mid_stream)
    where = f"HTTP {status}" if status else kind
    detail = f" ({provider_kind})" if provider_kind else ""
    message = f"model {model}: {where}{detail}: {_short(error)}"
    return ModelCallError(message, transient, kind, status, provider_kind)


def ensure_whole(response: ModelResponse, model: Model, name: str) -> None:
    """Raises a transient `cut_off_response` unless a streamed answer reached its provider's end.

    A stream may end cleanly (no error) before the provider's terminal event: OpenAI's Responses API without
    `response.completed`, Anthropic's without its stop reason and `message_stop`. Newer pydantic-ai releases
    mark such an answer `incomplete`; older ones only leave its finish reason unset. Either way the text so far is
    a fragment, never a result. (A Chat Completions stream without `finish_reason` is refused by pydantic-ai
    itself, see `models.whole_answers_only`, and classified as cut off by `classify`.)"""
    state = getattr(response, "state", "complete")
    if state == "incomplete" or (state == "complete" and response.finish_reason is None
                                 and _promises_finish_reason(model)):
        raise ModelCallError(f"model {name}: {CUT_OFF}: the stream ended before the answer's end (no finish_reason"
                             " or terminal event); the partial answer was discarded", True, CUT_OFF)


def _promises_finish_reason(model: Model) -> bool:
    """Models whose every whole streamed answer carries a finish reason (from the provider's terminal event).
    A model class whose module was never imported cannot be this model's, so none is imported here."""
    classes = [getattr(sys.modules.get(module), name, None) for module, name in
               (("pydantic_ai.models.anthropic", "AnthropicModel"),
                ("pydantic_ai.models.openai", "OpenAIResponsesModel"))]
    return any(isinstance(cls, type) and isinstance(model, cls) for cls in classes)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"
