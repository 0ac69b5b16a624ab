"""The Claude Code runner against the real Claude Code CLI (bundled in claude-agent-sdk's wheel), offline:
the CLI talks to a fake Anthropic endpoint of our own (tests/fake_anthropic.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bgagents import Runtime, Settings
from tests.conftest import make_settings
from tests.fake_anthropic import FakeAnthropic, Reply, Steps, tool, tool_results, user_texts

sdk = pytest.importorskip("claude_agent_sdk", reason="the Claude Code runner needs the bgagents[claude] extra")
CLI = Path(sdk.__file__).parent / "_bundled" / "claude"
if not CLI.exists():
    pytest.skip(f"claude-agent-sdk has no bundled Claude Code CLI at {CLI}", allow_module_level=True)

MODEL = "claude-code:sonnet"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def claude_env(fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """The CLI on the fake endpoint with a private HOME (its sessions live there); a fresh script per test."""
    fake.requests.clear()
    fake.script = Steps()
    home = tmp_path / "claude-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    return fake


@pytest.fixture
async def rt(claude_env: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(make_settings(tmp_path)) as runtime:
        yield runtime


def claude_children() -> list[int]:
    """This process's Claude Code CLI children still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid, state = int(stat.rsplit(")", 1)[1].split()[1]), stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and state != "Z" and b"_bundled/claude" in cmdline:
            found.append(int(entry.name))
    return found


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_progress_transcript_and_result(rt: Runtime, claude_env: FakeAnthropic, tmp_path: Path) -> None:
    claude_env.script = Steps([
        tool("TaskCreate", subject="write the note", description="a note"),
        tool("TaskUpdate", taskId="1", status="in_progress"),
        tool("Bash", command="echo hello > note.txt", description="Write the note"),
        tool("TaskUpdate", taskId="1", status="completed"),
    ], answer="The note is written.")
    task = await rt.launch("write a note", model=MODEL)
    assert task.concurrency_key == MODEL
    done = await rt.wait(task.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.result is not None and done.result.text == "The note is written."
    assert (tmp_path / "ws" / "note.txt").read_text().strip() == "hello"
    p = done.progress
    assert p.requests == 5 and p.tool_calls == 4
    assert p.last_tool == "TaskUpdate"
    assert p.todos.total == 1 and p.todos.done == 1
    assert p.input_tokens == 500 and p.output_tokens == 100  # the fake's usage: 100 in, 20 out per request
    assert p.cost_usd is not None and p.cost_usd > 0
    assert p.last_message == "The note is written."
    events = [e async for e in _events(rt, task.id)]
    calls = [e.data["args"] for e in events if e.type == "task.tool_call"]
    assert "Bash: echo hello > note.txt" in calls
    assert any(e.type == "task.todos" for e in events)
    session = next(e for e in events if e.type == "task.session")
    assert session.data["runner"] == "claude-code" and session.data["session_id"]
    entries = await rt.transcript(task.id)
    roles = [(e.role, e.tool_name) for e in entries]
    assert roles[0] == ("user", None) and entries[0].content == "write a note"
    assert ("tool_call", "Bash") in roles and ("tool_result", "Bash") in roles
    assert roles[-1] == ("assistant", None) and entries[-1].content == "The note is written."
    assert claude_children() == []


async def _events(rt: Runtime, task_id: str) -> AsyncIterator[Any]:
    for event in await rt.store.events_since(0, task_id=task_id, limit=10_000):
        yield event
