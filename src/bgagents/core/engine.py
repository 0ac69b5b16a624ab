"""DBOS as the durable engine: the turn workflow, how turns are admitted, launch and shutdown.

DBOS registers workflows by name before launch, so there is exactly one workflow, `bgagents.turn`,
whose agent (model, instructions, tools) is chosen per run from the task row.

Admission: a process alone on its database (SQLite) admits turns in memory and starts each as a
workflow at once (core/admission.py): no queue to poll. Processes that share a PostgreSQL database
use DBOS queues, so that concurrency limits hold across them.

Queues: DBOS starts a worker for a newly registered queue only at its next check, up to a second
later, so a queue per concurrency key would start each new model's first task late. Instead there
is one partitioned queue per distinct limit (`bgagents:limit:5`), partitioned by concurrency key,
registered at start from the settings; a new model is only a new partition, served at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS, SetEnqueueOptions, SetWorkflowAttributes, SetWorkflowID, WorkflowHandleAsync
from dbos._error import DBOSNonExistentWorkflowError

from .admission import Admission
from .cancel_logs import CancelledWorkflows
from .db import connect, schema_lock
from .runner import Services, run_turn

log = logging.getLogger("bgagents.engine")

WORKFLOW_NAME = "bgagents.turn"
QUEUE_PREFIX = "bgagents:"
ADMISSION_KEY = "bgagents_admission_key"  # a workflow attribute: the key whose slot it holds
SERIAL_POLL = 0.1  # seconds; a person does not notice 0.1 s before their message is taken
_services: Services | None = None


@DBOS.workflow(name=WORKFLOW_NAME)
async def turn_workflow(task_id: str, turn: int, prompt: str) -> str:
    if _services is None:
        raise RuntimeError("the bgagents runtime is not started in this process")
    return await run_turn(_services, task_id, turn, prompt)


def workflow_id(task_id: str, turn: int) -> str:
    return f"{task_id}.{turn}"


def queue_name(limit: int) -> str:
    """The queue for every key with this limit; 0 means unlimited."""
    return f"{QUEUE_PREFIX}unlimited" if limit <= 0 else f"{QUEUE_PREFIX}limit:{limit}"


def dbos_priority(priority: int) -> int:
    """Ours: higher first, any int. DBOS: lower first, 1..2^31-1."""
    return max(1, min(2**31 - 1, 1_000_000 - priority))


class Engine:
    """Owns the DBOS instance of this process."""

    def __init__(self, services: Services, database_url: str, polling_interval: float,
                 executor_id: str, limits: set[int] | None = None) -> None:
        """On SQLite (one process per database, core/identity.py) turns are admitted in memory."""
        self.services = services
        self.admission = Admission() if database_url.startswith("sqlite") else None
        self.database_url = database_url
        self.polling_interval = polling_interval
        self.executor_id = executor_id
        self.limits = limits or set()
        self._queues: set[int] = set()
        self.cancelled = CancelledWorkflows()  # DBOS's noise about them is dropped

    def launch(self) -> None:
        global _services
        _services = self.services
        config: dict[str, Any] = {
            "name": "bgagents",
            "system_database_url": self.database_url,
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.1,
            "executor_id": self.executor_id,
        }
        if self.database_url.startswith("sqlite"):
            # DBOS gets an engine with our SQLite settings from the start (WAL, synchronous=NORMAL)
            config["system_database_engine"] = connect(self.database_url)
        DBOS(config=config)  # type: ignore[arg-type]
        with schema_lock(self.database_url):  # DBOS creates and migrates its system tables as it launches
            DBOS.launch()
        self.cancelled.install()

    async def start_queues(self, serial: tuple[str, ...] = ()) -> None:
        """Registers the task queues and `serial` ones (one workflow at a time per partition key, e.g. per
        conversation), then waits once for DBOS to run a worker for each. With in-memory admission there
        are no task queues to poll, but for turns an older version left on one: those queues are drained."""
        names = set(serial)
        if self.admission is None:
            for limit in sorted(self.limits):
                await self._register_queue(limit)
            names |= {queue_name(limit) for limit in self.limits}
        else:
            left = await DBOS.list_workflows_async(name=WORKFLOW_NAME, status=["ENQUEUED"], load_input=False,
                                                   load_output=False)
            for name in {w.queue_name for w in left if w.queue_name and w.queue_name.startswith(QUEUE_PREFIX)}:
                await DBOS.register_queue_async(name, polling_interval_sec=max(self.polling_interval, SERIAL_POLL),
                                                on_conflict="always_update")
                names.add(name)
        for name in serial:  # polled less often: each poll is a read competing with the task steps
            await DBOS.register_queue_async(name, partition_concurrency=1,
                                            polling_interval_sec=max(self.polling_interval, SERIAL_POLL),
                                            on_conflict="always_update")
        await asyncio.to_thread(self._wait_for_workers, names)

    async def _register_queue(self, limit: int) -> None:
        await DBOS.register_queue_async(
            queue_name(limit), partition_concurrency=limit if limit > 0 else None,
            polling_interval_sec=self.polling_interval, on_conflict="always_update",
        )
        self._queues.add(limit)

    @staticmethod
    def _wait_for_workers(names: set[str], timeout: float = 2.0) -> None:
        """Blocks until DBOS runs a worker thread for each queue, so the first launch starts at once."""
        wanted = {f"queue-worker-{name}" for name in names}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted <= {t.name for t in threading.enumerate()}:
                return
            time.sleep(0.01)
        log.warning("DBOS has not started workers for %s yet; the first tasks may start late", sorted(names))

    async def enqueue_workflow(self, queue: str, key: str, workflow: str, fn: Any, *args: Any) -> None:
        """Enqueues `fn(*args)` as workflow id `workflow` on a serial queue: one at a time per `key` (an
        existing id is not run twice). DBOS queues also on SQLite: a conversation's drain must never run
        beside another of the same conversation, also across a stop in the middle of one."""
        async def enqueue() -> None:
            with SetWorkflowID(workflow), SetEnqueueOptions(queue_partition_key=key):
                await DBOS.enqueue_workflow_async(queue, fn, *args)

        await asyncio.get_running_loop().create_task(enqueue(), context=contextvars.Context())

    async def enqueue(self, key: str, limit: int, task_id: str, turn: int, prompt: str, priority: int) -> None:
        """Starts the turn when its concurrency key has room, else it waits (in memory or on a DBOS queue)."""
        if self.admission is not None:
            await self.admission.submit(key, limit, workflow_id(task_id, turn),
                                        self._starter(workflow_id(task_id, turn), key, turn_workflow, task_id, turn,
                                                      prompt),
                                        priority)
            return
        name = queue_name(limit)
        if limit not in self._queues:  # a limit that was not in the settings at start
            await self._register_queue(limit)

        async def enqueue() -> None:
            options = SetEnqueueOptions(priority=dbos_priority(priority),
                                        queue_partition_key=key if limit > 0 else None)
            with SetWorkflowID(workflow_id(task_id, turn)), options:
                await DBOS.enqueue_workflow_async(name, turn_workflow, task_id, turn, prompt)

        # A task launched by a tool (background_task) is enqueued from inside a DBOS step, which DBOS
        # forbids; an empty context makes it a workflow of its own, as it is: it outlives its parent's turn.
        await asyncio.get_running_loop().create_task(enqueue(), context=contextvars.Context())

    @staticmethod
    def _starter(workflow: str, key: str, fn: Any, *args: Any) -> Callable[[], Awaitable[WorkflowHandleAsync[Any]]]:
        """Starts `fn(*args)` as workflow `workflow` when called (in-memory admission). The key is kept
        with the workflow, so that after a restart the resumed workflow holds its slot (`hold_pending`)."""
        async def start() -> WorkflowHandleAsync[Any]:
            with SetWorkflowID(workflow), SetWorkflowAttributes({ADMISSION_KEY: key}):
                return await DBOS.start_workflow_async(fn, *args)

        # an empty context: a workflow started from inside a step (a tool's launch) is one of its own
        return lambda: asyncio.get_running_loop().create_task(start(), context=contextvars.Context())

    async def hold_pending(self) -> None:
        """After a restart: the workflows DBOS resumes (PENDING, or ENQUEUED on its internal queue by the
        takeover of a stopped process) hold their slots until they end."""
        assert self.admission is not None
        for status in await DBOS.list_workflows_async(status=["PENDING", "ENQUEUED"], load_input=False,
                                                      load_output=False):
            key = (status.attributes or {}).get(ADMISSION_KEY)
            if isinstance(key, str):
                self.admission.holds(key, status.workflow_id, await DBOS.retrieve_workflow_async(status.workflow_id))

    async def take_over(self, executor_ids: list[str]) -> int:
        """Puts the pending workflows of dead executors back on their queues (same queue, partition and
        priority), where any live process takes them; they resume from their last finished step."""
        handles = await asyncio.to_thread(DBOS._recover_pending_workflows, executor_ids)
        return len(handles)

    def let_go(self, task_ids: list[str]) -> None:
        """Stops this process's runs of these turns, writing nothing: another process runs (or will run)
        their workflows, which stay PENDING here, neither cancelled nor interrupted."""
        for task_id in task_ids:
            running = self.services.active.get(task_id)
            if running is not None and not running.done():
                self.services.handed_over.add(running)
                running.cancel()

    async def requeue(self, workflows: dict[str, str | None]) -> None:
        """Puts workflows this process holds but no longer runs back on their queues (workflow id -> queue)."""
        for workflow, queue in workflows.items():
            await DBOS.resume_workflow_async(workflow, queue_name=queue)

    async def send_decision(self, workflow: str, approval_id: str, decision: dict[str, Any]) -> None:
        """Wakes the turn waiting on this approval (it waits with DBOS.recv on the approval's topic)."""
        await DBOS.send_async(workflow, decision, topic=approval_id)

    async def delete_workflows(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 500):
            await DBOS.delete_workflows_async(ids[i:i + 500])

    async def finished_workflows(self, name: str, before: float, limit: int = 500) -> list[str]:
        """Ids of workflows called `name` that ended before `before` (epoch seconds)."""
        found = await DBOS.list_workflows_async(
            name=name, status=["SUCCESS", "ERROR", "CANCELLED"], limit=limit, load_input=False, load_output=False,
            completed_before=datetime.fromtimestamp(before, UTC).isoformat())
        return [w.workflow_id for w in found]

    async def workflow_exists(self, task_id: str, turn: int) -> bool:
        return await DBOS.get_workflow_status_async(workflow_id(task_id, turn)) is not None

    async def cancel(self, task_id: str, turn: int) -> None:
        """Stops the workflow (a queued one leaves its queue) and interrupts it if it runs here."""
        self.cancelled.add(workflow_id(task_id, turn))
        if self.admission is not None:
            self.admission.drop(workflow_id(task_id, turn))
        try:
            await DBOS.cancel_workflow_async(workflow_id(task_id, turn))
        except DBOSNonExistentWorkflowError:
            pass
        running = self.services.active.get(task_id)
        if running is not None and not running.done():
            running.cancel()

    def stopping(self) -> None:
        """The runtime stops: what DBOS says of the work it interrupts from now on is expected, not a fault."""
        self.cancelled.draining = True

    async def drain(self, grace: float) -> None:
        """No new step starts; running turns get `grace` seconds to reach a step boundary, then stop. A turn
        waiting for an approval is at one already: it stops at once (its next start waits again)."""
        self.services.gate.draining = True
        self.stopping()
        if self.admission is not None:
            await self.admission.close()
        for task_id in self.services.awaiting_decision:
            if task_id in self.services.active:
                self.services.active[task_id].cancel()
        pending = [t for t in self.services.active.values() if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.wait(still, timeout=2)
        workflows = [t for t in self.services.workflows if not t.done()]
        if workflows:  # DBOS still records their outcomes
            await asyncio.wait(workflows, timeout=2)

    def destroy(self) -> None:
        """Stops DBOS. DBOS made its thread pool the loop's default executor and shuts it down here,
        so the loop gets a fresh one: the host program's `asyncio.to_thread` must keep working."""
        global _services
        self.cancelled.uninstall()
        DBOS.destroy(workflow_completion_timeout_sec=0)
        _services = None
        try:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
        except RuntimeError:
            pass
