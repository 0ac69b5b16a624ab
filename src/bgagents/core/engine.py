"""DBOS as the durable engine: the turn workflow, one queue per concurrency key, launch and shutdown.

DBOS registers workflows by name before launch, so there is exactly one workflow, `bgagents.turn`,
whose agent (model, instructions, tools) is chosen per run from the task row.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS, SetEnqueueOptions, SetWorkflowID
from dbos._error import DBOSNonExistentWorkflowError

from .db import connect
from .runner import Services, run_turn

log = logging.getLogger("bgagents.engine")

WORKFLOW_NAME = "bgagents.turn"
QUEUE_PREFIX = "bgagents:"
_services: Services | None = None


@DBOS.workflow(name=WORKFLOW_NAME)
async def turn_workflow(task_id: str, turn: int, prompt: str) -> str:
    if _services is None:
        raise RuntimeError("the bgagents runtime is not started in this process")
    return await run_turn(_services, task_id, turn, prompt)


def workflow_id(task_id: str, turn: int) -> str:
    return f"{task_id}.{turn}"


def queue_name(key: str) -> str:
    return QUEUE_PREFIX + key


def dbos_priority(priority: int) -> int:
    """Ours: higher first, any int. DBOS: lower first, 1..2^31-1."""
    return max(1, min(2**31 - 1, 1_000_000 - priority))


class Engine:
    """Owns the DBOS instance of this process."""

    def __init__(self, services: Services, database_url: str, polling_interval: float,
                 executor_id: str | None = None) -> None:
        self.services = services
        self.database_url = database_url
        self.polling_interval = polling_interval
        self.executor_id = executor_id
        self._queues: dict[str, int] = {}

    def launch(self) -> None:
        global _services
        _services = self.services
        config: dict[str, Any] = {
            "name": "bgagents",
            "system_database_url": self.database_url,
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.1,
        }
        if self.executor_id:
            config["executor_id"] = self.executor_id
        if self.database_url.startswith("sqlite"):
            # DBOS gets an engine with our SQLite settings from the start (WAL, synchronous=NORMAL)
            config["system_database_engine"] = connect(self.database_url)
        DBOS(config=config)  # type: ignore[arg-type]
        DBOS.launch()

    async def ensure_queue(self, key: str, limit: int) -> str:
        name = queue_name(key)
        if self._queues.get(key) != limit:
            await DBOS.register_queue_async(
                name, global_concurrency=limit or None, polling_interval_sec=self.polling_interval,
                on_conflict="always_update",
            )
            self._queues[key] = limit
        return name

    async def enqueue(self, key: str, limit: int, task_id: str, turn: int, prompt: str, priority: int) -> None:
        name = await self.ensure_queue(key, limit)
        with SetWorkflowID(workflow_id(task_id, turn)), SetEnqueueOptions(priority=dbos_priority(priority)):
            await DBOS.enqueue_workflow_async(name, turn_workflow, task_id, turn, prompt)

    async def workflow_exists(self, task_id: str, turn: int) -> bool:
        return await DBOS.get_workflow_status_async(workflow_id(task_id, turn)) is not None

    async def cancel(self, task_id: str, turn: int) -> None:
        """Stops the workflow (a queued one leaves its queue) and interrupts it if it runs here."""
        try:
            await DBOS.cancel_workflow_async(workflow_id(task_id, turn))
        except DBOSNonExistentWorkflowError:
            pass
        running = self.services.active.get(task_id)
        if running is not None and not running.done():
            running.cancel()

    async def drain(self, grace: float) -> None:
        """No new step starts; running turns get `grace` seconds to reach a step boundary, then stop."""
        self.services.gate.draining = True
        pending = [t for t in self.services.active.values() if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=2)

    def destroy(self) -> None:
        """Stops DBOS. DBOS made its thread pool the loop's default executor and shuts it down here,
        so the loop gets a fresh one: the host program's `asyncio.to_thread` must keep working."""
        global _services
        DBOS.destroy(workflow_completion_timeout_sec=0)
        _services = None
        try:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
        except RuntimeError:
            pass
