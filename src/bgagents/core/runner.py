"""Runs one turn of a task: the body of the DBOS workflow, from `running` to a terminal state."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbos import DBOS
from opentelemetry.trace import TracerProvider
from pydantic_ai import Agent, StructuredDict
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.exceptions import UnexpectedModelBehavior, UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolCallPart, UserPromptPart, repair_messages
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.usage import RunUsage, UsageLimits

from ..runners import find_runner
from ..settings import LimitSettings
from ..tools import Sandbox, Spawner, Todo, ToolContext, build_toolset
from ..tools.private import ServerFiles
from . import task_log, tracing, worktrees
from .durable import DurableModel, LoopBreaker, ModelChain, ShuttingDown, StepGate, TaskHooks, TurnStopped
from .events import EventBus
from .model_errors import ModelCallError
from .models import ModelRegistry
from .profiles import Profile
from .progress import ProgressTracker
from .schema import TERMINAL, Approval, Attempt, Progress, Task
from .store import Store

log = logging.getLogger("bgagents.runner")

DEFAULT_REQUEST_LIMIT = 500
OPEN_TODOS = ("pending", "in_progress")


@dataclass
class Services:
    """What a turn needs from the runtime; one per process, since DBOS is one per process."""

    store: Store
    bus: EventBus
    models: ModelRegistry
    profile: Callable[[str], Profile]  # the agent profile of that name (see Runtime.profile)
    workspace: Path
    outputs_dir: Path
    limits: LimitSettings = field(default_factory=LimitSettings)
    spawner: Spawner | None = None
    sandbox: Sandbox | None = None  # None: bash runs without one
    server_files: ServerFiles | None = None  # what no tool may reach (see tools.private)
    clock: Callable[[], float] = time.time
    # the tools extensions add to a task's turn (see core/extensions.py)
    toolsets: Callable[[Task], Awaitable[list[AbstractToolset[ToolContext]]]] | None = None
    gate: StepGate = field(default_factory=StepGate)
    tracer_provider: TracerProvider | None = None  # traces are off without one
    active: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    # the DBOS workflow tasks around them: a shutdown waits for these too, so DBOS records each outcome
    workflows: set[asyncio.Task[Any]] = field(default_factory=set)
    # runs in `active` this process let go (another process runs their workflow now): they end writing nothing
    handed_over: set[asyncio.Task[Any]] = field(default_factory=set)
    # tasks whose turn waits for a person, outside any step: a stop ends them at once, with nothing to finish
    awaiting_decision: set[str] = field(default_factory=set)

    def workspace_for(self, task: Task) -> Path:
        """Where a task works (its own worktree, or the shared workspace): every runner takes it from here."""
        return Path(task.workspace) if task.workspace else self.workspace

    async def publish(self, event: Any) -> None:
        if event is not None and event is not True:
            self.bus.announce(event)


class StoreTodos:
    """The todo lists tools read and write, kept on the task row (and reflected in its progress)."""

    def __init__(self, services: Services, tracker: ProgressTracker) -> None:
        self.services = services
        self.tracker = tracker

    async def load_todos(self, task_id: str) -> list[Todo]:
        return [Todo.model_validate(r) for r in await self.services.store.get_todos(task_id)]

    async def save_todos(self, task_id: str, todos: list[Todo]) -> None:
        await self.tracker.on_todos([t.model_dump(mode="json") for t in todos])


def _classify(exc: BaseException) -> tuple[str, str, str]:
    """(status, end_reason, message) for an error that ends a turn."""
    if isinstance(exc, TurnStopped):
        return exc.status, exc.end_reason, exc.message
    if isinstance(exc, UsageLimitExceeded):
        return "failed", "budget", f"budget crossed: {exc}"
    if isinstance(exc, ModelCallError):
        return "failed", "model_error", exc.message
    if isinstance(exc, UnexpectedModelBehavior) and "output retries" in str(exc):
        return "failed", "error", f"the model gave no usable output, even when asked again for its result ({exc})"
    return "failed", "error", f"{type(exc).__name__}: {exc}"


async def expire_if_queued_too_long(services: Services, task: Task) -> bool:
    """Fails a task queued for longer than `queue_ttl`; checked when its turn starts and by the sweep."""
    ttl, now = services.limits.queue_ttl, services.clock()
    if task.status != "queued" or not ttl or now - (task.queued_at or task.created_at) <= ttl:
        return False
    event = await services.store.update_task(
        task.id, {"status": "failed", "end_reason": "queue_ttl", "finished_at": now,
                  "error": f"queued for more than {ttl:g} s"},
        "task.failed", {"end_reason": "queue_ttl"}, only_if_status=["queued"])
    if event is None:  # it started, or ended, meanwhile
        return False
    await services.publish(event)
    task_log.ended(task, "failed", "queue_ttl", f"queued for more than {ttl:g} s")
    return True


async def run_turn(services: Services, task_id: str, turn: int, prompt: str) -> str:
    """The workflow body. Returns the final status, or re-raises a shutdown so DBOS resumes it later."""
    store = services.store
    task = await store.get_task(task_id)
    if task is None:
        log.error("task %s vanished before its turn %s", task_id, turn)
        return "missing"
    if task.status in TERMINAL or task.turn != turn:
        return task.status  # cancelled while queued, or an old turn
    if await expire_if_queued_too_long(services, task):
        return "failed"
    now = services.clock()
    event = await store.update_task(task_id, {"status": "running", "started_at": task.started_at or now,
                                              "last_activity_at": now},
                                    "task.running", {"turn": turn}, only_if_status=["queued"])
    if event is None:
        await services.publish(await store.add_event("task.recovered", task_id, {"turn": turn}))
    else:
        await services.publish(event)
    task_log.started(task, turn, recovered=event is None)

    outer = asyncio.current_task()
    if outer is not None:
        services.workflows.add(outer)
        outer.add_done_callback(services.workflows.discard)
    runner = find_runner(task.model)
    inner = asyncio.create_task(_run_agent(services, task, turn, prompt,
                                           runner.run_turn if runner is not None else _run_agent_body))
    stale = services.active.get(task_id)
    if stale is not None and not stale.done():  # DBOS handed this workflow over, back to this process: the
        services.handed_over.add(stale)        # earlier run no longer owns it and stops
        stale.cancel()
    services.active[task_id] = inner
    try:
        max_runtime = services.limits.max_runtime
        if max_runtime is None:
            return await inner
        started = task.started_at or now
        try:
            return await asyncio.wait_for(asyncio.shield(inner), max(0.0, started + max_runtime - services.clock()))
        except TimeoutError:
            inner.cancel()
            message = f"ran for more than max_runtime ({max_runtime:g} s)"
            event = await store.update_task(task_id, {"status": "failed", "end_reason": "max_runtime",
                                                      "finished_at": services.clock(), "error": message},
                                            "task.failed", {"end_reason": "max_runtime", "error": message},
                                            only_if_status=["running", "waiting"])
            await services.publish(event)
            if event is not None:
                task_log.ended(task, "failed", "max_runtime", message)
            return "failed"
    except asyncio.CancelledError:
        if inner in services.handed_over:  # another process runs this workflow now: nothing here is ours to write
            raise
        if not services.gate.draining:  # cancelled by a person: the cancel already wrote the state
            current = await store.get_task(task_id)
            return current.status if current else "cancelled"
        note = "interrupted by shutdown; resumes on the next start"
        current = await store.get_task(task_id)  # its progress so far, not that of the turn's start
        progress = (current or task).progress.model_dump(mode="json")
        await services.publish(await store.update_task(
            task_id, {"status": "queued", "progress": {**progress, "note": note}},
            "task.interrupted", {"reason": "shutdown"}, only_if_status=["running", "waiting"]))
        task_log.log.info("task %s (%s) stopped with the server; it goes on at the next start", task.id, task.name)
        raise
    except Exception as exc:  # e.g. a replay that took another path than the first run (DBOS's unexpected step)
        return await _fail_beyond_recovery(services, task_id, exc)
    finally:
        services.handed_over.discard(inner)
        if services.active.get(task_id) is inner:
            del services.active[task_id]


async def _snapshot(store: Store, task_id: str, turn: int) -> dict[str, Any]:
    """The task at the start of the turn, checkpointed so a replay sees what the first run saw."""
    task = await store.get_task(task_id)
    assert task is not None
    return {"progress": task.progress.model_dump(mode="json"),
            "attempts": [a.model_dump(mode="json") for a in task.attempts],
            "open_request": await store.open_request(task_id, turn),
            "model": task.model}  # a fallback during the turn changes the task's; its replay starts from this


async def _turn_start(store: Store, task_id: str, turn: int, prompt: str) -> dict[str, Any]:
    """The snapshot, and the steering sent while the task was queued (given at its first request): one
    checkpoint where two would cost twice. What the person said (the prompt and that steering) is stored
    here, before any model request, so a fork (a push to the background, a demotion) and a peek see it
    while the first request is in flight; that request's response stores it again as the model saw it."""
    snapshot = await _snapshot(store, task_id, turn)
    steering = await store.claim_steering(task_id)
    said = [UserPromptPart(text) for text in (prompt, *steering) if text.strip()]
    if said:
        await store.open_turn(task_id, turn, ModelRequest(parts=said))
    return {**snapshot, "steering": steering}


