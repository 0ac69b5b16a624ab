"""The HTTP API in-process: shapes, auth, every route's bad input (clear JSON errors, never a 500)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Runtime
from bgagents.server import create_app

from .conftest import Script

TOKEN = "secret-token"
TASK_FIELDS = {"id", "name", "status", "prompt", "agent", "model", "parent_id", "created_at", "started_at",
               "finished_at", "progress", "result", "error", "end_reason", "attempts"}


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime, TOKEN, manage_runtime=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    assert response.json()["error"]["message"]
    return code


async def test_auth_is_required_except_healthz(api: httpx.AsyncClient) -> None:
    assert (await api.get("http://test/healthz", headers={"Authorization": ""})).status_code == 200
    response = await api.get("/tasks", headers={"Authorization": ""})
    assert response.status_code == 401 and error_code(response) == "unauthorized"
    response = await api.get("/tasks", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert (await api.get("/tasks")).status_code == 200


async def test_task_lifecycle_over_http(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.register_model("m", Script(steps=[("todoread", {})], answer="the answer").model())
    response = await api.post("/tasks", json={"prompt": "Find the answer", "model": "m", "priority": 3,
                                              "description": "a test"})
    assert response.status_code == 201
    task = response.json()
    assert TASK_FIELDS <= set(task)
    assert task["status"] == "queued" and task["agent"] == "general" and task["parent_id"] is None
    assert set(task["progress"]) >= {"requests", "tool_calls", "last_tool", "last_message", "input_tokens",
                                     "output_tokens", "todos"}
    assert set(task["progress"]["todos"]) >= {"done", "total"}
    out = (await api.get(f"/tasks/{task['id']}/output", params={"wait": "true", "timeout": 20})).json()
    assert out["finished"] and out["result"]["text"] == "the answer"
    assert out["result"]["data"] is None
    got = (await api.get(f"/tasks/{task['id']}")).json()
    assert got["status"] == "completed" and got["progress"]["tool_calls"] == 1
    listed = (await api.get("/tasks", params={"status": "completed"})).json()
    assert [t["id"] for t in listed] == [task["id"]]
    transcript = (await api.get(f"/tasks/{task['id']}/transcript", params={"limit": 2})).json()
    assert transcript[0]["role"] == "user" and transcript[0]["content"] == "Find the answer"
    resumed = await api.post(f"/tasks/{task['id']}/resume", json={"prompt": "and again"})
    assert resumed.status_code == 200 and resumed.json()["turn"] == 2
    await runtime.wait(task["id"], timeout=20)
    fork = await api.post(f"/tasks/{task['id']}/fork", json={"prompt": "branch", "at": 1})
    assert fork.status_code == 201 and fork.json()["forked_from"]["task_id"] == task["id"]
    await runtime.wait(fork.json()["id"], timeout=20)
    forked = (await api.get(f"/tasks/{fork.json()['id']}/transcript")).json()
    assert [(e["role"], e["content"]) for e in forked] == [
        ("user", "Find the answer"), ("user", "branch"), ("tool_call", "{}"), ("tool_result", "no todos yet"),
        ("assistant", "the answer")]
    stats = (await api.get("/stats")).json()
    assert stats == {"running": {}}
    agents = {a["name"] for a in (await api.get("/agents")).json()}
    assert {"general", "explore"} <= agents


async def test_steer_and_cancel_over_http(api: httpx.AsyncClient, runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    runtime.register_model("m", FunctionModel(model, model_name="m"))
    task = (await api.post("/tasks", json={"prompt": "x", "model": "m"})).json()
    steered = await api.post(f"/tasks/{task['id']}/messages", json={"message": "hurry"})
    assert steered.status_code == 200
    cancelled = await api.post(f"/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["end_reason"] == "user"
    again = await api.post(f"/tasks/{task['id']}/cancel")
    assert again.status_code == 409 and error_code(again) == "already_finished"
    late = await api.post(f"/tasks/{task['id']}/messages", json={"message": "hello?"})
    assert late.status_code == 409 and "resume" in late.json()["error"]["message"]
    all_ = await api.post("/tasks/cancel", json={"all": True})
    assert all_.status_code == 200 and all_.json() == []


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("POST", "/tasks", {}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": ""}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "colour": "red"}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "priority": "high"}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "model": "nope:nothing"}, 400, "unknown_model"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "agent": "ghost"}, 400, "unknown_agent"),
    ("POST", "/tasks", {"prompt": "x"}, 400, "no_model"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "limits": {"x": 1}}, 400, "invalid_input"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "fallback_models": ["bad:bad"]}, 400, "unknown_model"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "parent_id": "bg_ffffffff"}, 404, "not_found"),
    ("GET", "/tasks?status=sleeping", None, 400, "invalid_input"),
    ("GET", "/tasks?limit=0", None, 422, "invalid_request"),
    ("GET", "/tasks/bg_00000000", None, 404, "not_found"),
    ("GET", "/tasks/bg_00000000/output", None, 404, "not_found"),
    ("GET", "/tasks/bg_00000000/transcript", None, 404, "not_found"),
    ("POST", "/tasks/bg_00000000/cancel", None, 404, "not_found"),
    ("POST", "/tasks/bg_00000000/resume", {"prompt": "x"}, 404, "not_found"),
    ("POST", "/tasks/bg_00000000/messages", {"message": "x"}, 404, "not_found"),
    ("POST", "/tasks/bg_00000000/fork", {"prompt": "x"}, 404, "not_found"),
    ("POST", "/tasks/cancel", {"all": False}, 400, "invalid_input"),
    ("GET", "/events?task=bg_00000000", None, 404, "not_found"),
    ("GET", "/events?since=-4", None, 422, "invalid_request"),
    ("GET", "/nowhere", None, 404, "not_found"),
    # found by fuzzing: numbers past 64 bits, and values a database cannot hold, answered 500
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "priority": 2**70}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "priority": 2**63 - 1}, 422, "invalid_request"),
    ("POST", "/tasks", '{"prompt": "x", "model": "demo", "limits": {"requests": NaN}}', 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "limits": {"requests": -1}}, 422, "invalid_request"),
    ("POST", "/tasks", '{"prompt": "x", "model": "demo", "output_schema": {"type": "object", "maximum": Infinity}}',
     422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "a\x00b", "model": "demo"}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "model": "demo", "parent_id": "p" * 65}, 422, "invalid_request"),
    ("POST", "/tasks", {"prompt": "x", "model": "openai:" + "m" * 300}, 422, "invalid_request"),
    ("POST", "/tasks/bg_00000000/fork", {"prompt": "x", "at": 2**70}, 422, "invalid_request"),
    ("GET", f"/tasks/bg_00000000/transcript?since={2**70}", None, 422, "invalid_request"),
    ("GET", f"/events?since={2**70}", None, 422, "invalid_request"),
    ("GET", f"/conversations/c/responses?since={2**70}", None, 422, "invalid_request"),
    ("GET", "/tasks/bg_%00", None, 400, "invalid_request"),
    ("GET", "/tasks?parent=a%00b", None, 400, "invalid_request"),
])
async def test_bad_input_on_every_route(api: httpx.AsyncClient, method: str, path: str, body: object,
                                        status: int, code: str) -> None:
    if isinstance(body, str):  # raw JSON, as Python's own parser takes it (NaN, Infinity)
        response = await api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = await api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert (await api.get("/tasks")).json() == []  # nothing half-created


async def test_bad_input_on_task_routes(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.register_model("m", Script().model())
    task = (await api.post("/tasks", json={"prompt": "x", "model": "m"})).json()
    await runtime.wait(task["id"], timeout=20)
    tid = task["id"]
    cases = [
        ("GET", f"/tasks/{tid}/output?timeout=-1", None, 422),
        ("GET", f"/tasks/{tid}/transcript?limit=0", None, 422),
        ("POST", f"/tasks/{tid}/resume", {"prompt": ""}, 422),
        ("POST", f"/tasks/{tid}/resume", {}, 422),
        ("POST", f"/tasks/{tid}/messages", {"text": "x"}, 422),
        ("POST", f"/tasks/{tid}/fork", {"prompt": "x", "at": 999}, 400),
        ("POST", f"/tasks/{tid}/fork", {"prompt": "x", "at": -1}, 422),
        ("POST", f"/tasks/{tid}/fork", {"prompt": "x", "model": "zzz"}, 400),
        ("POST", f"/tasks/{tid}/cancel", None, 409),
        ("POST", f"/tasks/{tid}/messages", {"message": "x"}, 409),
    ]
    for method, path, body, status in cases:
        response = await api.request(method, path, json=body)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["code"]
    raw = await api.post("/tasks", content=b"{not json", headers={"Content-Type": "application/json"})
    assert raw.status_code == 422 and error_code(raw) == "invalid_request"
    for bad_id in ("abc", b"\xb2", "9" * 5000, str(2**70)):  # the last three answered 500: "²" (latin-1
        # b"\xb2") is a digit to str.isdigit, not to int(); int() refuses 5000 digits; SQLite takes 64 bits
        response = await api.get("/events", headers={"Last-Event-ID": bad_id})
        assert response.status_code == 400, (bad_id, response.text)


async def test_openapi_document(api: httpx.AsyncClient) -> None:
    doc = (await api.get("http://test/openapi.json")).json()
    assert "/api/v1/tasks" in doc["paths"] and "/api/v1/events" in doc["paths"]


async def test_openapi_declares_the_token_and_every_error_shape(api: httpx.AsyncClient) -> None:
    doc = (await api.get("http://test/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path.startswith("/api/"):
                assert "security" not in operation, (method, path)  # the document's bearer applies
                assert "401" in responses, (method, path)
                if operation.get("parameters") or operation.get("requestBody"):
                    assert {"400", "422"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"] == error_ref, (method, path, status)
    assert "404" in doc["paths"]["/api/v1/tasks/{task_id}"]["get"]["responses"]
    assert "409" in doc["paths"]["/api/v1/tasks/{task_id}/cancel"]["post"]["responses"]
    assert "HTTPValidationError" not in json.dumps(doc)
    # what the document says is what an error is
    shape = doc["components"]["schemas"]["ErrorBody"]
    assert shape["required"] == ["error"]
    invalid = (await api.post("/tasks", json={})).json()
    assert set(invalid) == {"error"} and {"code", "message", "details"} == set(invalid["error"])


async def test_a_request_without_the_token_is_401_before_its_body_is_read(api: httpx.AsyncClient) -> None:
    for body in (b"{not json", b'{"prompt": ""}', b'{"prompt": "x", "model": "demo"}'):
        response = await api.post("/tasks", content=body,
                                  headers={"Authorization": "", "Content-Type": "application/json"})
        assert response.status_code == 401, response.text  # a malformed body answered 422
        assert error_code(response) == "unauthorized" and response.headers["www-authenticate"] == "Bearer"
    assert (await api.get("/tasks")).json() == []


async def test_docs_work_offline(api: httpx.AsyncClient) -> None:
    """/docs loads Swagger UI from files inside the package, not from a CDN."""
    page = await api.get("http://test/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 3
    for asset in assets:
        response = await api.get("http://test" + asset, headers={"Authorization": ""})
        assert response.status_code == 200 and len(response.content) > 500, asset
    assert (await api.get("http://test/redoc")).status_code == 404  # it would load from a CDN


async def test_launch_with_limits_and_fallbacks_over_http(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.register_model("m", Script(steps=[("todoread", {})] * 3).model())
    runtime.register_model("backup", Script().model("backup"))
    response = await api.post("/tasks", json={"prompt": "x", "model": "m", "limits": {"tool_calls": 1},
                                              "fallback_models": ["backup"]})
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["fallback_models"] == ["backup"] and task["limits"] == {"tool_calls": 1}
    done = (await api.get(f"/tasks/{task['id']}/output", params={"wait": "true", "timeout": 20})).json()
    assert done["status"] == "failed" and done["end_reason"] == "budget"


async def test_approvals_over_http(tmp_path: Path) -> None:
    from bgagents.settings import ProfileSettings

    from .conftest import make_settings

    settings = make_settings(tmp_path, agents={"careful": ProfileSettings(permissions={"bash": "ask"})})
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("bash", {"command": "echo hi"}), ("bash", {"command": "echo no"})])
                          .model())
        app = create_app(rt, TOKEN, manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            task = (await api.post("/tasks", json={"prompt": "x", "model": "m", "agent": "careful"})).json()
            decided = []
            for decision in ("approve", "deny"):
                while not (pending := (await api.get("/approvals")).json()):
                    await asyncio.sleep(0.01)
                item = pending[0]
                assert item["task_id"] == task["id"] and item["tool"] == "bash" and item["status"] == "pending"
                assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "waiting"
                response = await api.post(f"/approvals/{item['id']}", json={"decision": decision, "reason": "r"})
                expected = {"approve": "approved", "deny": "denied"}[decision]
                assert response.status_code == 200 and response.json()["status"] == expected
                decided.append(item["id"])
            done = (await api.get(f"/tasks/{task['id']}/output", params={"wait": "true", "timeout": 20})).json()
            assert done["status"] == "completed"
            every = (await api.get("/approvals", params={"status": "all"})).json()
            assert [a["status"] for a in every] == ["approved", "denied"]
            # bad input: unknown id, a bad decision, deciding twice, an unknown status filter
            assert (await api.post("/approvals/nope", json={"decision": "approve"})).status_code == 404
            bad = await api.post(f"/approvals/{decided[0]}", json={"decision": "maybe"})
            assert bad.status_code == 422 and error_code(bad) == "invalid_request"
            twice = await api.post(f"/approvals/{decided[0]}", json={"decision": "deny"})
            assert twice.status_code == 409 and error_code(twice)
            assert (await api.get("/approvals", params={"status": "odd"})).status_code == 422


async def test_long_polls_answer_503_when_the_server_stops(runtime: Runtime) -> None:
    """`bgagents chat` (responses?wait) and `output --wait` are told at once that the server is stopping."""
    from bgagents.core.schema import Task

    app = create_app(runtime, TOKEN, manage_runtime=False)
    gate = asyncio.Event()

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("late")])

    runtime.register_model("slow", FunctionModel(slow, model_name="slow"))
    task: Task = await runtime.launch("takes a while", model="slow")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        polls = [asyncio.ensure_future(api.get("/conversations/default/responses", params={"wait": 60})),
                 asyncio.ensure_future(api.get(f"/tasks/{task.id}/output", params={"wait": True, "timeout": 60}))]
        done, _ = await asyncio.wait(polls, timeout=0.3)
        assert not done  # both wait
        app.state.stopping.set()
        answers = await asyncio.wait_for(asyncio.gather(*polls), 5)
    for answer in answers:
        assert answer.status_code == 503 and error_code(answer) == "server_stopping", answer.text
    gate.set()
