"""Process identity and scale-out (SPEC 8): one process per SQLite home; several workers on PostgreSQL
share the limits, and the work of one killed with `kill -9` is taken over from its last finished step."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import POSTGRES_URL, ServerProcess, fresh_postgres_database, stop_processes
from .fake_openai import FakeOpenAI, env_for
from .test_durability import tasks, wait_for


def bash_lines(home: Path) -> list[str]:
    log = home / "workspace" / "steps.log"
    return log.read_text().split() if log.exists() else []


def test_a_second_serve_on_a_held_home_is_refused(server_factory: Callable[..., ServerProcess]) -> None:
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url))
        server.start()
        with server.client() as client:
            r = client.post("/tasks", json={"prompt": "work tag=solo", "model": "openai-chat:steps-3-delay-300"})
            assert r.status_code == 201, r.text
            task_id = r.json()["id"]
            wait_for(lambda: client.get(f"/tasks/{task_id}").json()["progress"]["tool_calls"] >= 1, 30,
                     "the task mid-way")

            second = subprocess.run(
                [sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(server.port + 1)],
                env=server.env, capture_output=True, text=True, timeout=60, cwd=server.home)
            assert second.returncode == 1
            assert "already running the tasks of" in second.stderr and "bgagents pid" in second.stderr
            assert "PostgreSQL" in second.stderr and "Traceback" not in second.stderr

            wait_for(lambda: client.get(f"/tasks/{task_id}").json()["status"] == "completed", 30, "the task")
        # nothing ran twice: 3 tool calls and 4 model requests, each once
        assert fake.count() == 4 and fake.completed_twice() == []
        assert sorted(bash_lines(server.home)) == [f"solo-step-{k}" for k in (1, 2, 3)]


def test_workers_are_refused_on_sqlite(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    done = server.cli("serve", "--workers", "2", "--port", str(server.port))
    assert done.returncode == 1
    assert "--workers needs PostgreSQL" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def postgres_env(tmp_path: Path) -> dict[str, str]:
    if not POSTGRES_URL:
        pytest.skip("BGAGENTS_TEST_POSTGRES_URL is not set")
    return {"BGAGENTS_DATABASE_URL": fresh_postgres_database(f"bgw_{tmp_path.name[-20:]}".lower())}


@pytest.fixture
def workers() -> Iterator[Callable[[ServerProcess], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(server: ServerProcess) -> subprocess.Popen[bytes]:
        log = open(server.home / f"worker-{len(started)}.log", "wb")  # the process owns it
        proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "worker"], env=server.env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=server.home)
        started.append(proc)
        return proc

    yield start
    stop_processes(started)


def executors_of(database_url: str) -> dict[str, str]:
    """Workflow id -> executor id of every workflow DBOS runs right now."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT workflow_uuid, executor_id FROM dbos.workflow_status "
                            "WHERE status = 'PENDING' AND name = 'bgagents.turn'").fetchall()
    return {r[0]: r[1] for r in rows}


