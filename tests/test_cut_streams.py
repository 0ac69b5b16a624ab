"""A cut stream is never a result, on every provider (issue 19 item 3).

A streamed answer that stops before its provider's terminal event (Chat Completions' `finish_reason`, the
Responses API's `response.completed`, Anthropic's `message_stop`) is a transient model error: retried, then
the fallback chain, then `failed`; never `completed` with the partial text. Each provider is driven over
real HTTP through pydantic-ai by a fake of its API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelEmptyResponseError,
    ModelHTTPError,
    ModelInvalidResponseError,
)
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Runtime
from bgagents.core.model_errors import classify
from bgagents.settings import LimitSettings

from .conftest import make_settings
from .fake_anthropic import FakeAnthropic, Reply, user_texts
from .fake_openai import FakeOpenAI, env_for

LIMITS = LimitSettings(retries=1, retry_backoff=0.001, stale_timeout=10, sweep_interval=0.05)


async def _run(tmp_path: Path, model: str, fallback: str) -> dict[str, Any]:
    """Three tasks: cut once then whole (retried), always cut with a fallback, always cut alone."""
    async with Runtime(make_settings(tmp_path, limits=LIMITS)) as rt:
        retried = await rt.launch("retried", model=f"{model}:cut-1-nofinish")
        fell_back = await rt.launch("fell back", model=f"{model}:cut-99-nofinish", fallback_models=[fallback])
        failed = await rt.launch("failed", model=f"{model}:cut-99-nofinish")
        return {name: await rt.wait(t.id, timeout=60)
                for name, t in (("retried", retried), ("fell back", fell_back), ("failed", failed))}


def _check(ends: dict[str, Any], model: str, fallback: str) -> None:
    done = ends["retried"]
    assert (done.status, done.result and done.result.text) == ("completed", "echo: retried"), done
    assert [a.model for a in done.attempts] == [f"{model}:cut-1-nofinish"]
    done = ends["fell back"]
    assert (done.status, done.result and done.result.text) == ("completed", "echo: fell back"), done
    assert [a.model for a in done.attempts] == [f"{model}:cut-99-nofinish", fallback]
    assert "cut_off_response" in (done.attempts[0].error or ""), done.attempts
    done = ends["failed"]
    assert (done.status, done.end_reason, done.result) == ("failed", "model_error", None), done
    assert "cut_off_response" in (done.error or ""), done.error


async def test_a_cut_chat_completions_or_responses_stream_is_never_a_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as fake:
        for key, value in env_for(fake.base_url).items():
            monkeypatch.setenv(key, value)
        for model in ("openai-chat", "openai"):  # `openai:` is the Responses API
            fake.records.clear()
            fake._flaky.clear()
            ends = await _run(tmp_path / model, model, f"{model}:echo")
            _check(ends, model, f"{model}:echo")
            assert fake.count("cut-1-nofinish") == 2 and fake.count("cut-99-nofinish") == 4  # each tried twice


def _anthropic_script(seen: dict[str, int]) -> Any:
    """`cut-K-nofinish`: the first K answers of that model stop mid-text; every other answer echoes."""
    def script(body: dict[str, Any]) -> Reply:
        model = str(body.get("model"))
        seen[model] = seen.get(model, 0) + 1
        cut = model.startswith("cut-") and seen[model] <= int(model.split("-")[1])
        text = "hal" + "lo, a partial answer that goes on" if cut else f"echo: {user_texts(body)[-1]}"
        return Reply(text=text, cut=cut)
    return script


async def test_a_cut_anthropic_stream_is_never_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}
    with FakeAnthropic(_anthropic_script(seen)) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        ends = await _run(tmp_path, "anthropic", "anthropic:echo")
    _check(ends, "anthropic", "anthropic:echo")
    assert seen["cut-1-nofinish"] == 2 and seen["cut-99-nofinish"] == 4


def _cut(error: Exception) -> Any:
    """A model whose answers stream "hal" and then fail with `error`, as a provider's stream would."""
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        yield "hal"
        raise error
    return stream


def _caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


FINISH = "Streamed response ended without a `finish_reason`"
# how pydantic-ai reported what happened, before 2.78 and since, and in words no release used
SHAPES: dict[str, tuple[Exception, str]] = {
    "cut, before 2.78": (ModelAPIError("m", FINISH), "cut_off_response"),
    "cut, 2.78": (ModelConnectionError("m", FINISH, phase="read"), "cut_off_response"),
    "cut, other words": (ModelAPIError("m", "the answer stopped short"), "cut_off_response"),
    "empty, 2.78": (ModelEmptyResponseError("m", "Streamed response ended without content"), "cut_off_response"),
    "reset, before 2.78": (_caused(ModelAPIError("m", "peer closed connection"), httpx2.RemoteProtocolError("x")),
                           "connection"),
    "reset, 2.78": (_caused(ModelConnectionError("m", "peer closed connection", phase="read"),
                            httpx2.ReadError("x")), "connection"),
    "reset, unwrapped": (ConnectionResetError(104, "Connection reset by peer"), "connection"),
    "unreadable": (_caused(ModelAPIError("m", "Failed to decode"), json.JSONDecodeError("x", "{", 1)),
                   "malformed_response"),
    "overloaded in the stream": (ModelHTTPError(529, "m", {"error": {"type": "overloaded_error"}}), "HTTP 529"),
}


async def test_a_cut_stream_is_classified_by_what_happened_in_every_shape(tmp_path: Path) -> None:
    """Whatever exception class and words a pydantic-ai release uses for it, a stream that breaks mid-answer
    is retried, then `failed` with the kind of what happened, never `completed` with "hal"."""
    async with Runtime(make_settings(tmp_path, limits=LIMITS)) as rt:
        for name, (error, _) in SHAPES.items():
            rt.register_model(name, FunctionModel(stream_function=_cut(error), model_name=name))
        tasks = {name: await rt.launch("x", model=name) for name in SHAPES}
        ends = {name: await rt.wait(task.id, timeout=60) for name, task in tasks.items()}
    for name, (_, kind) in SHAPES.items():
        done = ends[name]
        assert (done.status, done.end_reason, done.result) == ("failed", "model_error", None), (name, done)
        assert kind in (done.error or ""), (name, done.error)


def test_classification_says_what_happened() -> None:
    for name, (error, kind) in SHAPES.items():
        classified = classify(error, "m", mid_stream=True)
        assert classified.transient and kind in classified.message, (name, classified)
    # before any stream began, a refused body is unreadable, not cut
    assert classify(ModelAPIError("m", "Expected a JSON response"), "m").kind == "malformed_response"
    assert classify(ModelInvalidResponseError("m", "no choices"), "m").kind == "malformed_response"
    assert classify(_caused(ModelConnectionError("m", "refused", phase="connect"), httpx2.ConnectError("x")),
                    "m").kind == "connection"
    assert not classify(ModelHTTPError(401, "m", {}), "m", mid_stream=True).transient
    assert not classify(ValueError("a bug"), "m", mid_stream=True).transient
