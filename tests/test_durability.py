"""`kill -9` of a real `bgagents serve` mid-work: after a restart every task finishes, no step repeated."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from .conftest import ServerProcess
from .fake_openai import FakeOpenAI, env_for

MODEL = "openai-chat:steps-5-delay-150"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def tasks(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in client.get("/tasks").json()}


def test_kill_9_then_restart_resumes_every_task(server_factory: Callable[..., ServerProcess]) -> None:
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url), BGAGENTS_CONCURRENCY__DEFAULT="2")
        server.start()
        with server.client() as client:
            names = ["alpha", "bravo", "charlie", "delta"]
            for name in names:
                r = client.post("/tasks", json={"prompt": f"work tag={name}", "name": name, "model": MODEL})
                assert r.status_code == 201, r.text

            def mid_way() -> bool:
                running = [t for t in tasks(client).values() if t["status"] == "running"]
                return len(running) == 2 and all(t["progress"]["tool_calls"] >= 2 for t in running)

            wait_for(mid_way, 30, "two tasks mid-way")
            before = tasks(client)
            assert sorted(t["status"] for t in before.values()) == ["queued", "queued", "running", "running"]
            events_before = client.get("/tasks").json()
        server.kill9()
        killed_at = fake.count()

        server.start()
        with server.client() as client:
            wait_for(lambda: all(t["status"] == "completed" for t in tasks(client).values()), 60,
                     "every task to complete after the restart")
            after = tasks(client)
            for name in names:
                task = after[name]
                assert task["result"]["text"] == "done after 5 steps"
                transcript = client.get(f"/tasks/{task['id']}/transcript", params={"limit": 1000}).json()
                roles = [e["role"] for e in transcript]
                assert roles.count("user") == 1 and roles.count("tool_call") == 5
                assert roles.count("tool_result") == 5 and roles[-1] == "assistant"
                assert [e["index"] for e in transcript] == sorted(e["index"] for e in transcript)
            # queued tasks kept their order: charlie was launched before delta
            started = {n: after[n]["started_at"] for n in ("charlie", "delta")}
            assert started["charlie"] <= started["delta"]
            # events are whole: every task's stream has its queued, running and completed events in order
            for name in names:
                seen = [e["type"] for e in _events(server, after[name]["id"])]
                assert seen[0] == "task.queued" and seen[-1] == "task.completed"
                assert seen.count("task.tool_call") >= 5
        assert len(events_before) == 4

    # no finished model request was sent again; only a request in flight at the kill may repeat (<= 1 per task)
    repeated = fake.completed_twice()
    assert len(repeated) <= 2, repeated
    assert fake.count() <= 4 * 6 + 2 and killed_at < 24
    # no finished tool call ran again: each task's bash side effects appear once (the in-flight one may repeat)
    log = (server.home / "workspace" / "steps.log").read_text().split()
    for name in names:
        lines = [line for line in log if line.startswith(name + "-")]
        assert sorted(set(lines)) == [f"{name}-step-{k}" for k in range(1, 6)]
        assert len(lines) - len(set(lines)) <= 1, lines


def _events(server: ServerProcess, task_id: str) -> list[dict[str, Any]]:
    import json

    out: list[dict[str, Any]] = []
    with httpx.stream("GET", server.url + "/api/v1/events", params={"task": task_id},
                      headers={"Authorization": f"Bearer {server.token}"}, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                out.append(event)
                if event["type"] == "task.completed":
                    break
    return out


def test_kill_9_in_the_middle_of_a_conversation(server_factory: Callable[..., ServerProcess]) -> None:
    """Events queued behind a running turn and a background agent mid-way survive kill -9, in order."""
    server = server_factory(BGAGENTS_MODEL="demo", BGAGENTS_DEMO_PAUSE="0.3")
    server.start()
    texts = ["research the history of tea", "hello", "plan a garden"]
    with server.client() as client:
        for text in texts:
            assert client.post("/conversations/default/messages", json={"text": text}).status_code == 202
        wait_for(lambda: len(client.get("/conversations/default/responses").json()) >= 1, 30, "a first answer")
    server.kill9()
    server.start()
    with server.client() as client:
        def answers() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = client.get("/conversations/default/responses").json()
            return found

        # each message answered once, two of them also by their background agent's result
        wait_for(lambda: len(answers()) >= 5, 60, "every answer after the restart")
        time.sleep(1.0)
        got = answers()
        assert len(got) == 5, [r["message"] for r in got]
        direct = [r["message"] for r in got if "reports:" not in r["message"]]
        assert [next(t for t in texts if t in m) for m in direct] == texts  # in the order they were sent
        history = client.get("/conversations/default/history").text.splitlines()
        events = [json.loads(line) for line in history if json.loads(line)["kind"] == "event"]
        assert [e["data"]["text"] for e in events if e["type"] == "user-message"] == texts
        assert all(e["status"] == "started" for e in events)


PLAN = "openai-chat:plan-3-delay-250@gpt-4o"  # 8 requests, 7 tool calls, todos; priced as gpt-4o
FIGURES = ("requests", "tool_calls", "input_tokens", "output_tokens", "cost_usd", "todos", "last_tool",
           "last_tool_args", "last_message", "recent")


def figures(task: dict[str, Any]) -> dict[str, Any]:
    return {"status": task["status"], "end_reason": task["end_reason"],
            **{k: task["progress"][k] for k in FIGURES}}


def test_progress_and_cost_after_kill_9_equal_a_run_without_crash(
        server_factory: Callable[..., ServerProcess]) -> None:
    """Every figure of a task recovered after kill -9 equals that of the same script run without a crash,
    and its cost budget is checked against the whole cost, not only what was spent after the restart."""
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url))
        server.start()
        with server.client() as client:
            def run(name: str, limits: dict[str, float] | None = None) -> str:
                body: dict[str, Any] = {"prompt": "plan tag=same", "name": name, "model": PLAN}
                if limits:
                    body["limits"] = limits
                r = client.post("/tasks", json=body)
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            def finished(*ids: str) -> bool:
                return all(client.get(f"/tasks/{i}").json()["status"] in ("completed", "failed") for i in ids)

            calm = run("calm")
            wait_for(lambda: finished(calm), 60, "the run without a crash")
            without_crash = figures(client.get(f"/tasks/{calm}").json())
            assert without_crash["status"] == "completed" and without_crash["requests"] == 8
            assert without_crash["cost_usd"] and without_crash["todos"] == {"done": 3, "total": 3, "current": None}
            budget = round(without_crash["cost_usd"] * 0.7, 6)  # crossed at the 6th of 8 requests
            calm_budget = run("calm-budget", {"cost_usd": budget})
            wait_for(lambda: finished(calm_budget), 60, "the budgeted run without a crash")
            budget_without_crash = figures(client.get(f"/tasks/{calm_budget}").json())
            assert (budget_without_crash["status"], budget_without_crash["end_reason"]) == ("failed", "budget")

            crashed, crashed_budget = run("crashed"), run("crashed-budget", {"cost_usd": budget})

            def mid_way() -> bool:
                found = [client.get(f"/tasks/{i}").json() for i in (crashed, crashed_budget)]
                return all(t["status"] == "running" and t["progress"]["tool_calls"] >= 3 for t in found)

            wait_for(mid_way, 60, "both tasks mid-way")
            at_kill = figures(client.get(f"/tasks/{crashed}").json())
        server.kill9()
        server.start()
        with server.client() as client:
            wait_for(lambda: finished(crashed, crashed_budget), 60, "both tasks to end after the restart")
            after = figures(client.get(f"/tasks/{crashed}").json())
            budget_after = figures(client.get(f"/tasks/{crashed_budget}").json())
    print(f"\nwithout crash: {without_crash}\nat the kill: {at_kill}\nafter the restart: {after}\n"
          f"budgeted without crash: {budget_without_crash}\nbudgeted after the restart: {budget_after}")
    assert after == without_crash
    assert budget_after == budget_without_crash


def test_kill_9_of_a_background_agent_forked_from_the_main_session(
        server_factory: Callable[..., ServerProcess]) -> None:
    """A background agent is a fork of the main session, whose transcript ends with a request (the result
    of its output tool). Killed mid-way, it resumes from its last finished step after the restart and its
    result reaches the conversation once."""
    server = server_factory(BGAGENTS_MODEL="demo", BGAGENTS_DEMO_PAUSE="0.3")
    server.start()
    with server.client() as client:
        r = client.post("/conversations/default/messages", json={"text": "research the history of tea"})
        assert r.status_code == 202, r.text

        def background() -> dict[str, Any] | None:
            found = [s for s in client.get("/conversations/default/sessions").json() if not s["main"]]
            return found[0] if found else None

        wait_for(lambda: (s := background()) is not None and s["progress"]["tool_calls"] >= 2, 60,
                 "the background agent mid-way")
        agent = background()
        assert agent is not None
    server.kill9()
    server.start()
    with server.client() as client:
        def ended() -> bool:
            return bool(client.get(f"/tasks/{agent['task_id']}").json()["status"] not in ("queued", "running"))

        wait_for(ended, 60, "the background agent to end after the restart")
        task = client.get(f"/tasks/{agent['task_id']}").json()
        assert (task["status"], task["error"]) == ("completed", None), server.log_text()[-3000:]
        wait_for(lambda: len(client.get("/conversations/default/responses").json()) >= 2, 30, "its result")
        time.sleep(0.5)
        answers = [r["message"] for r in client.get("/conversations/default/responses").json()]
        assert len(answers) == 2 and sum("reports:" in a for a in answers) == 1, answers
        transcript = client.get(f"/tasks/{agent['task_id']}/transcript", params={"limit": 1000}).json()
        calls = [e["tool_name"] for e in transcript if e["role"] == "tool_call"]
        assert calls.count("write") == 1 and calls.count("read") == 1, calls
