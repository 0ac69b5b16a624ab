"""Fault and crash figures: `kill -9` of a real `bgagents serve` mid-work, round after round, then model faults.

1. Crash rounds. A real `bgagents serve` on a temporary home, with tests/fake_openai.py (its own process, so
   its counters outlive the server) as the model. Each round launches `--tasks` tasks whose scripted model
   calls `bash` `--steps` times (each call appends a line to steps.log) and then answers; the server is
   killed with SIGKILL at a random moment and started again. At the end every task must complete, and the
   script counts what was lost (tasks, events, transcript lines) and what was repeated (model requests sent
   again, finished ones among them, and tool calls run again, from the fake's records and steps.log).
2. Model faults. Each fault the fake can play (429, 5xx, hang, a slow answer, malformed JSON, a cut stream,
   a dropped connection, 401, 400, context too long, unknown model) is given to a task, alone and with a
   fallback model; the table says how each ended.

Run: python benchmarks/crash_rounds.py [--rounds 20] [--tasks 10] [--steps 5] [--seed 1] [--skip-faults]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "crash-rounds-token"
FAULTS: list[tuple[str, str]] = [
    ("429 twice, then answers", "flaky-429-2"),
    ("429 always", "error-429"),
    ("500 always", "error-500"),
    ("503 overloaded", "error-503"),
    ("hang: no answer at all", "hang"),
    ("slow: answers after the stale timeout", "slow-8000"),
    ("malformed JSON body", "malformed"),
    ("cut stream (no finish), once", "cut-1-nofinish"),
    ("connection dropped mid-stream, once", "cut-1-drop"),
    ("non-JSON 200, once", "cut-1-nonjson"),
    ("401 bad key", "error-401"),
    ("400 bad request", "error-400"),
    ("400 context too long", "context-too-long"),
    ("404 unknown model", "no-such-model"),
]
console = Console(width=170)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Fake:
    """tests/fake_openai.py in its own process."""

    home: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> None:
        port_file = self.home / "fake.port"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_openai", "--port-file", str(port_file)],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.home / "fake.log", "wb"))
        wait_for(lambda: port_file.exists() and port_file.read_text().strip() != "", 30, "the fake model server")
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def records(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(self.url + "/_fake/requests", timeout=30).json()
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class Server:
    """A real `bgagents serve`, started again on the same home after each kill."""

    home: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        began = time.monotonic()
        self.starts += 1
        log = open(self.home / f"server-{self.starts:03}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(self.port)],
                                     env=self.env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"the server exited; see {log.name}"
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the server to start")
        return time.monotonic() - began

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def task_events(server: Server, task_id: str) -> list[str]:
    """The task's stored events, replayed over SSE up to its end."""
    types: list[str] = []
    with httpx.stream("GET", server.url + "/api/v1/events", params={"task": task_id}, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                types.append(json.loads(line[5:])["type"])
                if types[-1] in ("task.completed", "task.failed", "task.cancelled"):
                    break
    return types


def crash_rounds(server: Server, fake: Fake, rounds: int, tasks: int, steps: int, rng: random.Random) -> None:
    model = f"openai-chat:steps-{steps}-delay-100"
    launched: dict[str, str] = {}  # task id -> tag
    kills: list[float] = []
    restarts: list[float] = []
    console.print(f"[bold]Crash rounds[/]: {rounds} rounds of {tasks} tasks ({steps} bash calls, "
                  f"{steps + 1} model requests each), kill -9 at a random moment in each")
    for r in range(1, rounds + 1):
        with server.client() as client:
            for i in range(tasks):
                tag = f"r{r:02}t{i:02}"
                response = client.post("/tasks", json={"prompt": f"work tag={tag}", "name": tag, "model": model})
                response.raise_for_status()
                launched[response.json()["id"]] = tag
        pause = rng.uniform(0.1, 2.5)
        time.sleep(pause)
        server.kill9()
        kills.append(pause)
        restarts.append(server.start())
        console.print(f"  round {r:2}: killed {pause:.2f} s after the launches, back up in {restarts[-1]:.1f} s")

    with server.client() as client:
        def all_ended() -> bool:
            listed = client.get("/tasks", params={"limit": 10_000}).json()
            return sum(t["status"] in ("completed", "failed", "cancelled") for t in listed) >= len(launched)

        wait_for(all_ended, 60 + 5 * len(launched), "every task to end", every=1.0)
        listed = {t["id"]: t for t in client.get("/tasks", params={"limit": 10_000}).json()}
        transcripts = {tid: client.get(f"/tasks/{tid}/transcript", params={"limit": 1000}).json() for tid in launched}

    statuses = Counter(listed[tid]["status"] if tid in listed else "missing" for tid in launched)
    lost_tasks = sum(1 for tid in launched if tid not in listed)
    bad_transcripts = 0
    for tid in launched:
        roles = [e["role"] for e in transcripts[tid]]
        whole = (roles.count("user") == 1 and roles.count("tool_call") == steps and roles.count("tool_result") == steps
                 and roles[-1:] == ["assistant"])
        bad_transcripts += not whole
    missing_events = 0
    extra_tool_events = 0
    for tid in launched:
        types = task_events(server, tid)
        whole = (types[:1] == ["task.queued"] and types[-1:] == ["task.completed"]
                 and types.count("task.tool_call") >= steps)
        missing_events += not whole
        extra_tool_events += max(0, types.count("task.tool_call") - steps)

    records = [r for r in fake.records() if r["model"] == model.split(":", 1)[1]]
    by_signature = Counter(r["signature"] for r in records)
    finished = Counter(r["signature"] for r in records if r["completed"] and r["status"] == 200)
    expected_requests = len(launched) * (steps + 1)
    log_lines = (server.home / "workspace" / "steps.log").read_text().split()
    tags = set(launched.values())
    tool_lines = Counter(line for line in log_lines if line.split("-step-")[0] in tags)
    expected_tools = {f"{tag}-step-{k}" for tag in tags for k in range(1, steps + 1)}

    table = Table(title=f"Crash rounds: {rounds} x kill -9, {len(launched)} tasks")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("rounds (kill -9, restart)", f"{rounds}"),
        ("kill moment after the launches (s)", f"{min(kills):.2f} to {max(kills):.2f}"),
        ("restart to /healthz (s, mean / max)", f"{sum(restarts) / len(restarts):.1f} / {max(restarts):.1f}"),
        ("tasks launched", f"{len(launched)}"),
        ("tasks completed", f"{statuses['completed']}"),
        ("tasks failed / cancelled", f"{statuses['failed']} / {statuses['cancelled']}"),
        ("tasks lost", f"{lost_tasks}"),
        ("tasks with a transcript not whole", f"{bad_transcripts}"),
        ("tasks with events missing", f"{missing_events}"),
        ("model requests expected (no crash)", f"{expected_requests}"),
        ("model requests sent", f"{len(records)}"),
        ("  of them repeats of one already sent", f"{len(records) - len(by_signature)}"),
        ("  finished requests sent again", f"{sum(n - 1 for n in finished.values() if n > 1)}"),
        ("  most times one step was sent", f"{max(by_signature.values())}"),
        ("  steps never asked for (lost)", f"{max(0, expected_requests - len(by_signature))}"),
        ("tool calls expected", f"{len(expected_tools)}"),
        ("tool calls run (steps.log lines)", f"{sum(tool_lines.values())}"),
        ("  run again (repeats)", f"{sum(n - 1 for n in tool_lines.values() if n > 1)}"),
        ("  most times one call ran", f"{max(tool_lines.values())}"),
        ("  never run (lost)", f"{len(expected_tools - set(tool_lines))}"),
        ("tasks with a tool call run twice", f"{len({k.split('-step-')[0] for k, n in tool_lines.items() if n > 1})}"),
        ("task.tool_call events beyond one per call", f"{extra_tool_events}"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if lost_tasks or statuses["completed"] != len(launched) or bad_transcripts or missing_events:
        raise SystemExit("FAILED: a task or an event was lost, or a task did not complete")


def faults(server: Server, fake: Fake) -> None:
    console.print("[bold]Model faults[/]: each alone, and with fallback model openai-chat:echo")
    runs: dict[tuple[str, bool], str] = {}
    with server.client() as client:
        for label, name in FAULTS:
            for fallback in (False, True):
                body: dict[str, Any] = {"prompt": f"hello from {name}", "name": f"{name}-{fallback}",
                                        "model": f"openai-chat:{name}"}
                if fallback:
                    body["fallback_models"] = ["openai-chat:echo"]
                response = client.post("/tasks", json=body)
                response.raise_for_status()
                runs[(label, fallback)] = response.json()["id"]

        def all_ended() -> bool:
            return all(client.get(f"/tasks/{tid}").json()["status"] in ("completed", "failed", "cancelled")
                       for tid in runs.values())

        wait_for(all_ended, 300, "every fault task to end", every=1.0)
        tasks = {key: client.get(f"/tasks/{tid}").json() for key, tid in runs.items()}
    sent = Counter(r["model"] for r in fake.records())

    table = Table(title="Model faults (retries=2, stale_timeout=3 s)")
    for column in ("fault", "fake model", "alone: ended", "requests", "error", "with fallback: ended", "answer"):
        table.add_column(column)
    for label, name in FAULTS:
        alone, backed = tasks[(label, False)], tasks[(label, True)]
        ended = f"{alone['status']}" + (f" ({alone['end_reason']})" if alone["end_reason"] else "")
        error = " ".join((alone["error"] or "").split())[:60]
        answer = " ".join(((backed["result"] or {}).get("text") or backed["error"] or "").split())[:30]
        fell = f"{backed['status']}, {len(backed['attempts'])} attempt(s)"
        table.add_row(label, name, ended, str(sent[name]), error, fell, answer)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=10, help="tasks launched per round")
    parser.add_argument("--steps", type=int, default=5, help="bash calls per task")
    parser.add_argument("--seed", type=int, default=1, help="for the kill moments")
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs, database)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bgagents-crash-"))
    fake = Fake(home)
    fake.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": TOKEN, "PYTHONPATH": str(ROOT),
                "OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_API_KEY": "fake-key",
                "BGAGENTS_CONCURRENCY__DEFAULT": str(max(args.tasks, 10)),
                "BGAGENTS_LIMITS__STALE_TIMEOUT": "3", "BGAGENTS_LIMITS__RETRY_BACKOFF": "0.2"})
    server = Server(home, env)
    try:
        server.start()
        if args.rounds:
            crash_rounds(server, fake, args.rounds, args.tasks, args.steps, random.Random(args.seed))
        if not args.skip_faults:
            faults(server, fake)
    finally:
        server.stop()
        fake.stop()
        if args.keep:
            console.print(f"home kept: {home}")
        else:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
