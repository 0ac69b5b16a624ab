"""Security headers: a Content-Security-Policy on every page, no framing, no sniffing; workspace files served so
they never run as the dashboard's origin; logging out needs the CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bgagents import Runtime
from bgagents.server import create_app
from bgagents.server.auth import SESSION_COOKIE, csrf_token, session_value

from .conftest import make_settings

TOKEN = "secret-token"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(make_settings(tmp_path)) as rt:
        yield rt


@pytest.fixture
async def web(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A browser's view: no Authorization header; log in with the cookie where needed."""
    app = create_app(runtime, TOKEN, manage_runtime=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


def logged_in(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.cookies.set(SESSION_COOKIE, session_value(TOKEN))
    return client


async def test_every_response_forbids_framing_and_sniffing(web: httpx.AsyncClient) -> None:
    responses = {"login page": await web.get("/"), "wrong token": await web.get("/?token=nope"),
                 "401": await web.get("/api/v1/tasks"), "static": await web.get("/static/app.js"),
                 "docs": await web.get("/docs"), "health": await web.get("/healthz"),
                 "api": await web.get("/api/v1/tasks", headers={"Authorization": f"Bearer {TOKEN}"}),
                 "404": await web.get("/nothing-here")}
    logged_in(web)
    responses["dashboard"] = await web.get("/")
    for name, response in responses.items():
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] == "same-origin", name
        assert "frame-ancestors 'none'" in headers["content-security-policy"], name
    for name in ("login page", "dashboard", "docs"):
        policy = responses[name].headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        assert "default-src 'self'" in policy and "object-src 'none'" in policy, name
    assert "'sha256-" in responses["dashboard"].headers["content-security-policy"]  # its import map, by hash
    assert responses["api"].headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize(("name", "body"), [
    ("page.html", b"<script>fetch('/api/v1/tasks')</script>"),
    ("image.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
    ("data.xml", b"<?xml version='1.0'?><x/>"),
])
async def test_workspace_files_never_run_as_the_dashboards_origin(web: httpx.AsyncClient, runtime: Runtime,
                                                                  name: str, body: bytes) -> None:
    (runtime.settings.workspace_path / name).write_bytes(body)
    response = await logged_in(web).get(f"/api/v1/files/{name}")
    assert response.status_code == 200 and response.content == body
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["content-security-policy"].startswith("sandbox;")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_image_keeps_its_type_and_stays_a_sandboxed_download(web: httpx.AsyncClient,
                                                                       runtime: Runtime) -> None:
    (runtime.settings.workspace_path / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    response = await logged_in(web).get("/api/v1/files/chart.png")
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-security-policy"].startswith("sandbox;")


async def test_logout_needs_the_csrf_token(web: httpx.AsyncClient) -> None:
    logged_in(web)
    for refused in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf_token(TOKEN), "Origin": "http://evil"}):
        response = await web.post("/logout", headers=refused)
        assert response.status_code == 403 and "set-cookie" not in response.headers, refused
    assert (await web.get("/")).text.count("csrf-token") == 1  # still logged in: the dashboard page
    response = await web.post("/logout", headers={"X-CSRF-Token": csrf_token(TOKEN)})
    assert response.status_code == 303 and f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    logged_in(web)
    form = await web.post("/logout", content=f"csrf_token={csrf_token(TOKEN)}",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 303