async def _turn_end(store: Store, task_id: str) -> dict[str, Any]:
    """What decides whether the agent's run was the turn's last: steering that came after its last request,
    and todos it left open. One checkpoint for both."""
    return {"steering": await store.claim_steering(task_id), "todos": await store.get_todos(task_id)}


def _usage_limits(task: Task, profile: Profile, baseline: Progress) -> UsageLimits:
    """Budgets count over the whole task (every turn); `max_turns` counts requests of this turn."""
    limits = task.limits
    requests = [v for v in (limits.get("requests"), profile.max_turns and baseline.requests + profile.max_turns)
                if v]
    return UsageLimits(
        request_limit=int(min(requests)) if requests else baseline.requests + DEFAULT_REQUEST_LIMIT,
        input_tokens_limit=int(limits["input_tokens"]) if "input_tokens" in limits else None,
        output_tokens_limit=int(limits["output_tokens"]) if "output_tokens" in limits else None,
        total_tokens_limit=int(limits["total_tokens"]) if "total_tokens" in limits else None,
        tool_calls_limit=int(limits["tool_calls"]) if "tool_calls" in limits else None,
    )


async def _run_agent(services: Services, task: Task, turn: int, prompt: str,
                     body: Callable[[Services, Task, int, str], Awaitable[str]]) -> str:
    """The turn (the native loop, or another runner's), inside its span when traces are on."""
    provider = services.tracer_provider
    if provider is None:
        return await body(services, task, turn, prompt)
    parent = await services.store.get_task(task.parent_id) if task.parent_id else None
    with tracing.turn_span(provider, task, turn, tracing.links(task, turn, parent)) as span:
        # kept outside any step: a run that replays this turn after a restart links to this span, then replaces it
        await services.store.update_task(task.id, {"trace": tracing.ref(span, turn)}, None)
        status = await body(services, task, turn, prompt)
        tracing.finish(span, status)
        return status


