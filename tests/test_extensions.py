"""The core's extension interface, on the core runtime alone (no conversations attached)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset

from bgagents.core.extensions import Extension
from bgagents.core.runtime import Runtime as CoreRuntime
from bgagents.core.schema import Task
from bgagents.settings import LimitSettings
from bgagents.tools import ToolContext
from tests.conftest import Script, make_settings

metadata = sa.MetaData()
ended = sa.Table("test_ended", metadata, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                 sa.Column("task_id", sa.String(64), nullable=False),
                 sa.Column("status", sa.String(16), nullable=False))
keep = sa.Table("test_keep", metadata, sa.Column("task_id", sa.String(64), primary_key=True))


def shout(text: str) -> str:
    """Returns the text in capitals."""
    return text.upper()


class Recorder(Extension):
    name = "recorder"
    metadata = metadata

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sweeps = 0

    def attach(self, runtime: Any) -> None:
        self.runtime = runtime
        self.calls.append("attach")

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def sweep(self, now: float) -> None:
        self.sweeps += 1

    def task_ended(self, conn: sa.Connection, task_id: str) -> None:
        status = conn.execute(sa.text("SELECT status FROM bg_tasks WHERE id = :id"), {"id": task_id}).scalar_one()
        conn.execute(ended.insert().values(task_id=task_id, status=status))

    def retained(self) -> sa.Select[Any]:
        return sa.select(keep.c.task_id)

    async def toolsets(self, task: Task) -> list[AbstractToolset[ToolContext]]:
        return [FunctionToolset([shout])] if task.name.startswith("loud") else []


@pytest.fixture
def tmp_settings(tmp_path: Path) -> Any:
    return make_settings(tmp_path, limits=LimitSettings(sweep_interval=0.05))


async def test_hooks_are_called_in_order_and_in_the_ending_transaction(tmp_settings: Any) -> None:
    recorder = Recorder()
    runtime = CoreRuntime(tmp_settings, extensions=[recorder])
    assert not hasattr(runtime, "conversations")  # the core alone
    async with runtime as rt:
        assert recorder.calls == ["attach", "start"]
        rt.register_model("m", Script(answer="fine").model())
        done = await rt.wait((await rt.launch("plain", model="m")).id, timeout=10)
        assert done.status == "completed"
        with rt.db_engine.connect() as conn:
            assert conn.execute(sa.select(ended.c.task_id, ended.c.status)).all() == [(done.id, "completed")]
        while recorder.sweeps == 0:  # the sweep reaches extensions
            await asyncio.sleep(0.02)
    assert recorder.calls == ["attach", "start", "stop"]


async def test_retained_tasks_survive_retention_and_toolsets_reach_the_turn(tmp_settings: Any) -> None:
    recorder = Recorder()
    async with CoreRuntime(tmp_settings, extensions=[recorder]) as rt:
        script = Script(steps=[("shout", {"text": "hi"})], answer="said it")
        rt.register_model("m", script.model())
        loud = await rt.wait((await rt.launch("shout hi", name="loud-one", model="m")).id, timeout=10)
        assert loud.status == "completed"
        assert "HI" in str(script.calls[-1][-1])  # the extension's tool ran in the turn
        rt.register_model("plain", Script(answer="ok").model())
        quiet = await rt.wait((await rt.launch("plain", name="quiet", model="plain")).id, timeout=10)
        assert quiet.status == "completed"
        with rt.db_engine.begin() as conn:
            conn.execute(keep.insert().values(task_id=loud.id))
        assert await rt.prune(rt.clock() + 1) == 1
        assert [t.id for t in await rt.list()] == [loud.id]
