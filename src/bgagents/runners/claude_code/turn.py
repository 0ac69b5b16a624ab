"""One turn of a task on Claude Code: the body of the `bgagents.turn` workflow for `claude-code:*` models.

The CLI runs the agent loop itself, so a turn is checkpointed where the SDK allows: the turn's start
and its session plan are DBOS steps, the CLI writes every message into its session as it goes, and
the end is a step. After a crash the workflow replays to the plan and resumes the same session
(never the first prompt again) when the crashed run had started it; a finished turn is never run
again, since its workflow is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, HookMatcher, ResultMessage
from dbos import DBOS

from ...core.durable import LoopBreaker, ShuttingDown, TurnStopped
from ...core.profiles import Profile
from ...core.progress import ProgressTracker
from ...core.runner import Services, _finish, _sandbox, _snapshot, _worktree_stat
from ...core.schema import Attempt, Progress, Task
from ...core.store import load_messages
from . import sdk, session
from .confine import confine
from .gate import ToolGate
from .options import build_options
from .stream import StreamReader

log = logging.getLogger("bgagents.claude_code")

STEER_POLL = 2.0  # seconds between reads of the steering queue when no event says there is something
WAKE_EVENTS = ("task.steered", "task.children_done")
OPEN_TODOS = ("pending", "in_progress")


async def run_turn(services: Services, task: Task, turn: int, prompt: str) -> str:
    store = services.store
    cwd = services.workspace_for(task)
    snapshot = await DBOS.run_step_async({"name": "turn_start"}, _snapshot, store, task.id, turn)
    history = await store.history(task.id, before_turn=turn)
    source_is_claude = False
    if task.forked_from:
        source = await store.get_task(task.forked_from["task_id"])
        source_is_claude = source is not None and source.model.startswith("claude-code:")

    async def plan_step() -> dict[str, Any]:
        planned = await session.plan(task, turn, cwd, history, source_is_claude)
        await services.publish(await store.add_event("task.session", task.id, {
            "runner": "claude-code", "session_id": planned["session_id"], "turn": turn,
            "forked_from_session": planned["resume"] if planned["fork"] else None}))
        return planned

    plan = await DBOS.run_step_async({"name": "claude_session"}, plan_step)
    sid = plan["session_id"]
    run_dir = services.outputs_dir.parent / "run"
    await asyncio.to_thread(session.end_leftover_process, run_dir, task.id, sid)
    entries = await asyncio.to_thread(session.count_entries, sid, cwd)
    recovering = entries > plan["entries"] or (plan["fork"] and entries > 0)

    baseline = Progress.model_validate(snapshot["progress"])
    attempts = [Attempt.model_validate(a) for a in snapshot["attempts"]]
    messages = history
    if recovering:  # the crashed run's progress and transcript so far are kept and added to
        current = await store.get_task(task.id)
        baseline = current.progress if current else baseline
        messages = load_messages(r["message"] for r in await store.message_rows(task.id))
        await _deny_leftover_approvals(services, task, turn)
    tracker = ProgressTracker(task.id, turn, baseline, len(messages), store, services.bus, services.clock)
    started_at = services.clock()
    unexpected: Exception | None = None  # its traceback goes in the log with the task's end
    try:
        profile = services.profile(task.agent)
        status, output, error, reason = await _converse(services, task, turn, prompt, plan, recovering, profile,
                                                        tracker, messages, baseline)
    except (asyncio.CancelledError, ShuttingDown):
        raise
    except Exception as exc:
        unexpected = exc
        status, output, error, reason = "failed", None, f"Claude Code: {type(exc).__name__}: {exc}", "error"
    attempts.append(Attempt(model=task.model, started_at=started_at, finished_at=services.clock(), error=error))
    diff_stat = None
    if status == "completed" and task.worktree is not None and task.worktree.state == "active":
        diff_stat = await DBOS.run_step_async({"name": "worktree_diff"}, _worktree_stat, task)
    return await _finish(services, task, turn, status, tracker, messages, output, error, reason, attempts, diff_stat,
                         unexpected)


async def _deny_leftover_approvals(services: Services, task: Task, turn: int) -> None:
    """Approvals the crashed run was waiting for: their CLI process is gone, so they are closed; the
    resumed agent asks again if it still needs the call."""
    for approval in await services.store.approvals("pending"):
        if approval.task_id == task.id:
            decided = await services.store.decide_approval(approval.id, "deny", "the turn was interrupted by a "
                                                           "restart; the agent asks again if it still needs this")
            if decided is not None:
                await services.publish(decided[0])


async def _converse(services: Services, task: Task, turn: int, prompt: str, plan: dict[str, Any],
                    recovering: bool, profile: Profile, tracker: ProgressTracker, messages: list[Any],
                    baseline: Progress) -> tuple[str, Any, str | None, str | None]:
    """Runs the CLI until the turn is over; returns (status, output, error, end_reason)."""
    limits = services.limits
    breaker = LoopBreaker(limits.consecutive_threshold, limits.max_tool_calls, baseline.tool_calls)
    sandbox = _sandbox(services, task, profile)
    gate = ToolGate(services, task, turn, profile.permissions, breaker, task.limits.get("tool_calls"),
                    network=sandbox is None or sandbox.network)
    options: ClaudeAgentOptions = build_options(services, task, profile, plan, recovering, baseline)
    options.hooks = {"PreToolUse": [HookMatcher(matcher=None, hooks=[gate.pre_tool_use])]}  # type: ignore[list-item]
    options.can_use_tool = gate.can_use_tool
    options.stderr = lambda line: log.debug("claude-code %s: %s", task.id, line)
    reader = StreamReader(tracker, messages, task.model)
    run_dir = services.outputs_dir.parent / "run"
    launcher = run_dir / f"{task.id}.claude"
    await asyncio.to_thread(confine, options, sandbox, launcher)

    if recovering:
        first = session.RECOVERY_PROMPT
    elif plan["preamble"]:
        first = plan["preamble"] + "\n\n" + prompt
    else:
        first = prompt
    client = ClaudeSDKClient(options)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    pump: asyncio.Task[None] | None = None
    pending: set[str] = set()
    answered = False  # the CLI gave its result: it is let to close on its own, flushing its session file

    async def send(text: str) -> None:
        message_id = str(uuid.uuid4())
        pending.add(message_id)
        reader.add_prompt(text)
        await client.query(_one({"type": "user", "message": {"role": "user", "content": text},
                                 "parent_tool_use_id": None, "uuid": message_id}))

    async def steer() -> bool:
        late = await services.store.claim_steering(task.id)
        for text in late:
            await send(text)
        return bool(late)

    try:
        await client.connect()
        session.remember_process(run_dir, task.id, sdk.cli_pid(client))
        pump = asyncio.create_task(_pump(client, queue))
        await send(first)
        nudges, asked_for_result = 0, False
        last_steer = time.monotonic()
        with services.bus.subscribe(lambda e: e.type in WAKE_EVENTS, task_id=task.id) as wake:
            while True:
                if services.gate.draining:
                    raise ShuttingDown()
                if gate.stopped:
                    raise gate.stopped
                stop = _over_budget(task, tracker.progress)
                if stop is not None:
                    raise stop
                if not wake.empty() or time.monotonic() - last_steer >= STEER_POLL:
                    while not wake.empty():
                        wake.get_nowait()
                    last_steer = time.monotonic()
                    await steer()
                idle = time.monotonic() - reader.last_activity
                if not reader.open_tools and not gate.waiting and idle >= limits.stale_timeout:
                    raise TurnStopped(f"Claude Code: no activity for {limits.stale_timeout:g} s; the turn was "
                                      "stopped", "failed", "stale")
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=0.25)
                except TimeoutError:
                    continue
                if isinstance(message, BaseException):
                    raise message
                if message is None:
                    raise RuntimeError("the Claude Code process ended before the turn did")
                await reader.feed(message)
                if not isinstance(message, ResultMessage):
                    continue
                pending.difference_update(message.user_message_uuids or ([] if message.user_message_uuid
                                                                         else list(pending)))
                if message.user_message_uuid:
                    pending.discard(message.user_message_uuid)
                if gate.stopped:
                    raise gate.stopped
                if message.is_error:
                    answered = True
                    return _failure(message, task, tracker, baseline)
                if await steer() or pending:
                    continue
                todos = await services.store.get_todos(task.id)
                still_open = [t["content"] for t in todos if t.get("status") in OPEN_TODOS]
                if still_open and nudges < limits.completion_nudges:
                    nudges += 1
                    await send("You ended your turn with todos still open: " + "; ".join(still_open)
                               + ". Continue working on them, or mark them completed and give your result.")
                    continue
                output: Any = message.structured_output if task.output_schema else message.result
                if not task.output_schema and not str(output or "").strip() and not asked_for_result:
                    asked_for_result = True
                    await send("You ended without any output. Reply now with your result.")
                    continue
                _settle(tracker, message, baseline)
                answered = True
                return "completed", output, None, None
    except TurnStopped as stop:  # the task's end says why in the log
        return stop.status, None, stop.message, stop.end_reason
    finally:
        # in a task of its own: a second cancel (the workflow's) must not leave the CLI running
        closing = asyncio.create_task(sdk.close(client, pump, graceful=answered))
        while not closing.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(closing)
        session.forget_process(run_dir, task.id)
        shutil.rmtree(launcher, ignore_errors=True)


def _over_budget(task: Task, progress: Progress) -> TurnStopped | None:
    """The task's budgets that the stream can check (tool calls are checked before each call)."""
    figures = {"requests": progress.requests, "input_tokens": progress.input_tokens,
               "output_tokens": progress.output_tokens, "total_tokens": progress.input_tokens + progress.output_tokens,
               "cost_usd": progress.cost_usd or 0.0}
    for key, value in figures.items():
        limit = task.limits.get(key)
        if limit is not None and value > limit:
            return TurnStopped(f"budget crossed: {key} {value:g} > {limit:g}", "failed", "budget")
    return None


