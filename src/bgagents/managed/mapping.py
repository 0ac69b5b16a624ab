"""bgagents events ⇄ Managed Agents session events.

A session's events are *derived* from its task's stored events (the core's `bg_events`, plus the
`managed.event` records this package writes for what a user sends), never stored twice: each stored
event maps to zero or more session events, numbered `k` within it. So an event's id and its place
(`seq.k`, the cursor of lists and of the stream's `id:`) are the same on every read, after any
restart; a client that lost its stream lists the events after the last one it saw, or reconnects
with `Last-Event-ID`, and gets each event exactly once.

A response's content (text, tool calls, the tool results before it) is read from the transcript
messages the response event names: they are stored in the same transaction as the event.

Ids: `sevt_{seq}_{k}`, except an `agent.tool_use`, whose id is `sevt_` + the id of the approval its
call asks for (or would ask for): a `user.tool_confirmation` names that id, and the approval follows
from it without any lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..core.runner import approval_id_of
from ..core.schema import Event, TranscriptEntry
from .specs import permissions_of

Transcript = Callable[[str, int, int], Awaitable[list[TranscriptEntry]]]  # task id, since, limit
Mapped = list[tuple[str, dict[str, Any]]]  # (cursor, session event)

USER_EVENT = "managed.event"  # a stored event this package wrote: data["event"] is the session event
EVALUATION = {"allow": "always_allow", "ask": "always_ask"}
TOOL_USE_PREFIX = "sevt_"


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


def cursor(seq: int, k: int) -> str:
    return f"{seq}.{k}"


def parse_cursor(text: str) -> tuple[int, int] | None:
    found = re.fullmatch(r"([0-9]{1,12})\.([0-9]{1,4})", text.strip())
    return (int(found[1]), int(found[2])) if found else None


def tool_use_id(approval_id: str) -> str:
    return TOOL_USE_PREFIX + approval_id


def approval_of(tool_use: str) -> str | None:
    """The approval an `agent.tool_use` event's id names (None when it is not a tool use's id)."""
    rest = tool_use.removeprefix(TOOL_USE_PREFIX)
    return rest if rest != tool_use and re.fullmatch(r"ap_[0-9a-f]{10}", rest) else None


def _error_type(status: int | None) -> str:
    if status == 429:
        return "model_rate_limited_error"
    if status in (503, 529):
        return "model_overloaded_error"
    return "model_request_failed_error"


def _status_in(message: str) -> int | None:
    found = re.search(r"HTTP ([0-9]{3})", message or "")
    return int(found[1]) if found else None


class Mapper:
    """Maps one session's stored events; `agent` is the session's agent version (for the permission
    each tool call was evaluated with)."""

    def __init__(self, task_id: str, agent: dict[str, Any], transcript: Transcript) -> None:
        self.task_id = task_id
        self.permissions = permissions_of(agent)
        self.transcript = transcript

    async def map(self, event: Event) -> Mapped:
        made = await self._events(event)
        at = rfc3339(event.time)
        out: Mapped = []
        for k, item in enumerate(made):
            item.setdefault("id", f"sevt_{event.seq}_{k}")
            item["processed_at"] = at
            out.append((cursor(event.seq, k), item))
        return out

    async def _events(self, event: Event) -> list[dict[str, Any]]:
        data, kind = event.data, event.type
        if kind == USER_EVENT:
            return [dict(data["event"])]
        if kind in ("task.running", "task.recovered", "task.approved", "task.denied"):
            return [{"type": "session.status_running"}]
        if kind == "task.interrupted":
            return [{"type": "session.status_rescheduled"}]
        if kind == "task.model_retry":
            error = {"type": _error_type(data.get("status")), "message": str(data.get("error") or ""),
                     "retry_status": {"type": "retrying"}}
            return [{"type": "session.error", "error": error}, {"type": "session.status_rescheduled"}]
        if kind == "task.progress" and data.get("kind") == "response" and data.get("messages"):
            return await self._response(event)
        if kind == "task.waiting":
            approval = data.get("approval") or {}
            return [{"type": "session.status_idle", "stop_details": None,
                     "stop_reason": {"type": "requires_action", "event_ids": [tool_use_id(str(approval.get("id")))]}}]
        if kind in ("task.completed", "task.cancelled"):
            return [{"type": "session.status_idle", "stop_details": None, "stop_reason": {"type": "end_turn"}}]
        if kind == "task.failed":
            return self._failed(data)
        return []

    def _failed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = str(data.get("error") or "the turn failed")
        if data.get("end_reason") == "model_error":
            error = {"type": _error_type(_status_in(message)), "message": message,
                     "retry_status": {"type": "exhausted"}}
        else:
            error = {"type": "unknown_error", "message": message, "retry_status": {"type": "terminal"}}
        return [{"type": "session.error", "error": error},
                {"type": "session.status_idle", "stop_details": None, "stop_reason": {"type": "retries_exhausted"}}]

    async def _response(self, event: Event) -> list[dict[str, Any]]:
        """A model response: the tool results of the request it answers, then its request span around its
        thinking, text and tool calls."""
        start, end = (int(n) for n in event.data["messages"])
        entries = await self.transcript(self.task_id, start, max(1, end - start)) if end > start else []
        out: list[dict[str, Any]] = []
        for entry in entries:  # the request just before it: a replay may store earlier ones again, mapped before
            if entry.index == end - 2 and entry.role in ("tool_result", "retry") and entry.tool_call_id:
                approval = approval_id_of(self.task_id, entry.turn, entry.tool_call_id)
                out.append({"type": "agent.tool_result", "tool_use_id": tool_use_id(approval),
                            "content": [{"type": "text", "text": entry.content}],
                            "is_error": entry.role == "retry"})
        start_id = f"sevt_{event.seq}_{len(out)}"
        out.append({"type": "span.model_request_start"})
        if event.data.get("thinking"):
            out.append({"type": "agent.thinking"})
        last = [e for e in entries if e.index == end - 1]
        text = "".join(e.content for e in last if e.role == "assistant")
        if text:
            out.append({"type": "agent.message", "content": [{"type": "text", "text": text}]})
        for entry in last:
            if entry.role == "tool_call" and entry.tool_name and entry.tool_call_id:
                out.append(self._tool_use(entry))
        usage = event.data.get("usage") or {}
        out.append({"type": "span.model_request_end", "model_request_start_id": start_id, "is_error": False,
                    "model_usage": {"input_tokens": usage.get("input_tokens") or 0,
                                    "output_tokens": usage.get("output_tokens") or 0,
                                    "cache_read_input_tokens": usage.get("cache_read_tokens") or 0,
                                    "cache_creation_input_tokens": usage.get("cache_write_tokens") or 0,
                                    "speed": "standard"}})
        return out

    def _tool_use(self, entry: TranscriptEntry) -> dict[str, Any]:
        assert entry.tool_name is not None and entry.tool_call_id is not None
        try:
            arguments = json.loads(entry.content) if entry.content else {}
        except ValueError:
            arguments = {"_raw": entry.content}
        permission = self.permissions.get(entry.tool_name, "deny")
        item: dict[str, Any] = {"type": "agent.tool_use",
                                "id": tool_use_id(approval_id_of(self.task_id, entry.turn, entry.tool_call_id)),
                                "name": entry.tool_name, "input": arguments if isinstance(arguments, dict) else {},
                                "evaluated_permission": permission}
        if permission in EVALUATION:
            item["evaluation"] = {"type": EVALUATION[permission]}
        return item
