"""Isolated workspaces: each task in its own git worktree; diff, merge (conflicts refused whole), discard."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from bgagents import Runtime
from bgagents.errors import Conflict, InvalidInput
from bgagents.server import create_app

from .conftest import Script, make_settings

TOKEN = "t0ken"
LINES = [f"line {i}" for i in range(1, 21)]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "shared.txt").write_text("\n".join(LINES) + "\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "start")
    return path


def edit(old: str, new: str) -> Script:
    """An agent that replaces one line of shared.txt and says so."""
    step = ("edit", {"path": "shared.txt", "old_string": old, "new_string": new})
    return Script(steps=[step], answer=f"changed {old}")


async def test_side_by_side_then_merge_both(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    async with Runtime(make_settings(tmp_path)) as rt:
        rt.register_model("top", edit("line 3", "line 3 by top").model())
        rt.register_model("bottom", edit("line 19", "line 19 by bottom").model())
        a = await rt.launch("change the top", model="top", isolation="worktree")
        b = await rt.launch("change the bottom", model="bottom", isolation="worktree")
        assert a.worktree and b.worktree and a.worktree.path != b.worktree.path
        assert a.worktree.branch.startswith("bgagents/change-top-")
        a, b = await rt.wait(a.id, 30), await rt.wait(b.id, 30)
        assert a.status == b.status == "completed", (a.error, b.error)
        assert a.result and "shared.txt" in (a.result.diff_stat or "")
        assert (ws / "shared.txt").read_text() == "\n".join(LINES) + "\n"  # the shared workspace is untouched
        changes = await rt.diff(a.id)
        assert changes.files == ["shared.txt"] and "+line 3 by top" in changes.patch
        merged = await rt.merge(a.id)
        assert merged.worktree and merged.worktree.state == "merged" and not Path(a.worktree.path).exists()
        await rt.merge(b.id)
        text = (ws / "shared.txt").read_text()
        assert "line 3 by top" in text and "line 19 by bottom" in text
        assert "bgagents/" not in git(ws, "branch")  # branches gone with their worktrees
        with pytest.raises(Conflict, match="already merged"):
            await rt.merge(a.id)


async def test_overlapping_edits_conflict_and_nothing_is_half_merged(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    async with Runtime(make_settings(tmp_path)) as rt:
        rt.register_model("one", edit("line 5", "line 5 by one").model())
        rt.register_model("two", edit("line 5", "line 5 by two").model())
        one = await rt.launch("first", model="one", isolation="worktree")
        two = await rt.launch("second", model="two", isolation="worktree")
        await rt.wait(one.id, 30)
        await rt.wait(two.id, 30)
        await rt.merge(one.id)
        head = git(ws, "rev-parse", "HEAD")
        with pytest.raises(Conflict, match=r"conflicts in shared\.txt") as caught:
            await rt.merge(two.id)
        assert caught.value.status == 409 and caught.value.code == "merge_conflict"
        assert git(ws, "rev-parse", "HEAD") == head and git(ws, "status", "--porcelain") == ""
        assert "line 5 by one" in (ws / "shared.txt").read_text()
        still = await rt.get(two.id)
        assert still.worktree and still.worktree.state == "active" and Path(still.worktree.path).exists()
        gone = await rt.discard(two.id)
        assert gone.worktree and gone.worktree.state == "discarded" and not Path(gone.worktree.path).exists()


async def test_not_a_git_repository_is_refused_at_launch(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    async with Runtime(make_settings(tmp_path)) as rt:
        rt.register_model("one", edit("a", "b").model())
        with pytest.raises(InvalidInput, match="not a git repository"):
            await rt.launch("x", model="one", isolation="worktree")
        with pytest.raises(InvalidInput, match="unknown isolation"):
            await rt.launch("x", model="one", isolation="container")
        assert await rt.list() == []
        plain = await rt.launch("x", model="one")
        with pytest.raises(InvalidInput, match="no worktree"):
            await rt.diff(plain.id)


async def test_api_cli_routes_and_retention(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    async with Runtime(make_settings(tmp_path)) as rt:
        rt.register_model("top", edit("line 7", "line 7 via api").model())
        app = create_app(rt, TOKEN, manage_runtime=False)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/api/v1",
                                     headers=headers) as http:
            bad = await http.post("/tasks", json={"prompt": "x", "model": "top", "isolation": "vm"})
            assert bad.status_code == 422
            made = (await http.post("/tasks", json={"prompt": "edit", "model": "top", "isolation": "worktree"}))
            assert made.status_code == 201, made.text
            tid = made.json()["id"]
            early = await http.post(f"/tasks/{tid}/merge")
            assert early.status_code in (200, 409)
            await rt.wait(tid, 30)
            changes = (await http.get(f"/tasks/{tid}/diff")).json()
            assert changes["files"] == ["shared.txt"] and "1 file changed" in changes["stat"]
            done = await http.post(f"/tasks/{tid}/merge")
            assert done.status_code == 200 and done.json()["worktree"]["state"] == "merged"
            assert "line 7 via api" in (ws / "shared.txt").read_text()
            again = await http.post(f"/tasks/{tid}/discard")
            assert again.status_code == 409 and again.json()["error"]["code"] == "already_merged"
            assert (await http.get("/tasks/bg_nope/diff")).status_code == 404
        # retention takes the worktree of a pruned task with it
        other = await rt.launch("edit again", model="top", isolation="worktree")
        await rt.wait(other.id, 30)
        assert other.worktree and Path(other.worktree.path).exists()
        assert await rt.prune(finished_before=rt.clock() + 1) >= 1
        assert not Path(other.worktree.path).exists() and "bgagents/" not in git(ws, "branch")
