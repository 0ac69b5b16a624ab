"""Which workflows start now, in a process that is alone on its database (SQLite; see core/identity.py).

DBOS queues find work by polling the database (every `queue_polling_interval`, per queue), which is
what lets many processes share one PostgreSQL. A process alone on its database sees every launch and
every end itself, so it admits workflows in memory instead: one with a free slot under its key's
limit starts at once, the others wait here (highest priority first, then oldest) until a workflow of
their key ends. Nothing here needs to be durable: what waits is still a stored `queued` task, which the
runtime submits again when it starts, while DBOS resumes the workflows that had started (`holds`
counts those). Conversation drains keep their DBOS serial queue (core/engine.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("bgagents.admission")


class Handle(Protocol):
    """A started workflow (DBOS's `WorkflowHandleAsync`): its result is awaited to know when it ended."""

    async def get_result(self) -> Any: ...


Start = Callable[[], Awaitable[Handle]]


@dataclass(order=True)
class _Waiting:
    rank: tuple[int, int]  # (-priority, arrival): highest priority first, then first come
    workflow: str = field(compare=False)
    start: Start = field(compare=False)


class Admission:
    """Counts the started workflows of each key and starts a waiting one when a slot frees."""

    def __init__(self) -> None:
        self._running: dict[str, set[str]] = {}  # key -> workflow ids holding a slot
        self._waiting: dict[str, list[_Waiting]] = {}  # key -> heap
        self._limits: dict[str, int] = {}
        self._dropped: set[str] = set()  # waiting workflow ids cancelled meanwhile
        self._arrivals = itertools.count()
        self._watchers: set[asyncio.Task[None]] = set()
        self.paused = False  # while the process drains, nothing new starts

    def running(self, key: str) -> int:
        return len(self._running.get(key, ()))

    async def submit(self, key: str, limit: int, workflow: str, start: Start, priority: int = 0) -> None:
        """Starts the workflow now if its key has a free slot (`limit` 0: unlimited), else keeps it waiting."""
        self._limits[key] = limit
        self._dropped.discard(workflow)
        heapq.heappush(self._waiting.setdefault(key, []),
                       _Waiting((-priority, next(self._arrivals)), workflow, start))
        await self._admit(key)

    def holds(self, key: str, workflow: str, handle: Handle) -> None:
        """A workflow that runs without having been admitted here (resumed by DBOS after a restart)
        holds a slot of its key until it ends."""
        self._take(key, workflow, handle)

    def drop(self, workflow: str) -> None:
        """A waiting workflow whose work was cancelled (or expired) never starts."""
        self._dropped.add(workflow)

    async def close(self) -> None:
        self.paused = True
        for watcher in list(self._watchers):
            watcher.cancel()
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=2)

    def _has_room(self, key: str) -> bool:
        limit = self._limits.get(key, 0)
        return limit <= 0 or self.running(key) < limit

    async def _admit(self, key: str) -> None:
        heap = self._waiting.get(key)
        while heap and not self.paused and self._has_room(key):
            item = heapq.heappop(heap)
            if item.workflow in self._dropped:
                self._dropped.discard(item.workflow)
                continue
            slots = self._running.setdefault(key, set())
            slots.add(item.workflow)  # before the first await: a concurrent admission sees the slot taken
            try:
                handle = await item.start()
            except Exception:  # its owner still has it stored, and submits it again on the next start
                slots.discard(item.workflow)
                log.exception("could not start workflow %s", item.workflow)
                continue
            self._take(key, item.workflow, handle)

    def _take(self, key: str, workflow: str, handle: Handle) -> None:
        self._running.setdefault(key, set()).add(workflow)
        # an empty context: awaited inside a workflow's, DBOS would record the wait as one of its steps
        watcher = asyncio.get_running_loop().create_task(self._watch(key, workflow, handle),
                                                         context=contextvars.Context())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, key: str, workflow: str, handle: Handle) -> None:
        """Frees the slot when the workflow ends, however it ends, and admits the next one of its key."""
        with contextlib.suppress(Exception):
            await handle.get_result()
        self._running.get(key, set()).discard(workflow)
        self._dropped.discard(workflow)
        await self._admit(key)
