"""The Managed Agents API's figures, through the official `anthropic` SDK against a real `bgagents serve`
on the scripted model server (instant answers):

- latency from `events.send` to the first `agent.message` on the open stream (`openai-chat:echo`);
- events per second streamed to the SDK client during a turn of N instant tool calls (`steps-N`), and
  per second read back by `events.list`.

    python -m benchmarks.bench_managed [--rounds 20] [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic

from .bench_server import TOKEN, Fake, bgagents_server, pct


def _session(client: anthropic.Anthropic, model: str) -> str:
    agent = client.beta.agents.create(name="bench", model=model, tools=[{"type": "agent_toolset_20260401"}])
    env = client.beta.environments.create(name="bench")
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _message(text: str) -> list[Any]:
    return [{"type": "user.message", "content": [{"type": "text", "text": text}]}]


def first_message_latency(client: anthropic.Anthropic, rounds: int) -> list[float]:
    out = []
    session_id = _session(client, "openai-chat:echo")
    for n in range(rounds):
        with client.beta.sessions.events.stream(session_id) as stream:
            start = time.perf_counter()
            client.beta.sessions.events.send(session_id, events=_message(f"ping {n}"))
            for event in stream:
                if event.type == "agent.message" and len(out) == n:
                    out.append(time.perf_counter() - start)
                if event.type == "session.status_idle":
                    break
    return out


def streamed_rate(client: anthropic.Anthropic, steps: int) -> tuple[int, float, float]:
    session_id = _session(client, f"openai-chat:steps-{steps}")
    count = 0
    with client.beta.sessions.events.stream(session_id) as stream:
        start = time.perf_counter()
        client.beta.sessions.events.send(session_id, events=_message("go tag=bench"))
        for event in stream:
            count += 1
            if event.type == "session.status_idle":
                break
        streamed = time.perf_counter() - start
    start = time.perf_counter()
    listed = sum(1 for _ in client.beta.sessions.events.list(session_id, limit=1000))
    return count, streamed, listed / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        fake = Fake(home)
        try:
            with bgagents_server(home / "server", fake) as server:
                client = anthropic.Anthropic(base_url=server.url, api_key=TOKEN, max_retries=0, timeout=600)
                latencies = first_message_latency(client, args.rounds)
                count, seconds, listed_rate = streamed_rate(client, args.steps)
        finally:
            fake.close()
    print(f"send -> first agent.message: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p90 {pct(latencies, 90) * 1000:.0f} ms ({len(latencies)} turns, instant model)")
    print(f"streamed: {count} events in {seconds:.2f} s = {count / seconds:.0f} events/s "
          f"(a turn of {args.steps} instant tool calls, model and tools included)")
    print(f"events.list: {listed_rate:.0f} events/s read back")


if __name__ == "__main__":
    main()
