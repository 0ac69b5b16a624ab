"""bgagents as a server against LangGraph's Agent Server and two in-process baselines, in one run.

The workload: AGENTS agents x 5 model requests of 200 ms (4 `bash` calls, then an answer) from the
scripted model server (tests/fake_openai.py, its own process), all launched at once through each
server's HTTP API and each waited for. Systems:
- bgagents on SQLite, one process; on PostgreSQL with 1 and with 2 worker processes (`--postgres URL`
  or BGAGENTS_TEST_POSTGRES_URL; a fresh database each);
- LangGraph's Agent Server (`langgraph dev`, in memory, not durable; `pip install -e .[bench]`);
- the same agent run in this process by plain pydantic-ai and by LangGraph (asyncio.gather); pydantic-ai
  also streaming each request, as bgagents does (the ratio targets use the plain run).
The servers' CPU time per agent (server process and its workers, not their bash children) is printed too.
On the SQLite server also: launch -> running over HTTP, end -> seen by a waiting client, cancel ->
status and -> the model request closed, tool call -> SSE client, tasks completed per second with an
instant model, 1,000 tasks launched in one batch, RSS with 1,000 agents running.

Machines are shared and noisy: every figure is printed beside the baselines of the same run.
Run: python benchmarks/bench_server.py [--agents 200] [--only sqlite,langgraph] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKEN = "bench"
MODEL = "steps-4-delay-200"  # 4 bash calls and an answer, each request 200 ms
# bgagents runs the same agent as the baselines and LangGraph's server (bash only, no system prompt); the
# built-in `general` agent (every tool, its prompt) is measured beside it: each request carries its tools
BENCH_AGENT = """---
name: bench
description: "the benchmark's agent, as in the baselines (bash only, no system prompt)"
tools: [bash]
---
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout:g} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (worker processes), in MB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server and its worker processes so far; bash children are not counted."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            if p != pid and not Path(f"/proc/{p}/comm").read_text().startswith("python"):
                continue
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# -- the scripted model server -----------------------------------------------------------------------

class Fake:
    """tests/fake_openai.py in a process of its own, so it does not share a core with what it measures."""

    def __init__(self, home: Path) -> None:
        port_file = home / "fake.port"
        self.log = home / "fake.log"
        self.proc = subprocess.Popen([PYTHON, "-m", "tests.fake_openai", "--port-file", str(port_file)],
                                     cwd=ROOT, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{port_file.read_text().strip()}/v1"

    def reset(self) -> None:
        httpx.post(self.base_url.removesuffix("/v1") + "/_fake/reset")

    def stats(self) -> dict[str, int]:
        data: dict[str, int] = httpx.get(self.base_url.removesuffix("/v1") + "/_fake/stats").json()
        return data

    def records(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(self.base_url.removesuffix("/v1") + "/_fake/requests",
                                               timeout=30).json()
        return data

    def close(self) -> None:
        stop(self.proc, 5)


# -- bgagents servers ---------------------------------------------------------------------------------

@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    home: Path

    def client(self, **kw: Any) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        return httpx.AsyncClient(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=600, limits=limits, **kw)


@contextlib.contextmanager
def bgagents_server(home: Path, fake: Fake, workers: int = 1, database_url: str | None = None,
                    concurrency: int = 0) -> Iterator[Server]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "agents").mkdir(exist_ok=True)
    (home / "agents" / "bench.md").write_text(BENCH_AGENT)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": TOKEN, "OPENAI_BASE_URL": fake.base_url,
                "OPENAI_API_KEY": "bench", "BGAGENTS_CONCURRENCY__DEFAULT": str(concurrency),
                "BGAGENTS_LIMITS__CONSECUTIVE_THRESHOLD": "10000", "PYTHONPATH": str(ROOT)})
    if database_url:
        env["BGAGENTS_DATABASE_URL"] = database_url
    log = home / "server.log"
    proc = subprocess.Popen([PYTHON, "-m", "bgagents.cli.main", "serve", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, cwd=home)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, 60, log)
        if workers > 1:
            deadline = time.monotonic() + 60
            while log.read_text(errors="replace").count("running tasks") < workers - 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker processes did not start")
                time.sleep(0.1)
        yield Server(proc, f"http://127.0.0.1:{port}", home)
    finally:
        stop(proc)


