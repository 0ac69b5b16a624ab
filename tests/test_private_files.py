"""The server's own files (token, config.toml, the database, other tasks' outputs) are out of every file tool's and
`GET /files`' reach whatever the layout; a fresh home is its user's alone."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bgagents import Runtime, Settings
from bgagents.server import create_app
from bgagents.tools import ToolContext
from bgagents.tools.private import ServerFiles, open_resolved

from .conftest import ServerProcess
from .fake_openai import FakeOpenAI, env_for
from .test_builtin_tools import MemoryTodos, call_tool
from .test_durability import wait_for

TOKEN = "tok-3f9a"
TELEGRAM = "123456:telegram-secret"
SECRETS = (TOKEN, TELEGRAM, "SQLite format", "another task's output")


def layout(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """(home, workspace) of each layout the issue names."""
    if name == "workspace-is-home":
        return tmp_path / "home", tmp_path / "home"
    if name == "home-in-workspace":  # a workspace of ~ with the home at ~/.bgagents
        return tmp_path / "ws" / ".bgagents", tmp_path / "ws"
    return tmp_path / "home", tmp_path / "home" / "workspace"  # the default, reached through links


@pytest.fixture(params=["workspace-is-home", "home-in-workspace", "links-into-home"])
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    home, workspace = layout(tmp_path, request.param)
    home.mkdir(parents=True)
    (home / "config.toml").write_text(f'[telegram]\ntoken = "{TELEGRAM}"\nallowed_chats = [1]\n')
    (home / "token").write_text(TOKEN)
    settings = Settings(home=home, workspace=workspace, token=TOKEN)
    async with Runtime(settings) as runtime:
        (home / "outputs" / "bg_other-1234.txt").write_text("another task's output")
        (home / "outputs" / "bg_test-5678.txt").write_text("my own cut output")
        if request.param == "links-into-home":
            (workspace / "token").symlink_to(home / "token")
            (workspace / "config.toml").symlink_to(home / "config.toml")
            (workspace / "bgagents.db").symlink_to(home / "bgagents.db")
            (workspace / "bgagents.db-wal").symlink_to(home / "bgagents.db-wal")
            (workspace / "outputs").symlink_to(home / "outputs")
        (runtime.settings.workspace_path / "mine.txt").write_text("the task's own file")
        yield runtime


def where(rt: Runtime) -> str:
    """How a workspace path names the server's files in this layout."""
    workspace, home = rt.settings.workspace_path, rt.settings.home.resolve()
    return "" if home == workspace or not home.is_relative_to(workspace) else f"{home.relative_to(workspace)}/"


async def test_file_tools_refuse_the_servers_files(rt: Runtime) -> None:
    ctx = ToolContext(task_id="bg_test", workspace=rt.services.workspace, outputs_dir=rt.services.outputs_dir,
                      todos=MemoryTodos(), server_files=rt.services.server_files)
    prefix = where(rt)
    for name in ("token", "config.toml", "bgagents.db", "bgagents.db-wal", "outputs/bg_other-1234.txt"):
        for tool, args in (("read", {"path": prefix + name}), ("write", {"path": prefix + name, "content": "x"}),
                           ("edit", {"path": prefix + name, "old_string": "t", "new_string": "x"}),
                           ("grep", {"pattern": ".", "path": prefix + name})):
            out = await call_tool(ctx, tool, args)
            assert "server's own files" in out or "outside the workspace" in out, (tool, name, out)
            assert not any(s in out for s in SECRETS), (tool, name, out)
    everything = await call_tool(ctx, "grep", {"pattern": "."})
    assert "the task's own file" in everything and not any(s in everything for s in SECRETS), everything
    listed = await call_tool(ctx, "glob", {"pattern": "**/*"})
    assert "mine.txt" in listed and "token" not in listed and "bgagents.db" not in listed, listed
    assert "my own cut output" in await call_tool(ctx, "read", {"path": str(rt.services.outputs_dir /
                                                                             "bg_test-5678.txt")})
    assert "wrote" in await call_tool(ctx, "write", {"path": "new/file.txt", "content": "made"})
    assert (rt.settings.home / "token").read_text() == TOKEN


async def test_files_route_refuses_the_servers_files(rt: Runtime) -> None:
    app = create_app(rt, TOKEN, manage_runtime=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        prefix = where(rt)
        for name in ("token", "config.toml", "bgagents.db", "bgagents.db-wal", "outputs/bg_other-1234.txt"):
            response = await api.get(f"/files/{prefix}{name}")
            assert response.status_code in (400, 404), (name, response.status_code)
            assert not any(s in response.text for s in SECRETS), (name, response.text)
        mine = await api.get("/files/mine.txt")
        assert mine.status_code == 200 and mine.text == "the task's own file"


def test_open_resolved_never_follows_a_link_planted_after_the_check(tmp_path: Path) -> None:
    ws, secret = tmp_path / "ws", tmp_path / "secret"
    (ws / "dir").mkdir(parents=True)
    secret.mkdir()
    (secret / "key").write_text("hunter2")
    (ws / "dir" / "key").write_text("mine")
    checked = (ws / "dir" / "key").resolve()
    (ws / "dir" / "key").unlink()
    (ws / "dir").rmdir()
    (ws / "dir").symlink_to(secret)  # swapped in between the check and the open
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(OSError):
            os.close(open_resolved(checked, flags))
    (ws / "dir").unlink()
    (ws / "dir").mkdir()
    (ws / "dir" / "key").symlink_to(secret / "key")  # the file itself a link
    with pytest.raises(OSError):
        os.close(open_resolved(checked, os.O_RDONLY))
    assert (secret / "key").read_text() == "hunter2"


def test_server_files_by_layout(tmp_path: Path) -> None:
    home = tmp_path / "h"
    default = ServerFiles.of(home, home / "workspace")
    assert default.owns(home / "token") and default.owns(home / "outputs" / "x") and default.owns(home)
    assert not default.owns(home / "workspace" / "token") and not default.owns(tmp_path / "elsewhere")
    assert default.owns(home / "worktrees" / "bg_a" / "f")
    assert not default.owns(home / "worktrees" / "bg_a" / "f", task_area=home / "worktrees" / "bg_a")
    same = ServerFiles.of(home, home)
    assert same.owns(home / "token") and same.owns(home / "bgagents.db-wal") and same.owns(home / "run" / "x")
    assert not same.owns(home / "notes.txt") and not same.owns(home)
    inside = ServerFiles.of(tmp_path / "ws" / ".bgagents", tmp_path / "ws", [tmp_path / "db.sqlite"])
    assert inside.owns(tmp_path / "ws" / ".bgagents" / "anything") and inside.owns(tmp_path / "db.sqlite")
    assert not inside.owns(tmp_path / "ws" / "src.py")


def test_a_fresh_home_is_its_users_alone(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """Everything `serve` and a task create in a new home: folders 0700, files 0600 (a cut tool output too)."""
    home = tmp_path / "fresh"
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url), BGAGENTS_HOME=str(home))
        server.start(timeout=90)
        with server.client() as client:
            task = client.post("/tasks", json={"prompt": "run: seq 1 20000", "model": "openai-chat:run"}).json()
            wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] == "completed", 60, "the task")
        server.stop()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert list((home / "outputs").iterdir()), "the long output was not cut"
    loose = {str(p.relative_to(home)): oct(stat.S_IMODE(p.stat().st_mode))
             for p in home.rglob("*") if "workspace" not in p.relative_to(home).parts
             and stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}
