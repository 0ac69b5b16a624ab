"""Webhooks: signed (Standard Webhooks), durable, retried with a log, never in a task's way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bgagents import Runtime
from bgagents.errors import InvalidInput
from bgagents.server import create_app
from bgagents.settings import WebhookSettings
from bgagents.webhooks import Webhooks
from bgagents.webhooks.store import Delivery

from .conftest import Script, ServerProcess, make_settings
from .test_durability import wait_for
from .webhook_receiver import Receiver

FAST = {"allow_private": True, "retry_delays": [0.05, 0.05, 0.05], "poll_interval": 0.05, "timeout": 2.0}


async def until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(make_settings(tmp_path)) as runtime:
        runtime.register_model("script", Script(answer="finished").model())
        yield runtime


async def settled(hooks: Webhooks, webhook_id: str, count: int = 1) -> list[Delivery]:
    """The deliveries once `count` of them are no longer pending (the receiver answers before the log is written)."""
    deadline = time.monotonic() + 20
    while True:
        found = await hooks.deliveries(webhook_id)
        if sum(d.status != "pending" for d in found) >= count:
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.02)


async def started(rt: Runtime, **settings: object) -> Webhooks:
    hooks = Webhooks(rt, WebhookSettings.model_validate({**FAST, **settings}))
    await hooks.start()
    return hooks


async def test_delivered_once_with_a_signature_the_receiver_verifies(rt: Runtime) -> None:
    hooks = await started(rt)
    try:
        with Receiver() as receiver:
            sub, receiver.secret = await hooks.subscribe(receiver.url, ["task.completed"])
            assert receiver.secret.startswith("whsec_")
            task = await rt.wait((await rt.launch("hello", model="script")).id, 20)
            await until(lambda: len(receiver.accepted) == 1)
            for _ in range(5):
                await hooks.pump()
            await asyncio.sleep(0.2)
            assert len(receiver.requests) == 1 and receiver.bad_signatures == 0
            [delivery] = await settled(hooks, sub.id)
            body = receiver.accepted[0]
            assert body["type"] == "task.completed" and body["data"]["task"]["id"] == task.id
            assert body["data"]["task"]["result"]["text"] == "finished"
            assert delivery.status == "delivered" and [t.status_code for t in delivery.log] == [200]
            assert delivery.id == body["id"]
    finally:
        await hooks.stop()


async def test_failing_twice_then_accepting_logs_three_tries(rt: Runtime) -> None:
    hooks = await started(rt)
    try:
        with Receiver(fail_first=2) as receiver:
            sub, receiver.secret = await hooks.subscribe(receiver.url)
            await rt.wait((await rt.launch("x", model="script")).id, 20)
            await until(lambda: len(receiver.accepted) == 1)
            [delivery] = await settled(hooks, sub.id)
            assert delivery.status == "delivered" and delivery.tries == 3
            assert [(t.n, t.status_code, t.error) for t in delivery.log] == [
                (1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, None)]
            assert len({h["webhook-id"] for h in receiver.requests}) == 1  # one message, three tries
    finally:
        await hooks.stop()


async def test_gives_up_after_the_last_retry(rt: Runtime) -> None:
    hooks = await started(rt, retry_delays=[0.05])
    try:
        with Receiver(fail_first=100) as receiver:
            sub, receiver.secret = await hooks.subscribe(receiver.url, ["task.completed"])
            await rt.wait((await rt.launch("x", model="script")).id, 20)
            await until(lambda: len(receiver.requests) == 2)
            [delivery] = await settled(hooks, sub.id)
            for _ in range(5):
                await hooks.pump()
            assert delivery.status == "failed" and delivery.tries == 2 and len(receiver.requests) == 2
    finally:
        await hooks.stop()


async def test_a_hanging_receiver_does_not_slow_a_task(rt: Runtime) -> None:
    hooks = await started(rt, timeout=30.0)
    try:
        with Receiver(hang=8.0) as receiver:
            await hooks.subscribe(receiver.url, ["task.completed"])
            first = await rt.wait((await rt.launch("one", model="script")).id, 20)
            await until(lambda: len(receiver.requests) == 1)  # its delivery now hangs
            began = time.monotonic()
            second = await rt.wait((await rt.launch("two", model="script")).id, 20)
            assert first.status == second.status == "completed"
            assert time.monotonic() - began < 5 and not receiver.accepted
    finally:
        await hooks.stop()


async def test_bad_subscriptions_are_refused(rt: Runtime) -> None:
    hooks = Webhooks(rt, WebhookSettings())  # private addresses refused by default
    for url, says in [("ftp://example.com/x", "http"), ("http://127.0.0.1:9/x", "private or loopback"),
                      ("http://10.1.2.3/x", "private"), ("http://[::1]/x", "private"), ("not a url", "http"),
                      ("http://localhost:8080/x", "private")]:
        with pytest.raises(InvalidInput, match=says):
            await hooks.subscribe(url)
    with pytest.raises(InvalidInput, match="unknown webhook events"):
        await hooks.subscribe("https://93.184.215.14/x", ["task.exploded"])
    assert await hooks.subscriptions() == []


async def test_api_routes_and_a_per_launch_webhook(rt: Runtime) -> None:
    app = create_app(rt, "tok", manage_runtime=False)
    hooks: Webhooks = app.state.webhooks
    hooks.settings = WebhookSettings.model_validate(FAST)
    await hooks.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/api/v1",
                                     headers={"Authorization": "Bearer tok"}) as http:
            with Receiver() as receiver:
                made = await http.post("/webhooks", json={"url": receiver.url, "events": ["task.failed"]})
                assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
                wid = made.json()["id"]
                assert "secret" not in (await http.get(f"/webhooks/{wid}")).json()
                assert [w["id"] for w in (await http.get("/webhooks")).json()] == [wid]
                for bad in ({"url": "gopher://x"}, {"url": receiver.url, "events": ["nope"]}, {"nope": 1}):
                    answer = await http.post("/webhooks", json=bad)
                    assert answer.status_code in (400, 422) and "error" in answer.json(), bad
                assert (await http.get("/webhooks/wh_nope/deliveries")).status_code == 404

                receiver.secret = (await http.get("/webhooks/launch-secret")).json()["secret"]
                refused = await http.post("/tasks", json={"prompt": "x", "model": "nosuch:model",
                                                          "webhook": receiver.url})
                assert refused.status_code == 400 and len((await http.get("/webhooks")).json()) == 1
                launched = await http.post("/tasks", json={"prompt": "x", "model": "script",
                                                           "webhook": receiver.url})
                assert launched.status_code == 201, launched.text
                await rt.wait(launched.json()["id"], 20)
                await until(lambda: len(receiver.accepted) == 1)
                assert receiver.accepted[0]["data"]["task"]["id"] == launched.json()["id"]
                other = await rt.wait((await rt.launch("not watched", model="script")).id, 20)
                await asyncio.sleep(0.3)
                assert other.status == "completed" and len(receiver.accepted) == 1  # only its own task
                assert (await http.delete(f"/webhooks/{wid}")).json() == {"deleted": wid}
                assert (await http.delete(f"/webhooks/{wid}")).status_code == 404
    finally:
        await hooks.stop()


def test_the_server_restarted_between_tries_still_delivers_once(
        server_factory: Callable[..., ServerProcess]) -> None:
    with Receiver(fail_first=1) as receiver:
        server = server_factory(BGAGENTS_MODEL="demo", BGAGENTS_WEBHOOKS__ALLOW_PRIVATE="true",
                                BGAGENTS_WEBHOOKS__RETRY_DELAYS="[3]", BGAGENTS_WEBHOOKS__POLL_INTERVAL="0.1")
        server.start()
        with server.client() as http:
            made = http.post("/webhooks", json={"url": receiver.url, "events": ["task.completed"]}).json()
            receiver.secret = made["secret"]
            tid = http.post("/tasks", json={"prompt": "write a note"}).json()["id"]
            wait_for(lambda: len(receiver.requests) == 1, 120, "the first try")  # the first try failed (500)
        server.kill9()
        server.start()
        wait_for(lambda: len(receiver.accepted) == 1, 120, "the retry after the restart")
        time.sleep(1.0)
        assert len(receiver.accepted) == 1 and receiver.accepted[0]["data"]["task"]["id"] == tid
        with server.client() as http:
            [delivery] = http.get(f"/webhooks/{made['id']}/deliveries").json()
        assert delivery["status"] == "delivered" and [t["status_code"] for t in delivery["log"]] == [500, 200]


async def test_a_round_reads_the_data_of_new_events_only_and_none_without_webhooks(rt: Runtime) -> None:
    """Recent events stay past the cursor (SETTLE), so rounds see them again; their data is read once, and
    not at all while no webhook exists. A webhook made afterwards gets none of the earlier events."""
    hooks = await started(rt)
    read: list[list[int]] = []
    by_seq = hooks.store.events_by_seq

    async def counting(seqs: list[int]) -> list[object]:
        read.append(list(seqs))
        return await by_seq(seqs)  # type: ignore[return-value]

    hooks.store.events_by_seq = counting  # type: ignore[method-assign,assignment]
    try:
        await rt.wait((await rt.launch("before", model="script")).id, 20)
        for _ in range(3):
            await hooks.pump()
        assert read == []
        with Receiver() as receiver:
            _, receiver.secret = await hooks.subscribe(receiver.url, ["task.completed"])
            task = await rt.wait((await rt.launch("after", model="script")).id, 20)
            await until(lambda: len(receiver.accepted) == 1)
            for _ in range(3):
                await hooks.pump()
            assert [body["data"]["task"]["id"] for body in receiver.accepted] == [task.id]
            assert len(read) == 1 and len(read[0]) == 1  # the new event's data, once
    finally:
        await hooks.stop()
