"""Batch launch: a list of tasks queued in one transaction; a bad item launches nothing and is named."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bgagents import Runtime
from bgagents.errors import InvalidInput, NotFound
from bgagents.server import create_app

from .conftest import Script

TOKEN = "batch-token"


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime, TOKEN, manage_runtime=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


async def test_a_batch_is_launched_in_order_and_every_task_runs(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.register_model("m", Script(answer="ok").model())
    items = [{"prompt": f"job {k}", "name": f"job-{k}", "model": "m", "priority": k % 2} for k in range(5)]
    response = await api.post("/tasks/batch", json={"tasks": items})
    assert response.status_code == 201, response.text
    launched = response.json()
    assert [t["prompt"] for t in launched] == [f"job {k}" for k in range(5)]
    assert all(t["status"] == "queued" for t in launched)
    for task in launched:
        done = await runtime.wait(task["id"], timeout=30)
        assert done.status == "completed" and done.result is not None and done.result.text == "ok"


@pytest.mark.parametrize(("bad", "status", "says"), [
    ({"prompt": "x", "model": "no-such-provider:nothing"}, 400, "tasks[2]: model 'no-such-provider:nothing'"),
    ({"prompt": "x", "model": "m", "limits": {"bananas": 1}}, 400, "tasks[2]: unknown limits: bananas"),
    ({"prompt": "x", "model": "m", "parent_id": "bg_missing"}, 404, "tasks[2]: parent task 'bg_missing'"),
    ({"prompt": "", "model": "m"}, 422, "tasks.2.prompt"),
    ({"prompt": "x", "model": "m", "colour": "red"}, 422, "tasks.2.colour"),
])
async def test_a_bad_item_launches_nothing_and_is_named(api: httpx.AsyncClient, runtime: Runtime,
                                                        bad: dict[str, object], status: int, says: str) -> None:
    runtime.register_model("m", Script().model())
    items = [{"prompt": "first", "model": "m"}, {"prompt": "second", "model": "m"}, bad,
             {"prompt": "last", "model": "m"}]
    response = await api.post("/tasks/batch", json={"tasks": items})
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"].startswith(says), response.json()
    assert await runtime.list() == []


async def test_an_empty_or_oversized_batch_is_refused(api: httpx.AsyncClient) -> None:
    assert (await api.post("/tasks/batch", json={"tasks": []})).status_code == 422
    many = [{"prompt": "x"}] * 1001
    assert (await api.post("/tasks/batch", json={"tasks": many})).status_code == 422


async def test_launch_many_in_python(runtime: Runtime) -> None:
    runtime.register_model("m", Script().model())
    with pytest.raises(InvalidInput, match=r"tasks\[1\]: unknown field\(s\): _id, colour"):
        await runtime.launch_many([{"prompt": "a", "model": "m"}, {"prompt": "b", "colour": 1, "_id": "x"}])
    with pytest.raises(InvalidInput, match=r"tasks\[0\]: the prompt is missing"):
        await runtime.launch_many([{"model": "m"}])
    with pytest.raises(NotFound, match=r"tasks\[0\]"):
        await runtime.launch_many([{"prompt": "a", "model": "m", "parent_id": "bg_nope"}])
    assert await runtime.list() == []
    tasks = await runtime.launch_many([{"prompt": "a", "model": "m"}, {"prompt": "b", "model": "m"}])
    assert [t.prompt for t in tasks] == ["a", "b"]
    assert {t.id for t in await runtime.list()} == {t.id for t in tasks}
