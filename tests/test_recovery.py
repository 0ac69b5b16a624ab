"""A turn resumed after a stop replays from what its first run saw; a replay that cannot go on ends failed.

(`test_durability.py` does the same through `kill -9` of a real server.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Runtime, Settings
from bgagents.core import db
from bgagents.core.db import create_engine
from bgagents.core.schema import Task
from bgagents.core.store import Store
from bgagents.settings import ConcurrencySettings, LimitSettings

from .conftest import Script, tool_returns, user_texts


def _stored(settings: Settings, task_id: str) -> Any:
    return Store(create_engine(settings.sqlalchemy_url)).get_task_sync(task_id)


async def _until(predicate: Any) -> None:
    async with asyncio.timeout(20):
        while not predicate():
            await asyncio.sleep(0.01)


def _echoes(prefix: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """Script steps whose side effects show in log.txt: `echo PREFIXk >> log.txt`, k = 0 .. count-1."""
    return [("bash", {"command": f"echo {prefix}{k} >> log.txt"}) for k in range(count)]


def _pause_at(call: int, go: asyncio.Event) -> Any:
    """A Script's `before`: its `call`-th request waits (in flight when the process stops) until `go`."""
    async def before(n: int) -> None:
        if n == call and not go.is_set():
            await asyncio.sleep(60)

    return before


async def test_a_fork_whose_copy_ends_with_a_request_resumes_after_a_stop(settings: Settings) -> None:
    """The copy of a session caught mid-turn (or `fork --at N`) can end with a request (a tool's result):
    the fork's prompt is merged into it, and that row is rewritten with the first response. The replay
    after a restart still starts from the history the first run saw, and repeats no finished step."""
    go = asyncio.Event()
    forked = Script(steps=_echoes("fork", 4), answer="fork done", before=_pause_at(2, go))
    rt = Runtime(settings)
    rt.register_model("source", Script(steps=[("bash", {"command": "true"})] * 2).model())
    rt.register_model("forked", forked.model("forked"))
    await rt.start()
    source = await rt.wait((await rt.launch("work", model="source")).id, timeout=20)
    assert source.status == "completed", source.error
    # the first three messages: the prompt, the first tool call and its result
    fork = await rt.fork(source.id, "go on", at=3, model="forked")
    await _until(lambda: len(forked.calls) == 2)
    await rt.stop(grace=0.2)
    assert _stored(settings, fork.id).status == "queued"

    rt2 = Runtime(settings)
    rt2.register_model("forked", forked.model("forked"))
    go.set()
    async with rt2:
        done = await rt2.wait(fork.id, timeout=20)
        assert (done.status, done.error) == ("completed", None)
        assert done.result and done.result.text == "fork done"
        transcript = await rt2.transcript(fork.id, limit=1000)
    # requests 1 (the first) finished before the stop and was not sent again; request 2 was in flight
    assert [tool_returns(m) for m in forked.calls] == [1, 2, 2, 3, 4]
    assert all(user_texts(messages) == ["work", "go on"] for messages in forked.calls)
    assert [e.content for e in transcript if e.role == "user"] == ["work", "go on"]
    assert [e.role for e in transcript].count("tool_result") == 4
    assert (settings.workspace_path / "log.txt").read_text().split() == ["fork1", "fork2", "fork3"]


async def test_a_structured_task_resumed_then_stopped_mid_turn_completes(settings: Settings) -> None:
    """A task with an output schema ends its transcript with a request (its output tool's result), so the
    next turn's prompt is merged into it, as with a fork: its replay after a restart goes on too."""
    calls: list[tuple[int, int]] = []
    block = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn, done = len(user_texts(messages)), tool_returns(messages)
        calls.append((turn, done))
        if turn == 2 and done == 2 and not block.is_set():
            await asyncio.sleep(60)  # in flight when the process stops
        if turn == 2 and done < 3:
            return ModelResponse(parts=[ToolCallPart("bash", {"command": f"echo again{done} >> log.txt"},
                                                     tool_call_id=f"a{done}")])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"answer": f"turn {turn}"},
                                                 tool_call_id=f"out{turn}")])

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    rt = Runtime(settings)
    rt.register_model("m", FunctionModel(model, model_name="m"))
    await rt.start()
    task = await rt.wait((await rt.launch("first", model="m", output_schema=schema)).id, timeout=20)
    assert task.status == "completed" and task.result and task.result.data == {"answer": "turn 1"}
    await rt.resume(task.id, "again")
    await _until(lambda: (2, 2) in calls)
    await rt.stop(grace=0.2)

    rt2 = Runtime(settings)
    rt2.register_model("m", FunctionModel(model, model_name="m"))
    block.set()
    async with rt2:
        done = await rt2.wait(task.id, timeout=20)
    assert (done.status, done.error) == ("completed", None)
    assert done.result and done.result.data == {"answer": "turn 2"}
    # the output tool's result counts as a tool return: turn 2 starts at 1
    assert calls == [(1, 0), (2, 1), (2, 2), (2, 2), (2, 3)]
    assert (settings.workspace_path / "log.txt").read_text().split() == ["again1", "again2"]


