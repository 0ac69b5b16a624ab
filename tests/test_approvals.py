"""One decision per approval (issue 19 item 4), on a real server, on SQLite and on PostgreSQL.

Many people (or one impatient one) may decide the same approval at once: exactly one decision wins, the
others answer 409 naming it, and what the agent did matches the stored decision. Cancelling a task
resolves its pending approvals, so the inbox no longer shows them and deciding one afterwards answers 409.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgagents import Runtime
from bgagents.settings import LimitSettings, ProfileSettings

from .conftest import POSTGRES_URL, Script, ServerProcess, fresh_postgres_database, make_settings
from .fake_openai import FakeOpenAI, env_for
from .test_durability import wait_for

TRIALS = 12  # approvals decided at once, each by RACERS concurrent calls
RACERS = 8
CAREFUL = '[agents.careful]\ndescription = "asks before bash"\npermissions = { bash = "ask" }\n'


def _start(server_factory: Callable[..., ServerProcess], fake: FakeOpenAI, database: str) -> ServerProcess:
    env = {**env_for(fake.base_url), "BGAGENTS_CONCURRENCY__DEFAULT": "0"}
    if database == "postgres":
        if not POSTGRES_URL:
            pytest.skip("BGAGENTS_TEST_POSTGRES_URL is not set")
        env["BGAGENTS_DATABASE_URL"] = fresh_postgres_database("bg_approvals_race")
    server = server_factory(**env)
    (server.home / "config.toml").write_text(CAREFUL)
    server.start()
    return server


def _pending(client: httpx.Client, count: int) -> dict[str, dict[str, Any]]:
    """The pending approvals by task id, once `count` of them are there."""
    found: dict[str, dict[str, Any]] = {}

    def enough() -> bool:
        found.clear()
        found.update({a["task_id"]: a for a in client.get("/approvals").json()})
        return len(found) >= count

    wait_for(enough, 60, f"{count} pending approvals")
    return found


async def _race(server: ServerProcess, approval_ids: list[str]) -> dict[str, list[httpx.Response]]:
    """RACERS decisions (approve and deny in turn) on each approval, every one of them sent at once."""
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=len(approval_ids) * RACERS)
    async with httpx.AsyncClient(base_url=server.url + "/api/v1", headers=headers, timeout=60,
                                 limits=limits) as api:
        calls = [(aid, api.post(f"/approvals/{aid}", json={"decision": ("approve", "deny")[i % 2],
                                                           "reason": f"racer {i}"}))
                 for aid in approval_ids for i in range(RACERS)]
        answers = await asyncio.gather(*(call for _, call in calls))
    by_approval: dict[str, list[httpx.Response]] = {aid: [] for aid in approval_ids}
    for (aid, _), answer in zip(calls, answers, strict=True):
        by_approval[aid].append(answer)
    return by_approval


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_one_decision_per_approval_and_cancelling_resolves_them(
        server_factory: Callable[..., ServerProcess], database: str) -> None:
    with FakeOpenAI() as fake:
        server = _start(server_factory, fake, database)
        with server.client() as client:
            tasks = [client.post("/tasks", json={"prompt": f"run: echo ran-{k}", "model": "openai-chat:run",
                                                 "agent": "careful"}).json() for k in range(TRIALS)]
            doomed = client.post("/tasks", json={"prompt": "run: echo never", "model": "openai-chat:run",
                                                 "agent": "careful"}).json()
            pending = _pending(client, TRIALS + 1)
            _cancel_resolves_its_approval(server, client, doomed, pending.pop(doomed["id"]))
            answers = asyncio.run(_race(server, [pending[t["id"]]["id"] for t in tasks]))
            several, contradicted = [], []
            for k, task in enumerate(tasks):
                approval = pending[task["id"]]
                codes = sorted(a.status_code for a in answers[approval["id"]])
                winners = [a.json() for a in answers[approval["id"]] if a.status_code == 200]
                if codes != [200] + [409] * (RACERS - 1):
                    several.append((k, codes))
                done = client.get(f"/tasks/{task['id']}/output", params={"wait": "true", "timeout": 60}).json()
                stored = client.get("/approvals", params={"status": "all"}).json()
                record = next(a for a in stored if a["id"] == approval["id"])
                ran = f"ran-{k}" in (done["result"] or {}).get("text", "")
                if ran != (record["status"] == "approved"):
                    contradicted.append((k, record["status"], done["result"]))
                if len(winners) == 1:
                    won = winners[0]
                    assert (record["status"], record["decision_reason"]) == (won["status"], won["decision_reason"])
                    for lost in (a for a in answers[approval["id"]] if a.status_code == 409):
                        assert f"already {won['status']} ({won['decision_reason']})" in lost.text, lost.text
            assert not several, f"{len(several)} of {TRIALS} approvals got several decisions: {several}"
            assert not contradicted, f"{len(contradicted)} of {TRIALS} stored decisions contradict what ran"


def _cancel_resolves_its_approval(server: ServerProcess, client: httpx.Client, task: dict[str, Any],
                                  approval: dict[str, Any]) -> None:
    """Cancelling a waiting task closes its approval: out of the inbox, and too late to decide."""
    assert client.post(f"/tasks/{task['id']}/cancel").status_code == 200
    assert approval["id"] not in [a["id"] for a in client.get("/approvals").json()]
    assert approval["id"] not in [a["id"] for a in json.loads(server.cli("approvals", "--json").stdout)]
    record = next(a for a in client.get("/approvals", params={"status": "cancelled"}).json()
                  if a["id"] == approval["id"])
    assert record["decision_reason"] == "the task was cancelled (user)", record
    late = client.post(f"/approvals/{approval['id']}", json={"decision": "approve"})
    assert late.status_code == 409 and "already cancelled" in late.text, late.text
    assert client.get(f"/tasks/{task['id']}").json()["status"] == "cancelled"
    transcript = client.get(f"/tasks/{task['id']}/transcript").json()
    assert [e["role"] for e in transcript] == ["user", "tool_call"]  # the call never ran


async def test_a_decision_whose_message_was_lost_is_still_the_one_followed(tmp_path: Path) -> None:
    """A decision stored, but whose message never reached the waiting agent (the deciding process died in
    between): when the wait times out, the agent follows the stored decision rather than denying it."""
    settings = make_settings(tmp_path, agents={"careful": ProfileSettings(permissions={"bash": "ask"})},
                             limits=LimitSettings(approval_timeout=0.5, sweep_interval=0.05))
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("bash", {"command": "touch approved.txt"})]).model())
        task = await rt.launch("careful work", model="m", agent="careful")
        while not (pending := await rt.approvals()):
            await asyncio.sleep(0.01)
        assert await rt.store.decide_approval(pending[0].id, "approve", "yes, but the message is lost")
        done = await rt.wait(task.id, timeout=20)
        record = (await rt.approvals(None))[0]
    assert done.status == "completed" and record.status == "approved"
    assert (settings.workspace_path / "approved.txt").exists()
