"""Runtime benchmarks, printed as figures and ratios against a baseline measured in the same run.

1. launch -> running latency with a free slot (p50, p99; target p50 <= 50 ms)
2. tool-call start -> event received by an SSE client of a real `bgagents serve` (p50, p99; target p99 <= 100 ms)
3. 200 tasks x 5 model requests of 200 ms at concurrency 200: wall time vs plain pydantic-ai under
   asyncio.gather in the same process (target ratio <= 1.5)
4. step checkpoints per second on SQLite (sequential, and under that concurrency)
5. conversation message -> delivered response with an instant main agent (p50, p99), against a plain
   task's launch -> completed with the same instant model in the same runtime

Run: python benchmarks/bench_runtime.py [--tasks 200] [--skip-sse]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bgagents import Runtime, Settings  # noqa: E402
from bgagents.core.profiles import GENERAL_PROMPT  # noqa: E402
from bgagents.settings import ConcurrencySettings, LimitSettings  # noqa: E402
from bgagents.tools import BUILTIN_TOOL_NAMES, Todo, ToolContext, build_toolset  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def returns(messages: list[ModelMessage]) -> int:
    return sum(isinstance(p, ToolReturnPart) for m in messages if isinstance(m, ModelRequest) for p in m.parts)


def stepping_model(requests: int, delay: float, tool: str) -> FunctionModel:
    """`requests - 1` tool calls then an answer, each request taking `delay` seconds."""

    async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(delay)
        done = returns(messages)
        if done < requests - 1:
            return ModelResponse(parts=[ToolCallPart(tool, {}, tool_call_id=f"c{done}")])
        return ModelResponse(parts=[TextPart("done")])

    return FunctionModel(fn, model_name="bench")


def settings_for(home: Path, concurrency: int) -> Settings:
    # the benchmark agents repeat one call on purpose: the loop breaker is set past their length
    return Settings(home=home, workspace=home / "ws", concurrency=ConcurrencySettings(default=concurrency),
                    limits=LimitSettings(consecutive_threshold=10_000))


def count_steps(home: Path) -> int:
    with sqlite3.connect(home / "bgagents.db") as conn:
        return int(conn.execute("SELECT count(*) FROM operation_outputs").fetchone()[0])


async def bench_latency(home: Path, n: int = 60) -> dict[str, float]:
    async with Runtime(settings_for(home, 5)) as rt:
        rt.register_model("bench", stepping_model(1, 0.0, "todoread"))
        latencies = []
        for _ in range(n):
            with rt.bus.subscribe(lambda e: e.type == "task.running") as queue:
                t0 = time.perf_counter()
                task = await rt.launch("x", model="bench")
                while True:
                    event = await queue.get()
                    if event.task_id == task.id:
                        break
                latencies.append(time.perf_counter() - t0)
            await rt.wait(task.id, timeout=30)
    return {"p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}


async def bench_throughput(home: Path, tasks: int, requests: int, delay: float) -> dict[str, float]:
    # the same agent (instructions, the general profile's tools, deps) run by plain pydantic-ai
    workspace = home / "baseline-ws"
    workspace.mkdir(parents=True)
    baseline_agent: Agent[ToolContext, str] = Agent(
        stepping_model(requests, delay, "todoread"), deps_type=ToolContext, instructions=GENERAL_PROMPT,
        toolsets=[build_toolset(BUILTIN_TOOL_NAMES)])

    class Todos:
        async def load_todos(self, task_id: str) -> list[Todo]:
            return []

        async def save_todos(self, task_id: str, todos: list[Todo]) -> None:
            pass

    def deps(i: int) -> ToolContext:
        return ToolContext(task_id=f"t{i}", workspace=workspace, outputs_dir=workspace, todos=Todos())

    t0 = time.perf_counter()
    await asyncio.gather(*(baseline_agent.run(f"task {i}", deps=deps(i)) for i in range(tasks)))
    baseline = time.perf_counter() - t0

    async with Runtime(settings_for(home, tasks)) as rt:
        rt.register_model("bench", stepping_model(requests, delay, "todoread"))
        steps_before = count_steps(home)
        t0 = time.perf_counter()
        launched = [await rt.launch(f"task {i}", model="bench") for i in range(tasks)]
        enqueue = time.perf_counter() - t0
        done = await asyncio.gather(*(rt.wait(t.id, timeout=600) for t in launched))
        wall = time.perf_counter() - t0
        assert all(t.status == "completed" for t in done), {t.status for t in done}
        steps = count_steps(home) - steps_before
    return {"baseline_s": baseline, "bgagents_s": wall, "ratio": wall / baseline, "enqueue_s": enqueue,
            "steps": steps, "steps_per_s": steps / wall}


async def bench_sequential_steps(home: Path, calls: int = 300) -> dict[str, float]:
    async with Runtime(settings_for(home, 5)) as rt:
        rt.register_model("bench", stepping_model(calls, 0.0, "todoread"))
        before = count_steps(home)
        t0 = time.perf_counter()
        task = await rt.launch("many steps", model="bench")
        done = await rt.wait(task.id, timeout=600)
        wall = time.perf_counter() - t0
        assert done.status == "completed", done.error
        steps = count_steps(home) - before
    return {"steps": steps, "steps_per_s": steps / wall, "ms_per_step": wall / steps * 1000}


def bench_sse(home: Path, calls: int = 40) -> dict[str, float]:
    """A real server process driven by the fake OpenAI server; the SSE client is this process."""
    from tests.fake_openai import FakeOpenAI, env_for

    port_probe = __import__("socket").socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    with FakeOpenAI() as fake:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}, **env_for(fake.base_url),
               "BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": "bench"}
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "server.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer bench"}
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            task = httpx.post(url + "/api/v1/tasks", headers=headers,
                              json={"prompt": "tag=sse", "model": f"openai-chat:steps-{calls}-delay-20"}).json()
            delays = []
            with httpx.stream("GET", url + "/api/v1/events", params={"task": task["id"]}, headers=headers,
                              timeout=60) as response:
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    received = time.time()
                    event = json.loads(line[5:])
                    if event["type"] == "task.tool_call":
                        delays.append(received - event["data"]["started"])
                    if event["type"] in ("task.completed", "task.failed"):
                        break
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"events": len(delays), "p50_ms": pct(delays, 50) * 1000, "p99_ms": pct(delays, 99) * 1000}


def instant_model() -> FunctionModel:
    """Answers at once: structured output when asked for it (the main agent), else text."""
    async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if info.output_tools:
            args = {"action": "send", "action_reason": "bench", "message": "ok"}
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])
        return ModelResponse(parts=[TextPart("ok")])

    return FunctionModel(fn, model_name="instant")


async def bench_conversation(home: Path, n: int = 30) -> dict[str, float]:
    settings = settings_for(home, 5).model_copy(update={"model": "instant"})
    async with Runtime(settings) as rt:
        rt.register_model("instant", instant_model())
        plain, conv = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            task = await rt.launch("x")
            await rt.wait(task.id, timeout=30)
            plain.append(time.perf_counter() - t0)
        since = 0
        for i in range(n):
            t0 = time.perf_counter()
            await rt.conversations.message("bench", f"message {i}")
            got = await rt.conversations.wait_for_response("bench", since, 30)
            conv.append(time.perf_counter() - t0)
            since = got[-1].seq
    return {"p50_ms": pct(conv, 50) * 1000, "p99_ms": pct(conv, 99) * 1000,
            "plain_p50_ms": pct(plain, 50) * 1000, "ratio": pct(conv, 50) / pct(plain, 50)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--skip-sse", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lat = await bench_latency(root / "latency")
        print(f"launch -> running (free slot): p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
              f"(target p50 <= 50 ms)")
        if not args.skip_sse:
            sse = await asyncio.to_thread(bench_sse, root / "sse")
            print(f"tool call start -> SSE client: p50 {sse['p50_ms']:.1f} ms, p99 {sse['p99_ms']:.1f} ms "
                  f"over {sse['events']} calls (target p99 <= 100 ms)")
        seq = await bench_sequential_steps(root / "steps")
        print(f"sequential step checkpoints: {seq['steps_per_s']:.0f}/s ({seq['ms_per_step']:.2f} ms per step, "
              f"{seq['steps']} steps incl. progress writes)")
        cv = await bench_conversation(root / "conversation")
        print(f"conversation message -> delivered response (instant model): p50 {cv['p50_ms']:.1f} ms, "
              f"p99 {cv['p99_ms']:.1f} ms; a plain task launch -> completed: p50 {cv['plain_p50_ms']:.1f} ms "
              f"(ratio {cv['ratio']:.2f})")
        tp = await bench_throughput(root / "throughput", args.tasks, args.requests, args.delay)
        print(f"{args.tasks} tasks x {args.requests} requests of {args.delay * 1000:.0f} ms at concurrency "
              f"{args.tasks}: plain pydantic-ai {tp['baseline_s']:.2f} s, bgagents {tp['bgagents_s']:.2f} s, "
              f"ratio {tp['ratio']:.2f} (target <= 1.5); enqueue {tp['enqueue_s']:.2f} s; "
              f"{tp['steps']} checkpoints at {tp['steps_per_s']:.0f}/s")


if __name__ == "__main__":
    asyncio.run(main())