async def _replayed_after(settings: Settings, tamper: Callable[[sa.Connection, str], None]) -> Task:
    """A task's second turn stops with a request in flight; `tamper` changes the database while the process
    is down; the next process replays the turn. Returns the task as it ended, after checking that its
    concurrency slot (limit 1) then serves the next task."""
    settings.concurrency = ConcurrencySettings(default=1)
    block = asyncio.Event()
    waiting = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if "again" in user_texts(messages):  # the second turn checkpoints a request and a tool call, then stops
            if tool_returns(messages) < 2:
                return ModelResponse(parts=[ToolCallPart("bash", {"command": "true"}, tool_call_id="c2")])
            if not block.is_set():
                waiting.set()
                await asyncio.sleep(60)  # in flight when the process stops
        if tool_returns(messages) < 1:
            return ModelResponse(parts=[ToolCallPart("bash", {"command": "true"}, tool_call_id="c1")])
        return ModelResponse(parts=[TextPart("ok")])

    rt = Runtime(settings)
    rt.register_model("m", FunctionModel(model, model_name="m"))
    await rt.start()
    task = await rt.wait((await rt.launch("first", model="m")).id, timeout=20)
    assert task.status == "completed", task.error
    await rt.resume(task.id, "again")
    await asyncio.wait_for(waiting.wait(), 20)
    await rt.stop(grace=0.2)
    engine = create_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        tamper(conn, task.id)
    engine.dispose()

    rt2 = Runtime(settings)
    rt2.register_model("m", FunctionModel(model, model_name="m"))
    block.set()
    async with rt2:
        ended = await rt2.wait(task.id, timeout=20)
        assert ended.status == "failed" and ended.end_reason == "error" and ended.finished_at is not None
        nxt = await rt2.wait((await rt2.launch("next", model="m")).id, timeout=20)
        assert nxt.status == "completed", nxt.error
        assert await rt2.running_counts() == {}
    events = [e.type for e in await Store(create_engine(settings.sqlalchemy_url)).events_since(0, task_id=task.id)]
    assert events.count("task.failed") == 1 and events[-1] == "task.failed"
    return ended


async def test_a_replay_that_cannot_go_on_ends_failed_and_frees_its_slot(settings: Settings) -> None:
    """If a replay takes another path than its first run (here: the transcript before the turn lost its
    last messages while the process was down), the task ends `failed` with the reason, not `running`
    for ever, and its concurrency slot serves the next task."""
    def lose_the_last_messages(conn: sa.Connection, task_id: str) -> None:  # the history ends with a call
        conn.execute(db.messages.delete().where(db.messages.c.session_id == task_id, db.messages.c.idx >= 2))

    ended = await _replayed_after(settings, lose_the_last_messages)
    # the replay stops where it differs: here pydantic-ai refuses the history before any step runs
    assert ended.error and "unprocessed tool calls" in ended.error


async def test_a_replay_whose_checkpoints_no_longer_match_ends_failed_and_frees_its_slot(settings: Settings) -> None:
    """The safety net past a turn's own error handling: when DBOS finds a recorded step other than the one
    the replay asks for (here the turn's first checkpoint, before the agent runs), the task ends `failed`
    saying the turn could not go on."""
    def rename_the_first_step(conn: sa.Connection, task_id: str) -> None:
        table = "dbos.operation_outputs" if conn.dialect.name == "postgresql" else "operation_outputs"
        changed = conn.execute(sa.text(f"UPDATE {table} SET function_name = 'something_else' "
                                       "WHERE workflow_uuid = :w AND function_name = 'turn_start'"),
                               {"w": f"{task_id}.2"}).rowcount
        assert changed == 1

    ended = await _replayed_after(settings, rename_the_first_step)
    assert ended.error and "could not go on" in ended.error and "DBOSUnexpectedStepError" in ended.error


async def test_a_task_that_fell_back_to_another_model_resumes_after_a_stop(settings: Settings) -> None:
    """The task's model is the fallback after a switch; its replay still starts with the model the turn
    started with, so it meets the checkpointed failures and the switch where the first run did."""
    settings.limits = LimitSettings(retries=0, retry_backoff=0.001)
    failures: list[int] = []
    go = asyncio.Event()
    backup = Script(steps=_echoes("b", 2), answer="from backup", before=_pause_at(2, go))

    async def primary(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        failures.append(1)
        raise ModelHTTPError(429, "primary", {"error": {"type": "rate_limit_error"}})

    def models(rt: Runtime) -> None:
        rt.register_model("primary", FunctionModel(primary, model_name="primary"))
        rt.register_model("backup", backup.model("backup"))

    rt = Runtime(settings)
    models(rt)
    await rt.start()
    task = await rt.launch("x", model="primary", fallback_models=["backup"])
    await _until(lambda: len(backup.calls) == 2)
    await rt.stop(grace=0.2)
    assert _stored(settings, task.id).model == "backup"

    rt2 = Runtime(settings)
    models(rt2)
    go.set()
    async with rt2:
        done = await rt2.wait(task.id, timeout=20)
    assert (done.status, done.error) == ("completed", None)
    assert [a.model for a in done.attempts] == ["primary", "backup"] and done.attempts[0].error
    # the failure and backup's first answer were not repeated
    assert failures == [1] and [tool_returns(m) for m in backup.calls] == [0, 1, 1, 2]
    assert (settings.workspace_path / "log.txt").read_text().split() == ["b0", "b1"]
