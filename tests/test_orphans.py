"""No tool process outlives its reason to run: not the server's `kill -9`, not a cancel, not the command's end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bgagents import Runtime
from bgagents.settings import SandboxSettings
from bgagents.tools.processes import MARK, end_orphans, server_id

from .conftest import Script, ServerProcess, make_settings
from .fake_openai import FakeOpenAI, env_for
from .test_builtin_tools import call_tool, make_ctx
from .test_durability import wait_for
from .test_sandbox import needs_bwrap

MODES = [pytest.param("auto", marks=needs_bwrap), "off"]


def processes(text: str) -> list[list[str]]:
    """argv of every live process (zombies count as gone) whose command line contains `text`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if state != "Z" and any(text in w for w in words):
            found.append(words)
    return found


def new_mark() -> str:
    return f"{time.time_ns() % 10**12:012d}"


def tree(mark: str, seconds: str = "1000") -> str:
    """A child, a grandchild, one that leaves the process group (setsid), and one that also leaves its parent
    and drops the environment (so the mark), each sleeping."""
    return (f'bash -c "sleep {seconds}.{mark}; true" & setsid sleep {seconds}.{mark}1 & '
            f"(setsid env -i sleep {seconds}.{mark}2 > /dev/null 2>&1 &); sleep {seconds}.{mark}; wait")


def running_tree(mark: str) -> bool:
    sleeps = [p for p in processes(mark) if p[0].endswith("sleep")]
    return len(sleeps) == 4


@pytest.mark.parametrize("mode", MODES)
def test_kill_9_of_the_server_leaves_no_tool_process(server_factory: Callable[..., ServerProcess],
                                                    mode: str) -> None:
    mark = new_mark()
    command = ("n=$(( $(cat runs 2>/dev/null || echo 0) + 1 )); echo $n > runs; "
               f'if [ $n = 1 ]; then d=1000; else d=1; fi; bash -c "sleep $d.{mark}; true" & '
               f"setsid sleep $d.{mark}1 & (setsid env -i sleep $d.{mark}2 > /dev/null 2>&1 &); "
               f"sleep $d.{mark}; wait; echo finished run $n")
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url), BGAGENTS_SANDBOX__MODE=mode)
        server.start(timeout=90)  # a loaded machine can take long to import everything
        with server.client() as client:
            task = client.post("/tasks", json={"prompt": f"run: {command}", "model": "openai-chat:run"}).json()
            wait_for(lambda: running_tree(f"1000.{mark}"), 60, "the command and its children to run")
        server.kill9()
        wait_for(lambda: processes(mark) == [], 10, "the tool processes to die with the server")

        server.start(timeout=90)
        runs = server.home / "workspace" / "runs"
        with server.client() as client:
            wait_for(lambda: runs.read_text().strip() == "2", 60, "the interrupted call to run again")
            assert processes(f"1000.{mark}") == []  # the first copy is gone while the second runs
            wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] == "completed", 60, "the task")
            assert "finished run 2" in client.get(f"/tasks/{task['id']}").json()["result"]["text"]
    assert runs.read_text().strip() == "2"
    assert processes(mark) == []


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_ends_children_of_children(tmp_path: Path, mode: str) -> None:
    mark = new_mark()
    async with Runtime(make_settings(tmp_path, sandbox=SandboxSettings(mode=mode))) as rt:
        rt.register_model("m", Script(steps=[("bash", {"command": tree(mark), "timeout": 300})]).model())
        task = await rt.launch("x", model="m")
        deadline = time.monotonic() + 30
        while not running_tree(mark):
            assert time.monotonic() < deadline, "the command did not start"
            await asyncio.sleep(0.05)
        await rt.cancel(task.id)
        deadline = time.monotonic() + 5
        while processes(mark):
            assert time.monotonic() < deadline, processes(mark)
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
async def test_what_a_finished_command_left_running_is_ended(tmp_path: Path, mode: str) -> None:
    mark = new_mark()
    settings = make_settings(tmp_path, sandbox=SandboxSettings(mode=mode))
    async with Runtime(settings) as rt:
        ctx = make_ctx(tmp_path, sandbox=rt.services.sandbox)
        assert (ctx.sandbox is None) == (mode == "off")
        out = await call_tool(ctx, "bash", {"command": f"(setsid sleep 1000.{mark} > /dev/null 2>&1 &); "
                                                       f"(setsid env -i sleep 1000.{mark}2 > /dev/null 2>&1 &); "
                                                       f"sleep 1000.{mark}1 > /dev/null 2>&1 & echo started"})
    assert out.strip() == "started"
    assert processes(mark) == []


def test_a_restart_ends_only_the_processes_of_a_dead_server() -> None:
    mark = new_mark()
    dead, live = "999999999.1:run", f"{server_id()}:run"
    procs = [subprocess.Popen(["sleep", f"1000.{mark}{i}"], env={**os.environ, MARK: owner})
             for i, owner in enumerate((dead, live))]
    try:
        assert end_orphans() >= 1
        procs[0].wait(timeout=5)
        assert procs[1].poll() is None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
