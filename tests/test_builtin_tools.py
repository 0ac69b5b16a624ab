"""The built-in tools, driven through a real pydantic-ai agent: behaviour, errors, workspace confinement."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents.tools import BUILTIN_TOOL_NAMES, Todo, ToolContext, build_toolset, summarize_args


class MemoryTodos:
    def __init__(self) -> None:
        self.todos: dict[str, list[Todo]] = {}

    async def load_todos(self, task_id: str) -> list[Todo]:
        return self.todos.get(task_id, [])

    async def save_todos(self, task_id: str, todos: list[Todo]) -> None:
        self.todos[task_id] = todos


def make_ctx(tmp_path: Path, **kw: Any) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    return ToolContext(task_id="bg_test", workspace=ws.resolve(), outputs_dir=(tmp_path / "out").resolve(),
                       todos=MemoryTodos(), **kw)


async def call_tool(ctx: ToolContext, name: str, args: dict[str, Any]) -> str:
    """Runs one tool call through an agent and returns what the model got back (result or retry message)."""

    seen: list[str] = []

    def capture(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id="c1")])
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        for part in last.parts:
            if isinstance(part, ToolReturnPart):
                seen.append(str(part.content))
            elif isinstance(part, RetryPromptPart):
                seen.append("RETRY: " + part.model_response())
        return ModelResponse(parts=[TextPart("ok")])

    agent: Agent[ToolContext, str] = Agent(FunctionModel(capture), deps_type=ToolContext,
                                           toolsets=[build_toolset(BUILTIN_TOOL_NAMES)])
    await agent.run("go", deps=ctx)
    assert len(seen) == 1
    return seen[0]


async def test_write_read_edit_glob_grep(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    assert "wrote 13 bytes" in await call_tool(ctx, "write", {"path": "src/a.py", "content": "x = 1\ny = 22\n"})
    out = await call_tool(ctx, "read", {"path": "src/a.py"})
    assert "1\tx = 1" in out and "2\ty = 22" in out
    paged = await call_tool(ctx, "read", {"path": "src/a.py", "offset": 0, "limit": 1})
    assert "offset=1" in paged
    assert "replaced 1" in await call_tool(ctx, "edit", {"path": "src/a.py", "old_string": "22", "new_string": "3"})
    assert (ctx.workspace / "src/a.py").read_text() == "x = 1\ny = 3\n"
    assert await call_tool(ctx, "glob", {"pattern": "**/*.py"}) == "src/a.py"
    assert await call_tool(ctx, "grep", {"pattern": r"y = \d"}) == "src/a.py:2: y = 3"
    assert "no matches" in await call_tool(ctx, "grep", {"pattern": "zzz", "include": "*.md"})


async def test_errors_go_back_to_the_model(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.workspace / "f.txt").write_text("a a\n")
    assert "does not exist" in await call_tool(ctx, "read", {"path": "missing.txt"})
    assert "is a directory" in await call_tool(ctx, "read", {"path": "."})
    assert "appears 2 times" in await call_tool(ctx, "edit", {"path": "f.txt", "old_string": "a", "new_string": "b"})
    assert "not found" in await call_tool(ctx, "edit", {"path": "f.txt", "old_string": "q", "new_string": "b"})
    assert "bad regular expression" in await call_tool(ctx, "grep", {"pattern": "("})
    (ctx.workspace / "bin").write_bytes(b"\x00\x01\x02")
    assert "binary" in await call_tool(ctx, "read", {"path": "bin"})


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/../../outside.txt", "~/x"])
async def test_paths_outside_the_workspace_are_refused(tmp_path: Path, path: str) -> None:
    ctx = make_ctx(tmp_path)
    for tool, args in (("read", {"path": path}), ("write", {"path": path, "content": "x"}),
                       ("edit", {"path": path, "old_string": "a", "new_string": "b"}),
                       ("glob", {"pattern": "*", "path": path}), ("grep", {"pattern": "x", "path": path})):
        out = await call_tool(ctx, tool, args)
        assert "outside the workspace" in out, (tool, out)
    assert not (tmp_path / "outside.txt").exists()


async def test_paths_the_system_cannot_take_are_tool_errors(tmp_path: Path) -> None:
    """Found by fuzzing: `~nosuchuser/x` raised out of the tool and failed the task instead of telling the model."""
    ctx = make_ctx(tmp_path)
    (ctx.workspace / "loop").symlink_to(ctx.workspace / "loop")
    cases = {"~nosuchuser/x": "no such user", "loop/x": "cannot be resolved", "a" * 300 + "/x": "name too long"}
    for path, words in cases.items():
        for tool, args in (("read", {"path": path}), ("write", {"path": path, "content": "x"}),
                           ("edit", {"path": path, "old_string": "a", "new_string": "b"}),
                           ("glob", {"pattern": "*", "path": path}), ("grep", {"pattern": "x", "path": path})):
            out = await call_tool(ctx, tool, args)
            assert words in out.lower(), (tool, path, out)


async def test_symlinks_out_of_the_workspace_are_refused(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("hunter2")
    (ctx.workspace / "link.txt").symlink_to(secret / "key.txt")
    (ctx.workspace / "linkdir").symlink_to(secret)
    assert "outside the workspace" in await call_tool(ctx, "read", {"path": "link.txt"})
    assert "outside the workspace" in await call_tool(ctx, "read", {"path": "linkdir/key.txt"})
    assert "outside the workspace" in await call_tool(ctx, "write", {"path": "linkdir/new.txt", "content": "x"})
    assert "hunter2" not in await call_tool(ctx, "grep", {"pattern": "hunter"})
    assert not (secret / "new.txt").exists()


async def test_bash_runs_in_the_workspace_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("BGAGENTS_TOKEN", "tok-secret")
    ctx = make_ctx(tmp_path)
    out = await call_tool(ctx, "bash", {"command": "pwd; env"})
    assert str(ctx.workspace) in out
    assert "sk-secret" not in out and "tok-secret" not in out
    failed = await call_tool(ctx, "bash", {"command": "echo oops; exit 3"})
    assert failed.startswith("exit code: 3") and "oops" in failed


async def test_bash_timeout_kills_the_process_group(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    pidfile = ctx.workspace / "child.pid"
    t0 = time.monotonic()
    out = await call_tool(ctx, "bash", {"command": f"sleep 30 & echo $! > {pidfile}; echo started; wait",
                                        "timeout": 1})
    assert "timed out after 1 s" in out and "started" in out
    assert time.monotonic() - t0 < 5
    pid = int(pidfile.read_text())
    await asyncio.sleep(0.1)
    assert not alive(pid)


def alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def test_long_output_is_cut_with_a_pointer_to_the_full_output(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, max_output_chars=1000)
    out = await call_tool(ctx, "bash", {"command": "seq 1 5000"})
    assert "characters cut" in out and len(out) < 1500
    path = out.split("the full output is in ")[1].split(" ")[0]
    assert Path(path).read_text().split() == [str(i) for i in range(1, 5001)]
    read_back = await call_tool(ctx, "read", {"path": path, "offset": 4999})
    assert "5000" in read_back


async def test_todos_round_trip(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    out = await call_tool(ctx, "todowrite", {"todos": [{"content": "plan", "status": "completed"},
                                                       {"content": "build", "status": "in_progress"},
                                                       {"content": "ship"}]})
    assert out == "3 todos: 1 done, 1 in progress, 1 pending"
    listing = await call_tool(ctx, "todoread", {})
    assert "[in_progress] build" in listing and "[pending] ship" in listing


def test_summaries_and_unknown_tools() -> None:
    assert summarize_args("bash", {"command": "ls   -la\n"}) == "bash: ls -la"
    assert summarize_args("todowrite", {"todos": [1, 2]}) == "todowrite: 2 todos"
    assert len(summarize_args("bash", {"command": "x" * 500})) == 120
    with pytest.raises(ValueError, match="rm_rf"):
        build_toolset(["bash", "rm_rf"])