def _settle(tracker: ProgressTracker, result: ResultMessage, baseline: Progress) -> None:
    """The result's own figures replace the running estimate: its cost, and its token totals."""
    if result.total_cost_usd is not None:
        tracker.progress.cost_usd = round((baseline.cost_usd or 0.0) + result.total_cost_usd, 6)
    usage = result.usage or {}
    if usage:
        tracker.progress.input_tokens = baseline.input_tokens + int(usage.get("input_tokens") or 0) + int(
            usage.get("cache_read_input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
        tracker.progress.output_tokens = baseline.output_tokens + int(usage.get("output_tokens") or 0)


def _failure(result: ResultMessage, task: Task, tracker: ProgressTracker,
             baseline: Progress) -> tuple[str, Any, str | None, str | None]:
    _settle(tracker, result, baseline)
    detail = "; ".join(result.errors or []) or result.result or result.subtype
    if result.subtype == "error_max_turns":
        return "failed", None, f"budget crossed: max_turns ({detail})", "budget"
    if result.subtype == "error_max_budget_usd":
        return "failed", None, f"budget crossed: cost_usd ({detail})", "budget"
    status = f" (HTTP {result.api_error_status})" if result.api_error_status else ""
    return "failed", None, f"Claude Code: {detail}{status}", "model_error"


async def _one(message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield message


async def _pump(client: ClaudeSDKClient, queue: asyncio.Queue[Any]) -> None:
    """Moves the CLI's messages into a queue, so the turn can also wait for steering and time."""
    try:
        async for message in client.receive_messages():
            queue.put_nowait(message)
        queue.put_nowait(None)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        queue.put_nowait(exc)
