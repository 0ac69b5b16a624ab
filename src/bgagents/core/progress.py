"""Progress of a running task, read off its own stream at no token cost.

Every change is stored with its event, then announced, so a watcher sees a tool call as it starts.
After a crash DBOS replays a turn's finished steps from their checkpoints without running them; the
tracker counts those replayed results too (`replayed_response`, `replayed_tool`), in memory only, so
the figures and the budgets after a recovery are those of the same run without a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ToolCallPart,
)

from ..tools import summarize_args
from .events import EventBus
from .schema import Progress, TodoCounts
from .store import Store

MAX_MESSAGE = 500
RECENT = 5
TEXT_EVENT_INTERVAL = 0.25  # seconds between streamed-text progress events


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


_UNPRICED: set[tuple[str | None, str | None, str | None]] = set()  # models genai-prices does not know


def _cost(response: ModelResponse) -> float | None:
    """The response's price where genai-prices knows the model, else None. pydantic-ai has usually priced
    it already (`usage.cost`); a model found unpriced once is not looked up again (a lookup costs ~1 ms)."""
    if response.usage.cost is not None:
        return float(response.usage.cost)
    if not response.model_name or not (response.usage.input_tokens or response.usage.output_tokens):
        return None
    key = (response.model_name, response.provider_name, response.provider_url)
    if key in _UNPRICED:
        return None
    try:
        return float(response.cost().total_price)
    except Exception:  # an unknown model or provider has no price
        _UNPRICED.add(key)
        return None


class ProgressTracker:
    def __init__(self, task_id: str, turn: int, progress: Progress, persisted: int, store: Store, bus: EventBus,
                 clock: Callable[[], float] = time.time) -> None:
        self.task_id = task_id
        self.turn = turn
        self.progress = progress.model_copy(deep=True)
        self.persisted = persisted  # transcript messages already stored
        self.store = store
        self.bus = bus
        self.clock = clock
        self._streamed_text = ""
        self._last_text_event = 0.0
        self._step_todos: list[dict[str, Any]] | None = None  # the todos a tool step wrote, for its replay

    def _activity(self, line: str) -> None:
        now = self.clock()
        self.progress.last_activity_at = now
        self.progress.recent = [*self.progress.recent, _cut(line, 160)][-RECENT:]

    def _values(self) -> dict[str, Any]:
        return {"progress": self.progress.model_dump(mode="json"), "last_activity_at": self.progress.last_activity_at}

    async def _save(self, event_type: str, data: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        event = await self.store.update_task(self.task_id, {**self._values(), **(extra or {})}, event_type,
                                             {"progress": self.progress.model_dump(mode="json"), **data})
        if event is not None and event is not True:
            self.bus.announce(event)  # type: ignore[arg-type]

    async def on_stream_event(self, event: ModelResponseStreamEvent) -> None:
        """Streamed text becomes `last_message`, at most every TEXT_EVENT_INTERVAL seconds."""
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            self._streamed_text = event.part.content
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
            self._streamed_text += event.delta.content_delta
        else:
            return
        now = self.clock()
        if now - self._last_text_event >= TEXT_EVENT_INTERVAL and self._streamed_text.strip():
            self._last_text_event = now
            self.progress.last_message = _cut(self._streamed_text)
            self.progress.last_activity_at = now
            await self._save("task.progress", {"kind": "text"})

    def _count_response(self, response: ModelResponse) -> None:
        self.progress.requests += 1
        self.progress.input_tokens += response.usage.input_tokens or 0
        self.progress.output_tokens += response.usage.output_tokens or 0
        cost = _cost(response)
        if cost is not None:
            self.progress.cost_usd = round((self.progress.cost_usd or 0.0) + cost, 6)
        text = "".join(p.content for p in response.parts if isinstance(p, TextPart))
        if text.strip():
            self.progress.last_message = _cut(text)
            self._activity(f"said: {text}")
        else:
            self.progress.last_activity_at = self.clock()
        self._streamed_text = ""

    def replayed_response(self, response: ModelResponse) -> None:
        """A model request DBOS answered from its checkpoint: counted, not stored again."""
        self._count_response(response)

    def _first_unsaved(self, messages: Sequence[ModelMessage]) -> int:
        """Where the messages sent to the model stop matching the stored transcript. pydantic-ai merges a
        new request into a trailing one (a session forked or resumed after a request), so that request is
        stored again, now with the new prompt in it."""
        start = min(self.persisted, len(messages))
        if start and isinstance(messages[start - 1], ModelRequest):
            start -= 1
        return start

    async def on_response(self, messages: Sequence[ModelMessage], response: ModelResponse) -> None:
        """Stores the transcript up to this response together with the new progress, in one transaction.

        `messages` are those the model was sent, i.e. the history as pydantic-ai cleaned it."""
        self._count_response(response)
        start = self._first_unsaved(messages)
        new = [*messages[start:], response]
        calls = [p.tool_name for p in response.parts if isinstance(p, ToolCallPart)]
        event = await self.store.save_messages(
            self.task_id, self.turn, start, new, task_values=self._values(), event_type="task.progress",
            event_data={"kind": "response", "tool_calls": calls, "progress": self.progress.model_dump(mode="json"),
                        # which transcript messages this stored (the response last), and the response's own
                        # usage: what an interface needs to show the response without a second event
                        "messages": [start, start + len(new)],
                        "thinking": any(isinstance(p, ThinkingPart) for p in response.parts),
                        "usage": {"input_tokens": response.usage.input_tokens,
                                  "output_tokens": response.usage.output_tokens,
                                  "cache_read_tokens": response.usage.cache_read_tokens,
                                  "cache_write_tokens": response.usage.cache_write_tokens}},
        )
        self.persisted = start + len(new)
        if event is not None:
            self.bus.announce(event)

    async def on_model_error(self, model: str, kind: str, status: int | None, message: str) -> None:
        """A model request that failed and is tried again (after a backoff, or on the next model): an event,
        so a watcher sees why the task waits (a 429's rate limit, an overloaded provider)."""
        self.progress.last_activity_at = self.clock()
        await self._save("task.model_retry", {"model": model, "kind": kind, "status": status, "error": message})

    def _count_tool(self, name: str, args: dict[str, Any]) -> None:
        self.progress.tool_calls += 1
        self.progress.last_tool = name
        self.progress.last_tool_args = summarize_args(name, args)
        self._activity(self.progress.last_tool_args)

    async def on_tool_start(self, name: str, args: dict[str, Any]) -> None:
        started = self.clock()
        self._step_todos = None
        self._count_tool(name, args)
        await self._save("task.tool_call", {"tool": name, "args": self.progress.last_tool_args, "started": started})

    def step_todos(self) -> list[dict[str, Any]] | None:
        """The todos written during the current tool step (kept in its checkpoint for a replay)."""
        return self._step_todos

    def replayed_tool(self, name: str, args: dict[str, Any], todos: list[dict[str, Any]] | None) -> None:
        """A tool call DBOS answered from its checkpoint: counted, not stored again."""
        self._count_tool(name, args)
        if todos is not None:
            self._count_todos(todos)

    async def on_tool_end(self, name: str, error: str | None) -> None:
        """A failed call is an event; a successful one shows in the next response's progress (one write less)."""
        self.progress.last_activity_at = self.clock()
        if error is not None:
            await self._save("task.tool_result", {"tool": name, "ok": False, "error": error})

    def _count_todos(self, todos: list[dict[str, Any]]) -> None:
        done = sum(1 for t in todos if t.get("status") in ("completed", "cancelled"))
        current = next((t.get("content") for t in todos if t.get("status") == "in_progress"), None)
        self.progress.todos = TodoCounts(done=done, total=len(todos), current=current)
        self._activity(f"todos: {done}/{len(todos)} done")

    async def on_todos(self, todos: list[dict[str, Any]]) -> None:
        self._step_todos = todos
        self._count_todos(todos)
        await self._save("task.todos", {"todos": todos}, extra={"todos": todos})