def turns_by_executor(database_url: str) -> dict[str, list[str]]:
    """Executor id -> 'workflow status' of every turn, ended or not."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT executor_id, workflow_uuid, status FROM dbos.workflow_status "
                            "WHERE name = 'bgagents.turn' ORDER BY created_at").fetchall()
    found: dict[str, list[str]] = {}
    for executor, workflow, status in rows:
        found.setdefault(str(executor), []).append(f"{workflow} {status}")
    return found


def worker_id(proc: subprocess.Popen[bytes], home: Path, index: int) -> str:
    text = ""
    deadline = time.monotonic() + 60
    while "running tasks" not in text:
        assert proc.poll() is None and time.monotonic() < deadline, text
        time.sleep(0.05)
        text = (home / f"worker-{index}.log").read_text(errors="replace")
    return text.split("bgagents worker ", 1)[1].split()[0]


def test_three_workers_on_postgres_share_limits_and_take_over_a_killed_one(
        server_factory: Callable[..., ServerProcess], postgres_env: dict[str, str],
        workers: Callable[[ServerProcess], subprocess.Popen[bytes]]) -> None:
    # 16 tasks of ~1.6 s, 3 at a time: with 8, one full CI run saw no worker mid-way through a task within
    # 60 s (the processes poll the queue independently); on failure the message says which process ran what
    limit, count = 3, 16
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url), **postgres_env,
                                BGAGENTS_CONCURRENCY__DEFAULT=str(limit))
        server.start()
        procs = [workers(server), workers(server)]
        ids = [worker_id(p, server.home, i) for i, p in enumerate(procs)]
        names = [f"t{k}" for k in range(count)]
        with server.client() as client:
            for name in names:
                r = client.post("/tasks", json={"prompt": f"work tag={name}", "name": name,
                                                "model": "openai-chat:steps-4-delay-400"})
                assert r.status_code == 201, r.text

            # a worker process runs a task that is mid-way: kill it then
            def victim() -> str | None:
                running = {t["id"]: t for t in tasks(client).values()
                           if t["status"] == "running" and t["progress"]["tool_calls"] >= 1}
                for workflow, executor in executors_of(postgres_env["BGAGENTS_DATABASE_URL"]).items():
                    if executor in ids and workflow.split(".")[0] in running:
                        return executor
                return None

            try:
                wait_for(lambda: victim() is not None, 60, "a worker process mid-way through a task")
            except AssertionError as exc:  # which process ran what, for the next reader
                raise AssertionError(f"{exc}; workers {ids}; turns ran by "
                                     f"{turns_by_executor(postgres_env['BGAGENTS_DATABASE_URL'])}") from None
            dead = victim()
            assert dead is not None
            held = [w.split(".")[0] for w, e in executors_of(postgres_env["BGAGENTS_DATABASE_URL"]).items()
                    if e == dead]
            proc = procs[ids.index(dead)]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            killed_at = time.monotonic()

            # within 10 s each of its tasks runs again in a live process (or has finished there)
            def taken_over() -> bool:
                running = executors_of(postgres_env["BGAGENTS_DATABASE_URL"])
                return all(t["status"] == "completed" or running.get(t["id"] + ".1") not in (None, dead)
                           for t in tasks(client).values() if t["id"] in held)
            wait_for(taken_over, 10, "the killed worker's tasks taken over")
            assert time.monotonic() - killed_at <= 10.5
            wait_for(lambda: all(t["status"] == "completed" for t in tasks(client).values()), 90,
                     "every task to complete")
            for task in tasks(client).values():
                assert task["result"]["text"] == "done after 4 steps"

    assert 1 <= fake.max_in_flight <= limit, fake.max_in_flight  # the limit held across three processes
    # no finished step repeated: only a request or tool call in flight at the kill may run again
    assert len(fake.completed_twice()) <= len(held), fake.completed_twice()
    lines = bash_lines(server.home)
    for name in names:
        mine = [line for line in lines if line.startswith(name + "-")]
        assert sorted(set(mine)) == [f"{name}-step-{k}" for k in range(1, 5)], mine
        assert len(mine) - len(set(mine)) <= 1, mine
    assert sum(len([x for x in lines if x.startswith(n + "-")]) for n in names) <= 4 * count + len(held)
    server.stop()
    assert "Traceback" not in server.log_text()



def live_children(pid: int) -> list[int]:
    """Pids of the live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_serve_with_workers_ends_its_workers_and_a_new_serve_takes_over(
        server_factory: Callable[..., ServerProcess], postgres_env: dict[str, str]) -> None:
    count = 8  # 2 at a time: as they end, the worker gets some
    database = postgres_env["BGAGENTS_DATABASE_URL"]
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url), **postgres_env, BGAGENTS_CONCURRENCY__DEFAULT="2")
        server.start("--workers", "2")
        assert server.proc is not None
        wait_for(lambda: "running tasks" in server.log_text(), 60, "the worker process to start")
        worker = server.log_text().split("bgagents worker ", 1)[1].split()[0]
        children = live_children(server.proc.pid)
        assert len(children) == 1, children
        names = [f"t{k}" for k in range(count)]
        with server.client() as client:
            for name in names:
                r = client.post("/tasks", json={"prompt": f"work tag={name}", "name": name,
                                                "model": "openai-chat:steps-4-delay-400"})
                assert r.status_code == 201, r.text

            def worker_mid_way() -> bool:
                running = {t["id"] for t in tasks(client).values()
                           if t["status"] == "running" and t["progress"]["tool_calls"] >= 1}
                return any(w.split(".")[0] in running for w, e in executors_of(database).items() if e == worker)
            wait_for(worker_mid_way, 60, "the worker process mid-way through a task")
            held = [w for w, e in executors_of(database).items() if e != worker]  # the parent's own
            server.kill9()

        # the worker notices its parent is gone and stops (at a step boundary), instead of running on
        try:
            wait_for(lambda: not any(alive(pid) for pid in children), 20, "the orphaned worker to end")
        finally:
            for pid in children:  # a failing run leaves no orphan behind
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)

        server.start()  # a new serve takes over the work of both, from their last finished step
        with server.client() as client:
            wait_for(lambda: all(t["status"] == "completed" for t in tasks(client).values()), 90,
                     "every task to complete")
            for task in tasks(client).values():
                assert task["result"]["text"] == "done after 4 steps"

    # no finished step repeated: only a request or tool call in flight in the killed parent may run again
    assert len(fake.completed_twice()) <= len(held), fake.completed_twice()
    lines = bash_lines(server.home)
    for name in names:
        mine = [line for line in lines if line.startswith(name + "-")]
        assert sorted(set(mine)) == [f"{name}-step-{k}" for k in range(1, 5)], mine
        assert len(mine) - len(set(mine)) <= 1, mine
    server.stop()
    assert "Traceback" not in server.log_text()