async def _run_agent_body(services: Services, task: Task, turn: int, prompt: str) -> str:
    store = services.store
    limits = services.limits
    snapshot = await DBOS.run_step_async({"name": "turn_start"}, _turn_start, store, task.id, turn, prompt)
    baseline = Progress.model_validate(snapshot["progress"])
    attempts = [Attempt.model_validate(a) for a in snapshot["attempts"]]
    history = await store.history(task.id, before_turn=turn, open_request=snapshot.get("open_request"))
    tracker = ProgressTracker(task.id, turn, baseline, len(history), store, services.bus, services.clock)
    first = snapshot.get("model", task.model)
    chain = ModelChain([first, *[m for m in task.fallback_models if m != first]], started_at=services.clock())

    async def on_switch(old: str, new: str, error: str) -> None:
        now = services.clock()
        attempts.append(Attempt(model=old, started_at=chain.started_at, finished_at=now, error=error))
        chain.started_at = now
        await DBOS.run_step_async({"name": "switch_model"}, _switch_model, services, task, old, new, error,
                                  [a.model_dump(mode="json") for a in attempts])

    async def approve(call: ToolCallPart, args: dict[str, Any], why: str) -> tuple[bool, str]:
        return await _ask_approval(services, task, turn, call, args, why)

    try:
        profile = services.profile(task.agent)
        model = DurableModel(services.models.resolve, chain, tracker, services.gate, limits,
                             task.limits.get("cost_usd"), on_switch)
        toolsets = [build_toolset(profile.tools), *(await services.toolsets(task) if services.toolsets else [])]
        deps = ToolContext(task_id=task.id, workspace=services.workspace_for(task), outputs_dir=services.outputs_dir,
                           todos=StoreTodos(services, tracker), spawner=services.spawner,
                           sandbox=_sandbox(services, task, profile), server_files=services.server_files)
        breaker = LoopBreaker(limits.consecutive_threshold, limits.max_tool_calls, baseline.tool_calls)
        hooks = TaskHooks(tracker, services.gate, store.claim_steering, breaker, profile.permissions, approve,
                          snapshot.get("steering", []))
        instructions = "\n\n".join(p for p in (task.instructions, profile.prompt) if p)
        output_type: Any = StructuredDict(task.output_schema) if task.output_schema else str
        capabilities: list[Any] = [hooks]
        if services.tracer_provider is not None:  # model-request and tool-call spans inside the turn's span
            capabilities.append(Instrumentation(InstrumentationSettings(tracer_provider=services.tracer_provider)))
        agent: Agent[ToolContext, Any] = Agent(
            model, deps_type=ToolContext, instructions=instructions, output_type=output_type, toolsets=toolsets,
            capabilities=capabilities, name=task.agent,
        )
        usage = RunUsage(requests=baseline.requests, tool_calls=baseline.tool_calls,
                         input_tokens=baseline.input_tokens, output_tokens=baseline.output_tokens)
        usage_limits = _usage_limits(task, profile, baseline)
        messages: list[ModelMessage] = history
        text = prompt
        nudges = 0
        asked_for_result = False
        with Agent.parallel_tool_call_execution_mode("sequential"):
            while True:
                result = await agent.run(text, message_history=messages, deps=deps, usage_limits=usage_limits,
                                         usage=usage)
                messages = result.all_messages()
                usage = result.usage
                end = await DBOS.run_step_async({"name": "turn_end"}, _turn_end, store, task.id)
                if end["steering"]:  # steering that arrived after the last request: one more round
                    text = "\n\n".join(end["steering"])
                    continue
                still_open = [t["content"] for t in end["todos"] if t.get("status") in OPEN_TODOS]
                if still_open and nudges < limits.completion_nudges:
                    nudges += 1
                    text = ("You ended your turn with todos still open: " + "; ".join(still_open)
                            + ". Continue working on them, or mark them completed or cancelled and give your result.")
                    continue
                if not str(result.output or "").strip() and not asked_for_result:
                    asked_for_result = True
                    text = "You ended without any output. Reply now with your result."
                    continue
                break
        output = result.output
    except (asyncio.CancelledError, ShuttingDown):
        raise
    except Exception as exc:
        status, reason, message = _classify(exc)
        attempts.append(Attempt(model=chain.current, started_at=chain.started_at, finished_at=services.clock(),
                                error=message))
        # an unexplained error keeps its traceback in the log; the expected ends need only a line
        return await _finish(services, task, turn, status, tracker, None, None, message, reason, attempts,
                             unexpected=exc if reason == "error" else None)
    attempts.append(Attempt(model=chain.current, started_at=chain.started_at, finished_at=services.clock()))
    diff_stat = None
    if task.worktree is not None and task.worktree.state == "active":
        diff_stat = await DBOS.run_step_async({"name": "worktree_diff"}, _worktree_stat, task)
    return await _finish(services, task, turn, "completed", tracker, messages, output, None, None, attempts, diff_stat)


