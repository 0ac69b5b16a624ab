"""The conversation routes in-process: shapes, live responses on the event stream, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from bgagents import Runtime
from bgagents.server import create_app

TOKEN = "secret-token"
BASE = "/conversations/default"


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    runtime.settings.model = "demo"
    app = create_app(runtime, TOKEN, manage_runtime=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def code(response: httpx.Response) -> str:
    error: dict[str, str] = response.json()["error"]
    assert error["message"]
    return error["code"]


async def test_message_to_responses_sessions_and_history(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{BASE}/messages", json={"text": "research the tides", "files": ["notes/a.md"]})
    assert response.status_code == 202
    event = response.json()
    assert event["name"] == "research-tides" and event["type"] == "user-message" and event["status"] == "pending"
    assert event["data"]["files"] == ["notes/a.md"]
    first = (await api.get(f"{BASE}/responses", params={"wait": 20})).json()
    assert len(first) == 1 and set(first[0]) >= {"seq", "message", "files", "buttons", "created_at"}
    sessions = (await api.get(f"{BASE}/sessions")).json()
    background = [s for s in sessions if not s["main"]]
    if background:  # the background agent may already be done on a fast machine
        detail = (await api.get(f"{BASE}/sessions/{background[0]['name']}")).json()
        assert detail["prompt"] == "research the tides" and "<event" not in detail["prompt"]
    later = (await api.get(f"{BASE}/responses", params={"since": first[0]["seq"], "wait": 20})).json()
    assert len(later) == 1 and "reports:" in later[0]["message"]
    history = await api.get(f"{BASE}/history")
    assert history.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in history.text.splitlines()]
    assert [line["kind"] for line in lines].count("event") == 2  # the message and the background result
    assert [line["kind"] for line in lines].count("response") == 2


async def test_live_responses_on_the_event_stream(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """The stream of /events?conversation= (ASGITransport buffers SSE, so its generator is read directly)."""
    async def first_response() -> dict[str, object]:
        async for event in runtime.events(conversation_id="live"):
            if event.type == "conversation.response":
                return event.data
        raise AssertionError("the stream ended")

    reader = asyncio.create_task(first_response())
    await asyncio.sleep(0.1)
    assert (await api.post("/conversations/live/buttons", json={"label": "Yes"})).status_code == 202
    data = await asyncio.wait_for(reader, 20)
    assert data["message"] == "[demo model] You chose 'Yes'." and data["conversation_id"] == "live"


async def test_bad_input_is_a_clear_error(api: httpx.AsyncClient, runtime: Runtime) -> None:
    assert code(await api.post("/conversations/bad id!/messages", json={"text": "x"})) == "bad_conversation_id"
    assert code(await api.post(f"{BASE}/messages", json={"text": " "})) == "empty_message"
    assert code(await api.post(f"{BASE}/messages", json={"text": "x", "files": ["../../etc/passwd"]})) == "bad_path"
    assert code(await api.post(f"{BASE}/messages", json={"txt": "typo"})) == "invalid_request"
    assert code(await api.post(f"{BASE}/buttons", json={"label": ""})) == "invalid_request"
    for path in ("/sessions/nobody", ):
        response = await api.get(BASE + path)
        assert response.status_code == 404 and code(response) == "not_found"
    for path in ("/sessions/nobody/peek", "/sessions/nobody/kill"):
        response = await api.post(BASE + path)
        assert response.status_code == 404 and code(response) == "not_found"
    response = await api.post(f"{BASE}/background")
    assert response.status_code == 409 and code(response) == "not_running"
    assert (await api.post(f"{BASE}/clear")).json() == {"cleared": True}
    assert (await api.post("/tasks/bg_nothere/peek")).status_code == 404
    assert code(await api.get(f"{BASE}/responses", params={"since": -1})) == "invalid_request"
    runtime.settings.model = None
    response = await api.post(f"{BASE}/messages", json={"text": "hi"})
    assert response.status_code == 400 and code(response) == "no_model"
    assert (await api.get(f"{BASE}/history")).text == ""  # nothing was stored for refused input


async def test_response_files_download_from_the_workspace(api: httpx.AsyncClient, runtime: Runtime) -> None:
    note = runtime.settings.workspace_path / "notes" / "a.md"
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text("hello file")
    response = await api.get("/files/notes/a.md")
    assert response.status_code == 200 and response.text == "hello file"
    assert (await api.get("/files/notes/missing.md")).status_code == 404
    assert code(await api.get("/files/..%2F..%2Fetc%2Fpasswd")) == "bad_path"
    # found by fuzzing: these answered 500
    assert code(await api.get("/files/~nosuchuser/x")) == "bad_path"
    assert (await api.get("/files/" + "a" * 300)).status_code == 404
    assert code(await api.post(f"{BASE}/messages", json={"text": "x", "files": ["~nosuchuser/x"]})) == "bad_path"
    assert (await api.get("/files/notes/a.md", headers={"Authorization": ""})).status_code == 401


async def test_concurrent_first_events_on_a_new_conversation(api: httpx.AsyncClient) -> None:
    """Found by fuzzing: 68 of 80 concurrent first messages to a new id answered 500 IntegrityError."""
    responses = await asyncio.gather(*(api.post("/conversations/fresh/messages", json={"text": f"hello {i}"})
                                       for i in range(80)))
    assert [r.status_code for r in responses] == [202] * 80, {r.text for r in responses if r.status_code != 202}
    assert sorted(r.json()["seq"] for r in responses) == list(range(1, 81))
    assert len({r.json()["name"] for r in responses}) == 80