FAST_PROCESSES = {"BGAGENTS_PROCESSES__LOCK_CHECK_INTERVAL": "0.2", "BGAGENTS_PROCESSES__TAKEOVER_INTERVAL": "0.5",
                  "BGAGENTS_PROCESSES__TAKEOVER_GRACE": "3"}
LOCK_KEY = "hashtextextended('bgagents-executor:' || %s, 0)"


def lock_backend(database_url: str, executor: str) -> int:
    """The PostgreSQL backend holding `executor`'s lock (its lock connection)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND "
                           f"((classid::bigint << 32) | objid::bigint) = {LOCK_KEY}", (executor,)).fetchone()
    assert row is not None, f"no lock held for {executor}"
    return int(row[0])


def terminate(database_url: str, pid: int) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)


def start_steps_tasks(client: httpx.Client, names: list[str], steps: int) -> None:
    for name in names:
        r = client.post("/tasks", json={"prompt": f"work tag={name}", "name": name,
                                        "model": f"openai-chat:steps-{steps}-delay-400"})
        assert r.status_code == 201, r.text


def mid_way_on(client: httpx.Client, database_url: str, executor: str, at_most: int = 3) -> list[str]:
    """Ids of tasks `executor` runs that are past their first tool call and have done at most `at_most`."""
    running = {t["id"] for t in tasks(client).values()
               if t["status"] == "running" and 1 <= t["progress"]["tool_calls"] <= at_most}
    return [w.split(".")[0] for w, e in executors_of(database_url).items()
            if e == executor and w.split(".")[0] in running]


def assert_each_step_once(fake: FakeOpenAI, home: Path, names: list[str], steps: int, in_flight: int = 0) -> None:
    """Every step of every task ran, each once; `in_flight`: steps a stopped run may have left unrecorded."""
    assert len(fake.completed_twice()) <= in_flight, fake.completed_twice()
    lines = bash_lines(home)
    repeats = 0
    for name in names:
        mine = [line for line in lines if line.startswith(name + "-")]
        assert sorted(set(mine)) == [f"{name}-step-{k}" for k in range(1, steps + 1)], mine
        repeats += len(mine) - len(set(mine))
    assert repeats <= in_flight, lines


@contextlib.contextmanager
def worker_mid_way(server_factory: Callable[..., ServerProcess], postgres_env: dict[str, str],
                   workers: Callable[[ServerProcess], subprocess.Popen[bytes]], fake: FakeOpenAI, names: list[str],
                   steps: int) -> Iterator[tuple[ServerProcess, httpx.Client, str]]:
    """A server and one worker on PostgreSQL running `names` 2 at a time (as they end, the worker gets some):
    the server, its client and the worker's executor id, once the worker is mid-way through a task."""
    server = server_factory(**env_for(fake.base_url), **postgres_env, **FAST_PROCESSES,
                            BGAGENTS_CONCURRENCY__DEFAULT="2")
    server.start()
    worker = worker_id(workers(server), server.home, 0)
    with server.client() as client:
        start_steps_tasks(client, names, steps)
        wait_for(lambda: bool(mid_way_on(client, postgres_env["BGAGENTS_DATABASE_URL"], worker)), 60,
                 "the worker mid-way through a task")
        yield server, client, worker