async def _fail_beyond_recovery(services: Services, task_id: str, exc: Exception) -> str:
    """Ends a turn that raised past its own error handling, so no task stays `running` with its slot held.
    Written outside any step: the turn's checkpoints no longer match it, and its workflow ends here."""
    log.error("task %s: its turn could not go on and ends failed", task_id, exc_info=exc)
    cause = exc.__cause__ or exc.__context__
    message = (f"the turn could not go on (after a restart, its replay may have differed): {type(exc).__name__}: "
               f"{exc}" + (f" (raised while handling {type(cause).__name__}: {cause})" if cause else ""))
    now = services.clock()
    await services.publish(await services.store.update_task(
        task_id, {"status": "failed", "end_reason": "error", "finished_at": now, "last_activity_at": now,
                  "error": message}, "task.failed", {"end_reason": "error", "error": message},
        only_if_status=["running", "waiting"]))
    current = await services.store.get_task(task_id)
    return current.status if current else "failed"


def _sandbox(services: Services, task: Task, profile: Profile) -> Sandbox | None:
    """The task's bash sandbox: the profile's network, and a worktree task's own worktree writable."""
    if services.sandbox is None:
        return None
    sandbox = services.sandbox.with_network(profile.network)
    wt = task.worktree
    if wt is not None and task.workspace:
        sandbox = sandbox.in_worktree(Path(task.workspace), Path(wt.path), Path(wt.repo) / ".git")
    return sandbox


async def _worktree_stat(task: Task) -> str:
    """The diff stat of an isolated task's branch, its edits committed: part of its result."""
    assert task.worktree is not None
    stat, _, _ = await asyncio.to_thread(worktrees.diff, task.worktree, f"bgagents: {task.name} (turn {task.turn})")
    return stat or "no changes"


