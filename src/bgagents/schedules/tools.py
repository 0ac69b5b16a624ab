"""The tools a conversation's sessions (its main agent first) get to make schedules for the person
("remind me tomorrow at 9"): each schedule sends this conversation a `schedule-trigger` event."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_ai import ModelRetry, RunContext
from pydantic_ai.toolsets import FunctionToolset

from ..errors import BgAgentsError
from ..tools import ToolContext
from .spec import ScheduleSpec
from .timing import iso

if TYPE_CHECKING:
    from .scheduler import Schedules


def schedule_toolset(schedules: Schedules) -> FunctionToolset[ToolContext]:
    async def conversation_of(ctx: RunContext[ToolContext]) -> str:
        convs = schedules.conversations
        session = await convs.store.run(convs.store.session_sync, ctx.deps.task_id) if convs else None
        if session is None:
            raise ModelRetry("schedules can only be made from a conversation's session")
        return str(session.conversation_id)

    async def schedule_create(ctx: RunContext[ToolContext], name: str, prompt: str, at: str | None = None,
                              cron: str | None = None, timezone: str | None = None) -> str:
        """Schedule a prompt for later: it comes back to you as a schedule-trigger event at that time.

        Give either `at` (once) or `cron` (repeating). Work out times from the event's time.

        Args:
            name: A short unique name, e.g. "call-mom" (letters, digits, '-', '_', '.').
            prompt: What you should do then, e.g. "Remind the person to call their mother".
            at: One time, ISO 8601, e.g. "2026-11-27T09:00:00" (in `timezone` unless it has an offset).
            cron: A cron expression (minute hour day month weekday), e.g. "0 8 * * 1-5" for weekdays at 08:00.
            timezone: IANA time zone, e.g. "Europe/Berlin" (default: the configured one).
        """
        cid = await conversation_of(ctx)
        task = await schedules.runtime.get(ctx.deps.task_id)
        origin = f"agent:{task.id}:{task.turn}:{ctx.tool_call_id}"
        try:
            spec = ScheduleSpec(name=name, prompt=prompt, at=datetime.fromisoformat(at) if at else None, cron=cron,
                                timezone=timezone, conversation=cid)
            made = await schedules.add(spec, source="agent", origin=origin)
        except ValidationError as exc:
            raise ModelRetry("; ".join(e["msg"] for e in exc.errors())) from None
        except (BgAgentsError, ValueError) as exc:
            raise ModelRetry(getattr(exc, "message", str(exc))) from None
        when = iso(made.next_run_at, made.timezone) if made.next_run_at else "never (its time has passed)"
        return f"scheduled '{made.name}'; next run {when}"

    async def schedule_list(ctx: RunContext[ToolContext]) -> str:
        """The schedules that send events to this conversation, with their next run."""
        cid = await conversation_of(ctx)
        mine = [s for s in await schedules.list() if s.conversation == cid]
        if not mine:
            return "no schedules"
        lines = []
        for s in mine:
            upcoming = iso(s.next_run_at, s.timezone) if s.next_run_at else "none"
            paused = " [paused]" if s.paused else ""
            lines.append(f"- {s.name}: {s.cron or 'once'} ({s.timezone}); next {upcoming}{paused}: {s.prompt}")
        return "\n".join(lines)

    async def schedule_remove(ctx: RunContext[ToolContext], name: str) -> str:
        """Remove one of this conversation's schedules.

        Args:
            name: Its name (see schedule_list).
        """
        cid = await conversation_of(ctx)
        try:
            found = await schedules.get(name)
            if found.conversation != cid:
                raise ModelRetry(f"'{name}' is not a schedule of this conversation")
            await schedules.remove(name)
        except BgAgentsError as exc:
            raise ModelRetry(exc.message) from None
        return f"removed '{name}'"

    return FunctionToolset([schedule_create, schedule_list, schedule_remove], max_retries=3)