def test_a_worker_whose_lock_connection_drops_takes_its_lock_again_before_anyone_takes_over(
        server_factory: Callable[..., ServerProcess], postgres_env: dict[str, str],
        workers: Callable[[ServerProcess], subprocess.Popen[bytes]]) -> None:
    database = postgres_env["BGAGENTS_DATABASE_URL"]
    names, steps = [f"t{k}" for k in range(8)], 6
    with FakeOpenAI() as fake:
        with worker_mid_way(server_factory, postgres_env, workers, fake, names, steps) as (server, client, worker):
            terminate(database, lock_backend(database, worker))

            wait_for(lambda: all(t["status"] == "completed" for t in tasks(client).values()), 90,
                     "every task to complete")
            for task in tasks(client).values():
                assert task["result"]["text"] == f"done after {steps} steps"
        log = (server.home / "worker-0.log").read_text()

    # nobody took its work for a dead process's: no workflow driven twice, every step once
    assert_each_step_once(fake, server.home, names, steps)
    assert "took over" not in server.log_text() + log
    assert f"the lock connection of executor {worker} dropped; it holds its lock again" in log
    lock_backend(database, worker)  # held, on its new connection
    server.stop()
    assert "Traceback" not in server.log_text() + log


def test_a_worker_whose_lock_another_process_holds_stops_its_turns_and_resumes_them_when_it_is_free(
        server_factory: Callable[..., ServerProcess], postgres_env: dict[str, str],
        workers: Callable[[ServerProcess], subprocess.Popen[bytes]]) -> None:
    import psycopg

    database = postgres_env["BGAGENTS_DATABASE_URL"]
    names, steps = [f"t{k}" for k in range(8)], 8
    with FakeOpenAI() as fake, psycopg.connect(database, autocommit=True) as other:
        with worker_mid_way(server_factory, postgres_env, workers, fake, names, steps) as (server, client, worker):
            log_path = server.home / "worker-0.log"
            held = mid_way_on(client, database, worker)
            backend = lock_backend(database, worker)

            # another process waits for the worker's lock, and gets it the moment its connection drops
            waiter = threading.Thread(target=lambda: other.execute(f"SELECT pg_advisory_lock({LOCK_KEY})",
                                                                   (worker,)))
            waiter.start()

            def waiting() -> bool:
                with psycopg.connect(database) as conn:
                    row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                       "AND pid = %s", (other.info.backend_pid,)).fetchone()
                return row is not None and row[0] == 1
            wait_for(waiting, 10, "the other process waiting for the worker's lock")
            terminate(database, backend)
            waiter.join(timeout=10)
            assert not waiter.is_alive()

            # the worker stops its turns, without cancelling them: nobody runs them while the lock is held
            def done_so_far() -> dict[str, tuple[str, int, int, int]]:
                lines = bash_lines(server.home)
                return {t["id"]: (t["status"], t["progress"]["requests"], t["progress"]["tool_calls"],
                                  len([x for x in lines if x.startswith(t["name"] + "-")]))
                        for t in tasks(client).values() if t["id"] in held}

            def still() -> bool:  # no step of theirs runs anywhere for a while
                before = done_so_far()
                time.sleep(1.5)
                return done_so_far() == before
            wait_for(still, 30, "the worker's turns to stop")
            pending = executors_of(database)
            for task_id in held:  # stopped, not cancelled nor ended: still the worker's, to resume
                assert client.get(f"/tasks/{task_id}").json()["status"] == "running"
                assert pending[task_id + ".1"] == worker
            assert "cannot take it again" in log_path.read_text()

            other.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", (worker,))
            wait_for(lambda: "it holds its lock again" in log_path.read_text(), 30, "the worker to take its lock")
            wait_for(lambda: all(t["status"] == "completed" for t in tasks(client).values()), 90,
                     "every task to complete")
            for task in tasks(client).values():
                assert task["result"]["text"] == f"done after {steps} steps"

    # each stopped turn resumed from its last finished step: only a step in flight when it stopped may repeat
    assert_each_step_once(fake, server.home, names, steps, in_flight=len(held))
    server.stop()
    assert "Traceback" not in server.log_text() + log_path.read_text()