async def _switch_model(services: Services, task: Task, old: str, new: str, error: str,
                        attempts: list[dict[str, Any]]) -> None:
    """Records the move to the next model as a new attempt, and tells the parent."""
    data = {"from": old, "to": new, "error": error}
    event = await services.store.update_task(task.id, {"model": new, "attempts": attempts}, "task.model_switched",
                                             data)
    await services.publish(event)
    if task.parent_id and task.parent_id.startswith("bg_"):
        note = f"<background-task-update>{task.id} ({task.name}) switched from {old} to {new} after: {error}" \
               "</background-task-update>"
        await services.store.add_steering(task.parent_id, note, ["queued", "running", "waiting", "completed",
                                                                 "failed", "cancelled"])


def approval_id_of(task_id: str, turn: int, tool_call_id: str) -> str:
    """The id of the approval a tool call asks for: the same on a replay, and found from the call alone."""
    return "ap_" + hashlib.sha1(f"{task_id}.{turn}:{tool_call_id}".encode()).hexdigest()[:10]


async def _ask_approval(services: Services, task: Task, turn: int, call: ToolCallPart, args: dict[str, Any],
                        why: str) -> tuple[bool, str]:
    """Puts the task in `waiting` with an approval request, then waits durably for the decision."""
    workflow = f"{task.id}.{turn}"
    approval_id = approval_id_of(task.id, turn, call.tool_call_id)
    approval = Approval(id=approval_id, task_id=task.id, tool=call.tool_name, args=args, reason=why,
                        status="pending", created_at=services.clock())

    async def request() -> None:
        event = await services.store.insert_approval(approval, workflow)
        await services.publish(event)
        if event is not None:
            task_log.waiting(task, call.tool_name, approval_id)

    await DBOS.run_step_async({"name": "approval_request"}, request)
    timeout = services.limits.approval_timeout
    services.awaiting_decision.add(task.id)
    try:
        answer = await DBOS.recv_async(topic=approval_id, timeout_seconds=timeout)
    finally:
        services.awaiting_decision.discard(task.id)
    if answer is None:
        async def expire() -> dict[str, Any]:
            """Denies it for want of an answer, unless a decision won at the last moment (or before a restart
            lost its message): then the stored decision is the one the agent follows."""
            why = f"no answer within {timeout:g} s"
            decided = await services.store.decide_approval(approval_id, "deny", why)
            if decided is not None:
                await services.publish(decided[0])
                return {"decision": "deny", "reason": why}
            found = await services.store.approvals(approval_id=approval_id)
            status = found[0].status if found else "denied"
            return {"decision": "approve" if status == "approved" else "deny",
                    "reason": (found[0].decision_reason if found else None) or status}

        answer = await DBOS.run_step_async({"name": "approval_timeout"}, expire)
    return answer.get("decision") == "approve", str(answer.get("reason") or answer.get("decision"))


async def _finish(services: Services, task: Task, turn: int, status: str, tracker: ProgressTracker,
                  messages: list[ModelMessage] | None, output: Any, error: str | None,
                  end_reason: str | None, attempts: list[Attempt], diff_stat: str | None = None,
                  unexpected: BaseException | None = None) -> str:
    """Writes the turn's end. Not a checkpoint of its own, since it needs none: it writes only while the task
    is still running or waiting, so a run that repeats it finds it done and writes nothing, and a workflow
    recovered after it committed ends at `run_turn`'s first check (the task is no longer running)."""
    now = services.clock()
    values: dict[str, Any] = {"status": status, "finished_at": now, "last_activity_at": now, "error": error,
                              "end_reason": end_reason, "progress": tracker.progress.model_dump(mode="json"),
                              "attempts": [a.model_dump(mode="json") for a in attempts]}
    if status == "completed":
        text = output if isinstance(output, str) else None
        data = None if isinstance(output, str) else output
        values["result"] = {"text": text, "data": data, "diff_stat": diff_stat}
    if messages is not None:  # stored as the model saw them (pydantic-ai's repair), as each response was
        stored = repair_messages(messages)
        await services.store.save_messages(task.id, turn, tracker.persisted, stored[tracker.persisted:])
    event = await services.store.update_task(task.id, values, f"task.{status}",
                                             {"error": error, "end_reason": end_reason, "result": values.get("result")},
                                             only_if_status=["running", "waiting"])
    await services.publish(event)
    if event is None:
        current = await services.store.get_task(task.id)
        return current.status if current else status
    task_log.ended(task, status, end_reason, error, tracker.progress, unexpected)
    return status
