"""Health checks of background sessions (SPEC 4.6): off by default, since progress (SPEC 2.3) costs nothing.

Every `health_check_interval`, each running background session is asked on a copy, by the small
model, whether its work is finished: finished -> it is stopped and that answer is its result; no
answer within `health_check_timeout` -> it is stopped as unresponsive and the person told; else its
progress goes to the main session as a `background-agent-progress` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from . import checks
from .events import ConversationEvent
from .responses import NO_OUTPUT, MainResponse
from .store import Row

if TYPE_CHECKING:
    from .orchestrator import Conversations

log = logging.getLogger("bgagents.conversation")

PROGRESS_INSTRUCTIONS = 'Pass this progress on only if it matters to the person; otherwise answer "silent".'


class HealthChecks:
    def __init__(self, convs: Conversations) -> None:
        self.convs = convs
        self._checking: set[str] = set()  # sessions with a check under way

    async def run(self) -> None:
        interval = self.convs.settings.health_check_interval
        tick = max(0.01, min(1.0, interval / 4))
        while True:
            await asyncio.sleep(tick)
            try:
                now = self.convs.runtime.clock()
                for row in await self.convs.store.run(self.convs.store.running_background_sync):
                    if row.task_id not in self._checking and now >= (row.last_check_at or row.turn_started_at) \
                            + interval:
                        self._checking.add(row.task_id)
                        self.convs.spawn(self._check(row))
            except Exception:
                log.exception("health checks")

    async def _check(self, row: Row) -> None:
        try:
            await self._check_once(row)
        except Exception:
            log.exception("health check of %s", row.task_id)
        finally:
            self._checking.discard(row.task_id)

    async def _still_running(self, task_id: str) -> Row | None:
        task = await self.convs.runtime.store.get_task(task_id)
        session = await self.convs.store.run(self.convs.store.session_sync, task_id)
        if task is None or task.finished or session is None or session.killed or session.role != "background":
            return None
        return session

    async def _check_once(self, row: Row) -> None:
        convs, store, runtime = self.convs, self.convs.store, self.convs.runtime
        task = await runtime.get(row.task_id)
        timeout = convs.settings.health_check_timeout
        try:
            report = await asyncio.wait_for(
                checks.health_check(runtime, task, row.name, convs.settings.peek_model), timeout)
        except TimeoutError:
            if await self._still_running(row.task_id) is None:
                return
            await convs.publish(await store.run(store.set_session_sync, row.task_id, {"killed": True},
                                                "conversation.killed", {"name": row.name, "reason": "unresponsive"}))
            with contextlib.suppress(Conflict):
                await runtime.cancel(row.task_id, end_reason="unresponsive")
            message = (f"The background agent '{row.name}' did not answer a health check within {timeout:g} s, "
                       "so it was stopped as unresponsive.")
            await convs.publish(await store.run(store.respond_sync, row.conversation_id, {
                "action": "send", "action_reason": "unresponsive", "message": message, "task_id": row.task_id,
                "event_name": row.name}))
            return
        if await self._still_running(row.task_id) is None:  # ended or killed while we asked
            return
        now = runtime.clock()
        if report.finished:
            output = report.output or MainResponse(action="send", action_reason="found finished by a health check",
                                                   message=report.progress or NO_OUTPUT)
            await convs.publish(await store.run(
                store.set_session_sync, row.task_id,
                {"result_override": output.model_dump(mode="json"), "last_check_at": now},
                "conversation.checked", {"name": row.name, "finished": True}))
            with contextlib.suppress(Conflict):
                await runtime.cancel(row.task_id, end_reason="health_check")
            return
        await store.run(store.set_session_sync, row.task_id, {"last_check_at": now})
        when = convs.now()

        def build(name: str) -> dict[str, Any]:
            return ConversationEvent(name=name, type="background-agent-progress", time=when, target_event=row.name,
                                     progress=report.progress or "still working",
                                     instructions=PROGRESS_INSTRUCTIONS).model_dump(mode="json", exclude_none=True)

        _, stored = await store.add_event(row.conversation_id, "background-agent-progress", f"{row.name} progress",
                                          build)
        await convs.publish(stored)
        await convs.kick(row.conversation_id)
