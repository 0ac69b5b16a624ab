"""The dashboard's server side in-process: login by URL and form, the cookie and its CSRF guard, the
bearer token unchanged, the paged task tree. (The page itself is tested in a real browser in
test_dashboard_browser.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bgagents import Runtime, Settings
from bgagents.cli.client import dashboard_url
from bgagents.server import create_app
from bgagents.server.auth import CSRF_HEADER, SESSION_COOKIE, csrf_token

from .conftest import ServerProcess, make_settings, seed_tasks

TOKEN = "dash-token"
BASE = "http://test"


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (no bearer token) of an app on SQLite."""
    async with Runtime(make_settings(tmp_path)) as rt:
        app = create_app(rt, TOKEN, manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield client


async def log_in(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert client.cookies.get(SESSION_COOKIE)  # kept, as a browser keeps it


async def test_token_in_url_sets_a_strict_httponly_cookie_and_redirects_to_a_clean_url(page: httpx.AsyncClient) -> None:
    response = await page.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie
    shell = await page.get("/")
    assert shell.status_code == 200 and "/static/app.js" in shell.text
    assert csrf_token(TOKEN) in shell.text and TOKEN not in shell.text


async def test_without_a_session_the_page_asks_for_the_token_and_refuses_a_wrong_one(page: httpx.AsyncClient) -> None:
    ask = await page.get("/")
    assert ask.status_code == 200 and 'name="token"' in ask.text and "app.js" not in ask.text
    wrong = await page.get("/?token=nope")
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    assert SESSION_COOKIE not in wrong.cookies
    form_wrong = await page.post("/login", data={"token": "nope"})
    assert form_wrong.status_code == 401 and SESSION_COOKIE not in form_wrong.cookies
    form = await page.post("/login", data={"token": TOKEN}, headers={"Origin": BASE})
    assert form.status_code == 303 and SESSION_COOKIE in form.cookies
    cross = await page.post("/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and SESSION_COOKIE not in cross.cookies


async def test_the_cookie_reads_the_api_but_changes_need_the_csrf_token_and_our_origin(page: httpx.AsyncClient) -> None:
    assert (await page.get("/api/v1/tasks")).status_code == 401
    await log_in(page)
    assert (await page.get("/api/v1/tasks")).status_code == 200
    body = {"prompt": "hello", "model": "nope:unknown"}
    no_header = await page.post("/api/v1/tasks", json=body)
    assert no_header.status_code == 403 and no_header.json()["error"]["code"] == "forbidden"
    wrong = await page.post("/api/v1/tasks", json=body, headers={CSRF_HEADER: "guess"})
    assert wrong.status_code == 403
    other_site = await page.post("/api/v1/tasks", json=body,
                                 headers={CSRF_HEADER: csrf_token(TOKEN), "Origin": "http://evil.example"})
    assert other_site.status_code == 403
    # with both, the request reaches the route (which refuses the unknown model as bad input)
    ours = await page.post("/api/v1/tasks", json=body, headers={CSRF_HEADER: csrf_token(TOKEN), "Origin": BASE})
    assert ours.status_code in (400, 422) and ours.json()["error"]["code"] != "forbidden"


async def test_the_bearer_token_works_as_before_and_a_wrong_one_is_not_saved_by_a_cookie(
        page: httpx.AsyncClient) -> None:
    assert (await page.get("/api/v1/tasks", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
    await log_in(page)
    assert (await page.get("/api/v1/tasks", headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_a_changed_token_ends_the_session(tmp_path: Path) -> None:
    async with Runtime(make_settings(tmp_path)) as rt:
        old = create_app(rt, TOKEN, manage_runtime=False)
        new = create_app(rt, "another-token", manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=old), base_url=BASE) as client:
            await log_in(client)
            cookie = client.cookies[SESSION_COOKIE]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=new), base_url=BASE,
                                     cookies={SESSION_COOKIE: cookie}) as client:
            assert (await client.get("/api/v1/tasks")).status_code == 401
            assert 'name="token"' in (await client.get("/")).text


async def test_task_pages_nest_children_and_filter_flat(settings: Settings) -> None:
    seed_tasks(settings, 120, children_of_first=3)
    async with Runtime(settings) as rt:
        app = create_app(rt, TOKEN, manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            first = (await client.get("/dashboard/api/tasks", params={"limit": 50})).json()
            assert first["total"] == 120 and first["nested"] and len(first["tasks"]) == 50
            assert first["tasks"][0]["name"] == "seeded-119" and first["children"] == []
            last = (await client.get("/dashboard/api/tasks", params={"offset": 100, "limit": 50})).json()
            assert [t["name"] for t in last["tasks"]][-1] == "seeded-0"
            assert [c["name"] for c in last["children"]] == ["seeded-child-0", "seeded-child-1", "seeded-child-2"]
            assert last["tasks"][-1]["subtree"]["tasks"] == 4  # a row shows its whole tree's usage
            assert last["tasks"][0]["subtree"]["tasks"] == 1
            found = (await client.get("/dashboard/api/tasks", params={"q": "NUMBER 11"})).json()
            assert not found["nested"] and {t["name"] for t in found["tasks"]} == {
                "seeded-11", *(f"seeded-{i}" for i in range(110, 120))}
            literal = (await client.get("/dashboard/api/tasks", params={"q": "%"})).json()
            assert literal["total"] == 0  # a wildcard is searched for literally
            kids = (await client.get("/dashboard/api/tasks", params={"q": "child"})).json()
            assert kids["total"] == 3 and all(t["parent_id"] for t in kids["tasks"])
            done = (await client.get("/dashboard/api/tasks", params={"status": "completed", "limit": 1})).json()
            assert done["total"] == 123
            bad = await client.get("/dashboard/api/tasks", params={"status": "nope"})
            assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("unknown status")
            state = (await client.get("/dashboard/api/state")).json()
            assert state["last_event_seq"] == 0 and state["approvals"] == 0 and "general" in state["agents"]


def test_dashboard_url_carries_the_token_escaped() -> None:
    assert dashboard_url("http://127.0.0.1:8321/", "a+b/c") == "http://127.0.0.1:8321/?token=a%2Bb%2Fc"


def test_serve_logs_the_dashboard_address_without_the_token_and_open_opens_it_logged_in(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    server.start()
    address = f"{server.url}/?token={server.token}"
    log = server.log_text()  # not a terminal: the address without the token
    assert f"dashboard: {server.url}/ ('bgagents open' logs in)" in log and server.token not in log
    opened = server.cli("open", "--no-browser")
    assert opened.returncode == 0 and opened.stdout.strip() == address
    got = server.home / "browser-got"
    browser = server.home / "browser"
    browser.write_text(f"#!/bin/sh\nprintf %s \"$1\" > {got}\n")
    browser.chmod(0o755)
    server.env["BROWSER"] = str(browser)
    assert server.cli("open").returncode == 0
    deadline = time.monotonic() + 30
    while not got.exists() and time.monotonic() < deadline:  # the browser command runs in the background
        time.sleep(0.05)
    assert got.read_text() == address


async def test_the_page_knows_what_a_waiting_task_waits_for_and_whose_approvals_it_shows(tmp_path: Path) -> None:
    from bgagents.settings import ProfileSettings

    from .conftest import Script

    settings = make_settings(tmp_path, agents={"careful": ProfileSettings(permissions={"bash": "ask"})})
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("bash", {"command": "echo hi"})]).model())
        asks = await rt.launch("careful work", model="m", agent="careful", name="asks-first")
        plain = await rt.launch("plain work", model="m")
        await rt.wait(plain.id, timeout=20)
        while not (pending := await rt.approvals()):
            await asyncio.sleep(0.01)
        app = create_app(rt, TOKEN, manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            page = (await api.get("/dashboard/api/tasks")).json()
            assert page["waiting"] == {asks.id: [{"id": pending[0].id, "tool": "bash"}]}
            inbox = (await api.get("/dashboard/api/approvals")).json()
            assert [a["id"] for a in inbox["approvals"]] == [pending[0].id]
            assert inbox["tasks"] == {asks.id: {"name": "asks-first", "status": "waiting", "agent": "careful"}}
            await rt.decide(pending[0].id, "approve")
            await rt.wait(asks.id, timeout=20)
            assert (await api.get("/dashboard/api/tasks")).json()["waiting"] == {}
            decided = (await api.get("/dashboard/api/approvals", params={"status": "all"})).json()
            assert decided["tasks"][asks.id]["status"] == "completed"
