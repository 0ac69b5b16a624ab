"""Processes started together all come up (issue 19 item 9): `serve` and two `bgagents worker` started at the
same moment on a fresh PostgreSQL database, as a deployment's replicas start, each create and migrate the
schema (ours and DBOS's) in turn, and all of them serve."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import POSTGRES_URL, ServerProcess, fresh_postgres_database, stop_processes
from .test_durability import wait_for

TRIALS = 3
# each process imports everything, says so, then waits for `go`: all three reach the schema together
AT_ONCE = ("import os, sys, time\nimport bgagents.cli.main as cli\n"
           "open(sys.argv[1] + '.armed', 'w').close()\n"
           "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
           "sys.argv = ['bgagents', *sys.argv[3:]]\ncli.main()\n")


def _start_together(server: ServerProcess, trial: int) -> list[subprocess.Popen[bytes]]:
    go = server.home / f"go-{trial}"
    procs = []
    for i, args in enumerate((["serve", "--port", str(server.port)], ["worker"], ["worker"])):
        name = server.home / f"p{trial}-{i}"
        log = open(f"{name}.log", "wb")  # the process owns it
        procs.append(subprocess.Popen([sys.executable, "-c", AT_ONCE, str(name), str(go), *args], env=server.env,
                                      stdout=log, stderr=subprocess.STDOUT, cwd=server.home))
    wait_for(lambda: all(Path(f"{server.home}/p{trial}-{i}.armed").exists() or procs[i].poll() is not None
                         for i in range(3)), 120, "the three processes to import")
    go.touch()
    return procs


def _up(server: ServerProcess, trial: int, procs: list[subprocess.Popen[bytes]]) -> bool:
    logs = [Path(f"{server.home}/p{trial}-{i}.log").read_text(errors="replace") for i in range(3)]
    dead = [(i, p.returncode, logs[i][-3000:]) for i, p in enumerate(procs) if p.poll() is not None]
    assert not dead, f"trial {trial}: a process exited instead of coming up: {dead}"
    try:
        serving = httpx.get(server.url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        serving = False
    return serving and all("running tasks" in log for log in logs[1:])


def _trial(server_factory: Callable[..., ServerProcess], trial: int, run_tasks: bool) -> None:
    server = server_factory(BGAGENTS_DATABASE_URL=fresh_postgres_database(f"bg_together_{trial}"),
                            BGAGENTS_MODEL="demo")
    procs = _start_together(server, trial)
    try:
        wait_for(lambda: _up(server, trial, procs), 120, f"trial {trial}: serve and both workers up")
        if run_tasks:  # and they serve: tasks run to the end
            with server.client() as client:
                ids = [client.post("/tasks", json={"prompt": f"look around {k}"}).json()["id"] for k in range(4)]
                wait_for(lambda: all(client.get(f"/tasks/{i}").json()["status"] == "completed" for i in ids),
                         120, "the tasks to complete")
        assert _up(server, trial, procs)
    finally:
        stop_processes(procs)


@pytest.mark.timeout(600)  # three rounds of three processes starting, on a loaded machine
def test_serve_and_two_workers_started_at_once_on_a_fresh_database_all_come_up(
        server_factory: Callable[..., ServerProcess]) -> None:
    if not POSTGRES_URL:
        pytest.skip("BGAGENTS_TEST_POSTGRES_URL is not set")
    for trial in range(TRIALS):
        _trial(server_factory, trial, run_tasks=trial == TRIALS - 1)
