"""A real `bgagents serve` process: SSE with Last-Event-ID, the CLI end to end, SIGTERM, the token file."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import ServerProcess, free_port
from .test_durability import wait_for


def stream_events(server: ServerProcess, task_id: str, *, last_event_id: int | None = None,
                  count: int | None = None) -> list[dict[str, Any]]:
    """Events of one task from the SSE endpoint, until `count` of them or the task's end."""
    headers = {"Authorization": f"Bearer {server.token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    out: list[dict[str, Any]] = []
    with httpx.stream("GET", server.url + "/api/v1/events", params={"task": task_id}, headers=headers,
                      timeout=20) as response:
        assert response.status_code == 200
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
                continue
            if "data" not in fields:
                fields = {}
                continue
            event = json.loads(fields["data"])
            assert str(event["seq"]) == fields.get("id") and event["type"] == fields.get("event")
            fields = {}
            out.append(event)
            if len(out) == count or event["type"] in ("task.completed", "task.failed", "task.cancelled"):
                break
    return out


def test_sse_reconnect_with_last_event_id_misses_nothing(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    server.start()
    with server.client() as client:
        task = client.post("/tasks", json={"prompt": "demo work", "model": "demo"}).json()
        first = stream_events(server, task["id"], count=4)  # disconnects mid-task
        rest = stream_events(server, task["id"], last_event_id=first[-1]["seq"])
        assert client.get(f"/tasks/{task['id']}").json()["status"] == "completed"
    whole = stream_events(server, task["id"])
    seqs = [e["seq"] for e in first + rest]
    assert seqs == [e["seq"] for e in whole]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)
    assert whole[0]["type"] == "task.queued" and whole[-1]["type"] == "task.completed"


def test_cli_end_to_end(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start()
    launched = server.cli("launch", "Write a short note", "--name", "note-writer", "--json")
    assert launched.returncode == 0, launched.stderr
    task = json.loads(launched.stdout)
    assert task["status"] == "queued" and task["name"] == "note-writer" and task["model"] == "demo"
    plain = server.cli("launch", "Another one")
    assert plain.returncode == 0 and plain.stdout.strip().startswith("bg_")
    out = server.cli("output", task["id"], "--wait", "--timeout", "60", "--json")
    assert json.loads(out.stdout)["status"] == "completed"
    listed = json.loads(server.cli("ls", "--all", "--json").stdout)
    assert {t["id"] for t in listed} >= {task["id"]}
    assert "note-writer" in server.cli("ls", "--all").stdout
    shown = server.cli("show", task["id"])
    assert shown.returncode == 0 and "completed" in shown.stdout
    assert json.loads(server.cli("show", task["id"], "--json").stdout)["id"] == task["id"]
    logs = server.cli("logs", task["id"])
    assert "Write a short note" in logs.stdout and "todowrite" in logs.stdout
    followed = server.cli("logs", task["id"], "-f", "--json")
    assert followed.returncode == 0 and followed.stdout.strip()
    resumed = json.loads(server.cli("resume", task["id"], "and once more", "--json").stdout)
    assert resumed["turn"] == 2
    forked = server.cli("fork", task["id"], "try again", "--at", "1", "--json")
    assert forked.returncode == 0, forked.stderr
    fork_id = json.loads(forked.stdout)["id"]
    sent = server.cli("send", fork_id, "hurry up")
    assert sent.returncode == 0 or "resume" in sent.stderr
    cancelled = server.cli("cancel", "--all", "--json")
    assert cancelled.returncode == 0 and isinstance(json.loads(cancelled.stdout), list)
    # bad input: one clear line, a non-zero exit, and JSON errors with --json
    missing = server.cli("show", "bg_00000000")
    assert missing.returncode == 1 and "no task" in missing.stderr and "Traceback" not in missing.stderr
    as_json = json.loads(server.cli("show", "bg_00000000", "--json").stdout)
    assert as_json["error"]["code"] == "not_found"
    bad_model = server.cli("launch", "x", "--model", "nope:nope")
    assert bad_model.returncode == 1 and "nope:nope" in bad_model.stderr
    bad_limit = server.cli("launch", "x", "--limit", "requests")
    assert bad_limit.returncode == 2 and "KEY=NUMBER" in bad_limit.stderr
    neither = server.cli("cancel")
    assert neither.returncode == 2


@pytest.mark.slow
def test_cli_without_a_server_says_so(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    env.update({"BGAGENTS_HOME": str(tmp_path), "BGAGENTS_URL": f"http://127.0.0.1:{free_port()}"})
    result = subprocess.run([sys.executable, "-m", "bgagents.cli.main", "ls"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert "no bgagents server answers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigterm_stops_at_a_step_boundary_and_resumes(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_DEMO_PAUSE="0.3")
    server.start()
    with server.client() as client:
        task = client.post("/tasks", json={"prompt": "long demo", "model": "demo"}).json()
        wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["progress"]["tool_calls"] >= 1, 30,
                 "the first tool call")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after draining
    server.start()
    with server.client() as client:
        wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] == "completed", 60, "resume")
        events = [e["type"] for e in stream_events(server, task["id"])]
    assert "task.interrupted" in events and events[-1] == "task.completed"


def test_token_file_is_created_private(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    del server.env["BGAGENTS_TOKEN"]
    server.start()
    token_file = server.home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    server.token = token_file.read_text().strip()
    with server.client() as client:
        assert client.get("/tasks").status_code == 200
    assert httpx.get(server.url + "/api/v1/tasks").status_code == 401
    assert server.token not in server.log_text()


def test_cli_approvals(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    (server.home / "config.toml").write_text(
        '[agents.careful]\ndescription = "asks before bash"\n'
        'permissions = { bash = { "echo *" = "allow", "*" = "ask" }, write = "deny" }\n'
    )
    server.start()
    task = json.loads(server.cli("launch", "Survey the workspace", "--agent", "careful", "--json").stdout)
    pending: list[dict[str, Any]] = []

    def some_pending() -> bool:
        pending[:] = json.loads(server.cli("approvals", "--json").stdout)
        return bool(pending)

    wait_for(some_pending, timeout=30, what="an approval request")
    assert pending[0]["task_id"] == task["id"] and pending[0]["tool"] == "bash"
    table = server.cli("approvals")
    assert pending[0]["id"] in table.stdout and "bash" in table.stdout
    approved = server.cli("approve", pending[0]["id"], "--reason", "looks fine")
    assert approved.returncode == 0 and "approved" in approved.stdout
    out = json.loads(server.cli("output", task["id"], "--wait", "--timeout", "60", "--json").stdout)
    assert out["status"] == "completed"
    decided = json.loads(server.cli("approvals", "--all", "--json").stdout)
    assert [a["status"] for a in decided] == ["approved"]
    logs = server.cli("logs", task["id"]).stdout
    assert "denied" in logs  # write is denied outright and the agent is told
    again = server.cli("deny", pending[0]["id"])
    assert again.returncode == 1 and "already" in again.stderr
    missing = server.cli("approve", "ap_nope")
    assert missing.returncode == 1 and "ap_nope" in missing.stderr and "Traceback" not in missing.stderr


def test_serve_stops_at_once_with_an_event_stream_open(server_factory: Callable[..., ServerProcess]) -> None:
    """A dashboard tab follows the event stream and a task waits for a person: a stop ends both at once, the
    stream's client is told (a last `server.stopping` event, then a clean end), and the log has no traceback."""
    server = server_factory(BGAGENTS_MODEL="demo", BGAGENTS_DEMO_PAUSE="0.3")
    (server.home / "config.toml").write_text('[agents.careful]\npermissions = { write = "ask", bash = "allow" }\n')
    server.start()
    with server.client() as client:
        task = client.post("/tasks", json={"prompt": "survey", "agent": "careful"}).json()
        wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] == "waiting", 60, "an approval")
        busy = client.post("/tasks", json={"prompt": "a longer survey"}).json()
        wait_for(lambda: client.get(f"/tasks/{busy['id']}").json()["progress"]["requests"] >= 1, 60, "a running task")
    opened = threading.Event()
    said: list[str] = []

    def follow() -> None:
        with httpx.stream("GET", server.url + "/api/v1/events", headers={"Authorization": f"Bearer {server.token}"},
                          timeout=60) as response:
            opened.set()
            said.extend(line for line in response.iter_lines() if line.startswith(("event:", "data:")))

    tab = threading.Thread(target=follow)
    tab.start()
    assert opened.wait(30)
    assert server.proc is not None
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(timeout=30)
    took = time.monotonic() - started
    tab.join(timeout=10)
    assert not tab.is_alive()  # the stream ended, cleanly (an error would have ended the thread without `said`)
    assert took < 2.0, f"the stop took {took:.1f} s"
    assert code == 130
    assert said[-2] == "event: server.stopping" and "stopping" in said[-1], said
    log = server.log_text()
    assert "Traceback" not in log and "ERROR" not in log and "WARNING" not in log, log  # DBOS's notes included
    assert "bgagents: stopping" in log
    for stopped in (task, busy):
        assert f"task {stopped['id']} ({stopped['name']}) stopped with the server; it goes on at the next start" in log


def test_serve_says_at_once_in_one_line_why_it_cannot_listen(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cases = {("--port", "99999"): "port 99999 is not a TCP port",
                 ("--host", "nope.invalid"): "cannot listen on host 'nope.invalid': it does not resolve",
                 ("--port", str(busy)): f"port {busy} is already in use on 127.0.0.1"}
        for args, said in cases.items():
            done = server.cli("serve", *args)
            assert done.returncode == 1, done
            assert done.stderr.startswith(f"error: {said}") and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (server.home / "bgagents.db").exists()  # said before anything started


def test_serve_says_when_it_starts_and_only_once_it_serves_that_it_does(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(server.port)],
                            env=server.env, cwd=server.home, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith(f"bgagents: starting the server on 127.0.0.1:{server.port}"), first
        for line in proc.stderr:
            if line.startswith("bgagents serving on"):
                assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200  # it does serve
                break
        else:
            raise AssertionError("no 'serving on' line")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_log_says_what_happens_to_each_task_and_nothing_else(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo", AI_AGENT="a-coding-agent")  # pydantic-ai's banner reaches pipes
    for quiet in ("PYTEST_VERSION", "CI"):  # which would keep pydantic-ai's banner away on their own
        server.env.pop(quiet, None)
    (server.home / "config.toml").write_text('[agents.careful]\npermissions = { write = "ask", bash = "allow" }\n')
    server.start()
    with server.client() as client:
        done = client.post("/tasks", json={"prompt": "note", "name": "fine"}).json()
        over = client.post("/tasks", json={"prompt": "note", "name": "over", "limits": {"requests": 1}}).json()
        asks = client.post("/tasks", json={"prompt": "note", "name": "asks", "agent": "careful"}).json()
        for task in (done, over):
            client.get(f"/tasks/{task['id']}/output", params={"wait": True, "timeout": 60})
        wait_for(lambda: client.get(f"/tasks/{asks['id']}").json()["status"] == "waiting", 60, "an approval")
        approval = client.get("/approvals").json()[0]["id"]
        client.post(f"/tasks/{asks['id']}/cancel")
    server.stop()
    log = server.log_text()
    lines = [line.split(" ", 2)[2] for line in log.splitlines() if "bgagents.tasks" in line]  # without the time
    fine, over_, asks_ = (f"task {t['id']} ({t['name']})" for t in (done, over, asks))
    assert f"INFO bgagents.tasks: {fine} started: turn 1, agent general, model demo" in lines
    assert any(line.startswith(f"INFO bgagents.tasks: {fine} completed: 7 model request(s), 6 tool call(s), ")
               for line in lines), lines
    assert any(line.startswith(f"WARNING bgagents.tasks: {over_} failed (budget): budget crossed")
               for line in lines), lines
    assert f"INFO bgagents.tasks: {asks_} waits for a person to allow write (bgagents approve {approval}, or deny)" \
        in lines
    assert f"INFO bgagents.tasks: {asks_} cancelled (user)" in lines
    for theirs in ("pydantic-ai v", "Logfire", "StreamableHTTP", "uvicorn.access", "Traceback"):
        assert theirs not in log, log

    server.env["BGAGENTS_SERVER__ACCESS_LOG"] = "true"  # the setting for a line per request
    server.start()
    server.stop()
    assert '"GET /healthz HTTP/1.1" 200' in server.log_text()
