"""Runs one turn of a task: the body of the DBOS workflow, from `running` to a terminal state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbos import DBOS
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError, UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.messages import ModelMessage
from pydantic_ai.usage import UsageLimits

from ..tools import Todo, ToolContext, build_toolset
from .durable import DurableModel, ShuttingDown, StepGate, TaskHooks
from .events import EventBus
from .models import ModelRegistry
from .profiles import Profile, get_profile
from .progress import ProgressTracker
from .schema import TERMINAL, Attempt, Task
from .store import Store

log = logging.getLogger("bgagents.runner")

DEFAULT_REQUEST_LIMIT = 500


@dataclass
class Services:
    """What a turn needs from the runtime; one per process, since DBOS is one per process."""

    store: Store
    bus: EventBus
    models: ModelRegistry
    profiles: Callable[[], dict[str, Profile]]
    workspace: Path
    outputs_dir: Path
    clock: Callable[[], float] = time.time
    gate: StepGate = field(default_factory=StepGate)
    active: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    async def publish(self, event: Any) -> None:
        if event is not None and event is not True:
            self.bus.announce(event)


class StoreTodos:
    """The todo lists tools read and write, kept on the task row (and reflected in its progress)."""

    def __init__(self, services: Services, tracker: ProgressTracker) -> None:
        self.services = services
        self.tracker = tracker

    async def load_todos(self, task_id: str) -> list[Todo]:
        rows = await self.services.store.get_todos(task_id)
        return [Todo.model_validate(r) for r in rows]

    async def save_todos(self, task_id: str, todos: list[Todo]) -> None:
        await self.tracker.on_todos([t.model_dump(mode="json") for t in todos])


def _classify(exc: BaseException) -> tuple[str, str]:
    """(end_reason, message) for an error that ends a turn."""
    if isinstance(exc, UsageLimitExceeded):
        return "budget", str(exc)
    if isinstance(exc, ModelHTTPError):
        return "model_error", f"model {exc.model_name} answered HTTP {exc.status_code}: {exc.body}"
    if isinstance(exc, UnexpectedModelBehavior):
        return "model_error", f"unexpected model behaviour: {exc}"
    return "error", f"{type(exc).__name__}: {exc}"


async def run_turn(services: Services, task_id: str, turn: int, prompt: str) -> str:
    """The workflow body. Returns the final status, or re-raises a shutdown so DBOS resumes it later."""
    store = services.store
    task = await store.get_task(task_id)
    if task is None:
        log.error("task %s vanished before its turn %s", task_id, turn)
        return "missing"
    if task.status in TERMINAL or task.turn != turn:
        return task.status  # cancelled while queued, or an old turn
    now = services.clock()
    event = await store.update_task(task_id, {"status": "running", "started_at": now, "last_activity_at": now},
                                    "task.running", {"turn": turn}, only_if_status=["queued"])
    if event is None:
        await services.publish(await store.add_event("task.recovered", task_id, {"turn": turn}))
    else:
        await services.publish(event)

    inner = asyncio.create_task(_run_agent(services, task, turn, prompt, services.clock()))
    services.active[task_id] = inner
    try:
        return await inner
    except asyncio.CancelledError:
        if not services.gate.draining:  # cancelled by a person: the cancel already wrote the state
            current = await store.get_task(task_id)
            return current.status if current else "cancelled"
        note = "interrupted by shutdown; resumes on the next start"
        await services.publish(await store.update_task(
            task_id, {"status": "queued", "progress": {**task.progress.model_dump(mode="json"), "note": note}},
            "task.interrupted", {"reason": "shutdown"}, only_if_status=["running", "waiting"]))
        raise
    finally:
        services.active.pop(task_id, None)


async def _run_agent(services: Services, task: Task, turn: int, prompt: str, started: float) -> str:
    store = services.store
    history = await store.history(task.id, before_turn=turn)
    tracker = ProgressTracker(task.id, turn, task.progress, len(history), store, services.bus, services.clock)
    try:
        profile = get_profile(services.profiles(), task.agent)
        model = DurableModel(services.models.resolve(task.model), tracker, services.gate)
        toolset = build_toolset(profile.tools)
        deps = ToolContext(task_id=task.id, workspace=services.workspace, outputs_dir=services.outputs_dir,
                           todos=StoreTodos(services, tracker))
        hooks = TaskHooks(tracker, services.gate, store.claim_steering)
        agent: Agent[ToolContext, str] = Agent(
            model, deps_type=ToolContext, instructions=profile.prompt, toolsets=[toolset], capabilities=[hooks],
            name=task.agent,
        )
        limits = UsageLimits(request_limit=profile.max_turns or DEFAULT_REQUEST_LIMIT)
        messages: list[ModelMessage] = history
        text = prompt
        with Agent.parallel_tool_call_execution_mode("sequential"):
            while True:
                result = await agent.run(text, message_history=messages, deps=deps, usage_limits=limits)
                messages = result.all_messages()
                late = await DBOS.run_step_async({"name": "claim_steering"}, store.claim_steering, task.id)
                if not late:
                    break
                text = "\n\n".join(late)  # steering that arrived after the last request: one more round
        output = result.output
    except (asyncio.CancelledError, ShuttingDown):
        raise
    except Exception as exc:
        reason, message = _classify(exc)
        log.info("task %s failed: %s", task.id, message)
        attempt = Attempt(model=task.model, started_at=started, finished_at=services.clock(), error=message)
        return await DBOS.run_step_async({"name": "finish"}, _finish, services, task, turn, "failed",
                                         tracker, None, None, message, reason, attempt)
    attempt = Attempt(model=task.model, started_at=started, finished_at=services.clock())
    return await DBOS.run_step_async({"name": "finish"}, _finish, services, task, turn, "completed",
                                     tracker, messages, output, None, None, attempt)


async def _finish(services: Services, task: Task, turn: int, status: str, tracker: ProgressTracker,
                  messages: list[ModelMessage] | None, output: Any, error: str | None,
                  end_reason: str | None, attempt: Attempt) -> str:
    now = services.clock()
    task_id = task.id
    attempts = [a.model_dump(mode="json") for a in [*task.attempts, attempt]]
    values: dict[str, Any] = {"status": status, "finished_at": now, "last_activity_at": now, "error": error,
                              "end_reason": end_reason, "progress": tracker.progress.model_dump(mode="json"),
                              "attempts": attempts}
    if status == "completed":
        text = output if isinstance(output, str) else None
        data = None if isinstance(output, str) else output
        values["result"] = {"text": text, "data": data}
    if messages is not None:
        await services.store.save_messages(task_id, turn, tracker.persisted, messages[tracker.persisted:])
    event = await services.store.update_task(task_id, values, f"task.{status}",
                                             {"error": error, "end_reason": end_reason, "result": values.get("result")},
                                             only_if_status=["running", "waiting"])
    await services.publish(event)
    if event is None:
        current = await services.store.get_task(task_id)
        return current.status if current else status
    return status