async def wait_output(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """Waits for the task's end; a kept-alive connection that the server closed meanwhile is retried."""
    for attempt in range(5):
        try:
            r = await client.get(f"/tasks/{task_id}/output", params={"wait": "true", "timeout": 600})
            out: dict[str, Any] = r.json()
            return out
        except httpx.TransportError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


async def bgagents_workload(server: Server, agents: int, agent: str = "bench") -> tuple[float, float]:
    """Launch every agent at once over HTTP, each client waiting for its own; wall time and the server's CPU
    time, in seconds."""
    async with server.client() as client:
        async def one(i: int) -> None:
            r = await client.post("/tasks", json={"prompt": f"work tag=a{i}", "model": f"openai-chat:{MODEL}",
                                                  "agent": agent})
            r.raise_for_status()
            out = await wait_output(client, r.json()["id"])
            assert out["status"] == "completed", out

        t0, cpu0 = time.perf_counter(), cpu_seconds(server.proc.pid)
        await asyncio.gather(*(one(i) for i in range(agents)))
        return time.perf_counter() - t0, cpu_seconds(server.proc.pid) - cpu0


def fresh_postgres(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


# -- latencies on the SQLite server --------------------------------------------------------------------

async def sse_events(client: httpx.AsyncClient, sink: Callable[[dict[str, Any], float], None],
                     ready: asyncio.Event, **params: str) -> None:
    async with client.stream("GET", "/events", params=params, timeout=None) as response:
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                sink(json.loads(line[5:]), time.perf_counter())


async def latencies(server: Server, fake: Fake, n: int = 30) -> dict[str, float]:
    out: dict[str, float] = {}
    async with server.client() as client:
        running: dict[str, float] = {}
        ready = asyncio.Event()
        listener = asyncio.create_task(sse_events(
            client, lambda e, t: running.setdefault(e["task_id"], t) if e["type"] == "task.running" else None,
            ready))
        await ready.wait()
        launch, ends = [], []
        for _ in range(n):  # launch -> running over HTTP, a free slot
            t0 = time.perf_counter()
            task = (await client.post("/tasks", json={"prompt": "x", "model": "openai-chat:slow-100"})).json()
            while task["id"] not in running:
                await asyncio.sleep(0.001)
            launch.append(running[task["id"]] - t0)
            # end -> seen by a client waiting on the output
            result = (await client.get(f"/tasks/{task['id']}/output", params={"wait": "true"})).json()
            seen = time.time()
            finished = (await client.get(f"/tasks/{task['id']}")).json()["finished_at"]
            assert result["status"] == "completed", result
            ends.append(seen - finished)
        listener.cancel()
        out["launch_running_p50_ms"] = pct(launch, 50) * 1000
        out["end_seen_p50_ms"] = pct(ends, 50) * 1000

        cancels, closes = [], []
        fake.reset()
        for _ in range(n // 2):  # cancel -> status, and -> the model request closed at the model server
            task = (await client.post("/tasks", json={"prompt": "x", "model": "openai-chat:hang"})).json()
            while (await client.get(f"/tasks/{task['id']}")).json()["status"] != "running" or \
                    fake.stats()["in_flight"] < 1:
                await asyncio.sleep(0.005)
            t0, wall0 = time.perf_counter(), time.time()
            status = (await client.post(f"/tasks/{task['id']}/cancel")).json()["status"]
            cancels.append(time.perf_counter() - t0)
            assert status == "cancelled", status
            for _ in range(1000):
                closed = [r["closed"] for r in fake.records() if r["closed"]]
                if len(closed) > len(closes):
                    closes.append(closed[-1] - wall0)
                    break
                await asyncio.sleep(0.005)
        out["cancel_status_p50_ms"] = pct(cancels, 50) * 1000
        out["cancel_closed_p50_ms"] = pct(closes, 50) * 1000

        delays: list[float] = []  # tool call start -> SSE client
        task = (await client.post("/tasks", json={"prompt": "tag=sse", "model": "openai-chat:steps-30-delay-20"})
                ).json()
        done = asyncio.Event()

        def on_event(e: dict[str, Any], _: float) -> None:
            if e["type"] == "task.tool_call":
                delays.append(time.time() - e["data"]["started"])
            if e["type"] in ("task.completed", "task.failed"):
                done.set()

        ready = asyncio.Event()
        listener = asyncio.create_task(sse_events(client, on_event, ready, task=task["id"]))
        await asyncio.wait_for(done.wait(), 120)
        listener.cancel()
        out["tool_sse_p50_ms"] = pct(delays, 50) * 1000
        out["tool_sse_p99_ms"] = pct(delays, 99) * 1000
    return out


async def instant_throughput(server: Server, count: int) -> float:
    """Tasks completed per second with an instant model (echo), launched in batches of 1,000."""
    async with server.client() as client:
        t0 = time.perf_counter()
        ids: list[str] = []
        for start in range(0, count, 1000):
            batch = [{"prompt": f"x{i}", "model": "openai-chat:echo", "agent": "bench"}
                     for i in range(start, min(count, start + 1000))]
            r = await client.post("/tasks/batch", json={"tasks": batch})
            r.raise_for_status()
            ids += [t["id"] for t in r.json()]
        await asyncio.gather(*(wait_output(client, i) for i in ids))
        return count / (time.perf_counter() - t0)


async def thousand_running(server: Server) -> dict[str, float]:
    """1,000 tasks launched in one batch (time), then RSS once all of them are running."""
    async with server.client() as client:
        batch = [{"prompt": f"x{i}", "model": "openai-chat:slow-600000"} for i in range(1000)]
        t0 = time.perf_counter()
        r = await client.post("/tasks/batch", json={"tasks": batch})
        launch = time.perf_counter() - t0
        r.raise_for_status()
        deadline = time.monotonic() + 180
        running = 0
        while time.monotonic() < deadline:
            running = sum((await client.get("/stats")).json()["running"].values())
            if running >= 1000:
                break
            await asyncio.sleep(0.5)
        rss = rss_mb(server.proc.pid)
        await client.post("/tasks/cancel", json={"all": True})
    return {"launch_1000_s": launch, "running": running, "rss_mb": rss}


# -- LangGraph --------------------------------------------------------------------------------------

GRAPH = '''
import asyncio, os
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

WORKSPACE = os.environ["BENCH_WORKSPACE"]


@tool
async def bash(command: str) -> str:
    """Run a shell command in the workspace."""
    proc = await asyncio.create_subprocess_shell(command, cwd=WORKSPACE, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return out.decode() or "(no output)"


def make_graph(model: str, base_url: str):
    return create_react_agent(ChatOpenAI(model=model, base_url=base_url, api_key="bench", max_retries=0), [bash])


graph = make_graph(os.environ["BENCH_MODEL"], os.environ["OPENAI_BASE_URL"]) if "BENCH_MODEL" in os.environ \\
    else None
'''


def write_graph(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "ws").mkdir(exist_ok=True)
    (home / "bench_graph.py").write_text(textwrap.dedent(GRAPH))
    (home / "langgraph.json").write_text(json.dumps(
        {"dependencies": ["."], "graphs": {"agent": "./bench_graph.py:graph"}}))
    return home


@contextlib.contextmanager
def langgraph_server(home: Path, fake: Fake, jobs: int) -> Iterator[str]:
    write_graph(home)
    port = free_port()
    env = {**os.environ, "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench", "BENCH_MODEL": MODEL,
           "BENCH_WORKSPACE": str(home / "ws"), "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false",
           "LANGGRAPH_CLI_NO_ANALYTICS": "1", "N_JOBS_PER_WORKER": str(jobs)}
    log = home / "langgraph.log"
    langgraph = shutil.which("langgraph") or str(Path(PYTHON).parent / "langgraph")
    proc = subprocess.Popen([langgraph, "dev", "--port", str(port), "--no-browser", "--no-reload",
                             "--n-jobs-per-worker", str(jobs)], env=env, cwd=home, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ok", proc, 120, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def langgraph_workload(url: str, agents: int) -> float:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def one(i: int) -> None:
            thread = (await client.post("/threads", json={})).json()["thread_id"]
            r = await client.post(f"/threads/{thread}/runs/wait", json={
                "assistant_id": "agent", "input": {"messages": [{"role": "user", "content": f"work tag=l{i}"}]}})
            r.raise_for_status()
            last = r.json()["messages"][-1]["content"]
            assert last == "done after 4 steps", last

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(agents)))
        return time.perf_counter() - t0


async def langgraph_in_process(home: Path, fake: Fake, agents: int) -> float:
    write_graph(home)
    os.environ["BENCH_WORKSPACE"] = str(home / "ws")
    sys.path.insert(0, str(home))
    import bench_graph  # type: ignore[import-not-found]

    graph = bench_graph.make_graph(MODEL, fake.base_url)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(graph.ainvoke({"messages": [("user", f"work tag=g{i}")]})
                                     for i in range(agents)))
    wall = time.perf_counter() - t0
    assert all(r["messages"][-1].content == "done after 4 steps" for r in results)
    return wall


async def pydantic_ai_in_process(home: Path, fake: Fake, agents: int, streamed: bool = False) -> tuple[float, float]:
    """The baseline: the same agent run by plain pydantic-ai. `streamed` streams each request as bgagents does
    (for live progress and its inactivity watchdog), which costs pydantic-ai about a third more CPU."""
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    workspace = home / "ws"
    workspace.mkdir(parents=True, exist_ok=True)
    agent = Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=fake.base_url, api_key="bench")))

    @agent.tool_plain
    async def bash(command: str) -> str:
        """Run a shell command in the workspace."""
        proc = await asyncio.create_subprocess_shell(command, cwd=workspace, stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return out.decode() or "(no output)"

    async def drain(_: Any, events: AsyncIterator[Any]) -> None:
        async for _event in events:
            pass

    t0, cpu0 = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(agent.run(f"work tag=p{i}", event_stream_handler=drain if streamed else None)
                                     for i in range(agents)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert all(r.output == "done after 4 steps" for r in results)
    return wall, cpu


# -- profiling ------------------------------------------------------------------------------------

@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy samples the server while the block runs; the collapsed stacks go to `out`."""
    if out is None or not shutil.which("py-spy"):
        yield
        return
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                            "--gil", "--nonblocking", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=30)


BUCKETS = {  # what the server spends its time on, by where the sampled stack passes
    "DBOS step check + record (dbos/_sys_db, _core)": ("dbos/_sys_db", "dbos/_core.py"),
    "our store reads and writes (bgagents/core/store.py)": ("bgagents/core/store.py",),
    "SQL execution (sqlalchemy do_execute)": ("do_execute",),
    "waiting for the SQLite write turn (sqlite_gate)": ("Condition.wait (bgagents/core/sqlite_gate",),
    "model HTTP client (openai, httpx2)": ("openai/_base_client", "httpx2/", "httpcore"),
    "bash subprocesses": ("create_subprocess",),
    "agent loop (pydantic-ai graph)": ("pydantic_ai/_agent_graph.py",),
    "progress tracking (bgagents/core/progress.py)": ("bgagents/core/progress.py",),
    "HTTP API (uvicorn, starlette)": ("uvicorn/protocols", "starlette/routing"),
    "DBOS queue polling (dbos/_queue.py)": ("dbos/_queue.py",),
}


def profile_buckets(raw: Path) -> list[tuple[str, float]]:
    """Share of the server's samples in which the stack passes through each bucket (they overlap)."""
    counts = dict.fromkeys(BUCKETS, 0)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        for name, needles in BUCKETS.items():
            if any(n in stack for n in needles):
                counts[name] += k
    return [(name, c / total) for name, c in counts.items()] if total else []


# -- main -----------------------------------------------------------------------------------------

@dataclass
class Results:
    rows: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def timed(label: str, results: Results, fn: Callable[[], Awaitable[float | tuple[float, float]]],
                fake: Fake, agents: int) -> None:
    """Runs one contender; those that can tell their CPU time (wall, cpu) get CPU per agent reported too."""
    fake.reset()
    try:
        outcome = await fn()
    except Exception as exc:
        results.notes.append(f"{label}: skipped ({type(exc).__name__}: {str(exc)[:300]})")
        return
    wall, cpu = outcome if isinstance(outcome, tuple) else (outcome, None)
    results.rows[label] = wall
    results.rows[label + " in flight"] = fake.stats()["max_in_flight"]
    line = f"  {label}: {wall:.2f} s, at most {fake.stats()['max_in_flight']} model requests in flight"
    if cpu is not None:
        results.rows[label + " cpu"] = cpu / agents * 1000
        line += f", {cpu / agents * 1000:.0f} ms CPU per agent"
    print(line, flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--instant", type=int, default=1000, help="tasks for the instant-model throughput")
    parser.add_argument("--only", default="", help="comma-separated: sqlite,postgres,langgraph,baselines,extra")
    parser.add_argument("--postgres", default=os.environ.get("BGAGENTS_TEST_POSTGRES_URL"))
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the SQLite server here")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    def wanted(part: str) -> bool:
        return not only or part in only

    res = Results()
    n = args.agents
    root = Path(tempfile.mkdtemp(prefix="bgbench-"))
    if True:  # the homes (server logs) stay when the run fails
        fake = Fake(root)
        try:
            print(f"workload: {n} agents x 5 model requests of 200 ms, 4 bash calls each, launched at once",
                  flush=True)
            if wanted("baselines"):
                await timed("pydantic-ai in process", res,
                            lambda: pydantic_ai_in_process(root / "pai", fake, n), fake, n)
                await timed("pydantic-ai in process, streamed", res,
                            lambda: pydantic_ai_in_process(root / "pais", fake, n, streamed=True), fake, n)
                await timed("LangGraph in process", res,
                            lambda: langgraph_in_process(root / "lgi", fake, n), fake, n)
            if wanted("langgraph"):
                async def lg() -> float:
                    with langgraph_server(root / "lgs", fake, jobs=n) as url:
                        return await langgraph_workload(url, n)
                await timed("LangGraph server (langgraph dev, in memory)", res, lg, fake, n)
            if wanted("sqlite"):
                with bgagents_server(root / "sqlite", fake) as server:
                    async def sq() -> tuple[float, float]:
                        with profiled(server.proc.pid, args.profile and args.profile / "workload.txt"):
                            return await bgagents_workload(server, n)
                    await timed("bgagents SQLite, 1 process", res, sq, fake, n)
                    await timed("bgagents SQLite, 1 process, `general` agent (all tools)", res,
                                lambda: bgagents_workload(server, n, "general"), fake, n)
                    if wanted("extra"):
                        lat = await latencies(server, fake)
                        res.rows.update(lat)
                        with profiled(server.proc.pid, args.profile and args.profile / "instant.txt"):
                            res.rows["instant_tasks_per_s"] = await instant_throughput(server, args.instant)
                if wanted("extra"):
                    with bgagents_server(root / "sqlite-1000", fake) as server:
                        res.rows.update(await thousand_running(server))
            if wanted("postgres"):
                if not args.postgres:
                    res.notes.append("PostgreSQL: skipped (no --postgres URL nor BGAGENTS_TEST_POSTGRES_URL)")
                for workers in (1, 2):
                    if not args.postgres:
                        break
                    url = fresh_postgres(args.postgres, f"bgbench_{os.getpid()}_{workers}")

                    async def pg(workers: int = workers, url: str = url) -> tuple[float, float]:
                        with bgagents_server(root / f"pg{workers}", fake, workers=workers, database_url=url) as s:
                            return await bgagents_workload(s, n)
                    await timed(f"bgagents PostgreSQL, {workers} worker process(es)", res, pg, fake, n)
        finally:
            fake.close()
        report(res, n, args.profile)
        if res.notes:
            print(f"homes and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def report(res: Results, n: int, profile: Path | None) -> None:
    r = res.rows
    print("\n== results (one run; ratios against this run's baselines) ==")
    base = r.get("pydantic-ai in process")
    lgs = r.get("LangGraph server (langgraph dev, in memory)")
    for label in [k for k in r if k.endswith(("process", "process(es)", "in memory)", "(all tools)", "streamed"))]:
        extra = []
        if base:
            extra.append(f"{r[label] / base:.2f}x pydantic-ai in process")
        if lgs:
            extra.append(f"{r[label] / lgs:.2f}x LangGraph server")
        if label + " cpu" in r:
            extra.append(f"{r[label + ' cpu']:.0f} ms CPU per agent")
        print(f"{label:56s} {r[label]:7.2f} s  ({', '.join(extra)}; {r[label + ' in flight']:.0f} in flight)")
    sq = r.get("bgagents SQLite, 1 process")
    checks: list[tuple[str, bool | None]] = [
        ("bgagents SQLite faster than LangGraph's server", sq < lgs if sq and lgs else None),
        ("bgagents SQLite <= 1.5x pydantic-ai in process", sq <= 1.5 * base if sq and base else None),
        (f"all {n} model requests in flight together",
         r["bgagents SQLite, 1 process in flight"] >= n if sq else None),
    ]
    if "launch_running_p50_ms" in r:
        print(f"launch -> running over HTTP p50 {r['launch_running_p50_ms']:.1f} ms; end -> seen p50 "
              f"{r['end_seen_p50_ms']:.1f} ms; cancel -> status p50 {r['cancel_status_p50_ms']:.1f} ms, "
              f"-> request closed p50 {r['cancel_closed_p50_ms']:.1f} ms; tool call -> SSE client p50 "
              f"{r['tool_sse_p50_ms']:.1f} ms, p99 {r['tool_sse_p99_ms']:.1f} ms")
        print(f"instant model: {r['instant_tasks_per_s']:.0f} tasks completed per second")
        checks += [("end -> seen p50 <= 10 ms", r["end_seen_p50_ms"] <= 10),
                   ("cancel -> status p50 <= 10 ms", r["cancel_status_p50_ms"] <= 10),
                   ("launch -> running p50 <= 20 ms over HTTP", r["launch_running_p50_ms"] <= 20),
                   (">= 150 tasks/s with an instant model", r["instant_tasks_per_s"] >= 150)]
    if "launch_1000_s" in r:
        print(f"1,000 tasks in one batch: launched in {r['launch_1000_s']:.2f} s; {r['running']:.0f} running, "
              f"server RSS {r['rss_mb']:.0f} MB")
        checks.append(("1,000 tasks launched through the API in <= 2 s", r["launch_1000_s"] <= 2))
    print("\n== targets ==")
    for what, ok in checks:
        print(f"  [{'met' if ok else 'MISSED' if ok is False else 'n/a'}] {what}")
    for note in res.notes:
        print("note:", note)
    if profile:
        for raw in sorted(profile.glob("*.txt")):
            print(f"\n== py-spy {raw.name}: share of the server's samples (buckets overlap) ==")
            for name, share in profile_buckets(raw):
                print(f"  {share * 100:5.1f}%  {name}")


if __name__ == "__main__":
    asyncio.run(main())
