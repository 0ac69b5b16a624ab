"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against real `bgagents serve`
processes on the offline `demo` model. One browser and one server for the module; the 2,000-task and
restart test has its own server.

Set DASHBOARD_SCREENSHOTS=DIR to keep a screenshot of each page at 1280 and 390 pixels wide.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgagents import Settings

from .conftest import ROOT, ServerProcess, free_port, seed_tasks
from .test_worktrees import git, repo

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")
expect = sync_api.expect
pytestmark = pytest.mark.slow  # real processes: a server and Chromium
Page = sync_api.Page

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TOKEN = "test-token"
START_TIMEOUT = 90  # a server process on a loaded machine
CAREFUL_AGENT = """
[agents.careful]
description = "asks before it writes"
permissions = { write = "ask" }
"""
expect.set_options(timeout=20_000)  # a loaded CI machine; every wait is on a condition, never a sleep


def make_server(home: Path, **env: str) -> ServerProcess:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    full_env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": TOKEN, "BGAGENTS_URL": f"http://127.0.0.1:{port}",
                     "BGAGENTS_MODEL": "demo", "BGAGENTS_DEMO_PAUSE": "0.05", "PYTHONPATH": str(ROOT), **env})
    return ServerProcess(home=home, env=full_env, port=port, token=TOKEN)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("dash")
    (home / "config.toml").write_text(CAREFUL_AGENT)
    repo(home / "workspace")  # a git repository, for isolated tasks
    srv = make_server(home)
    srv.start(timeout=START_TIMEOUT)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def csp_violations(pg: Page) -> list[str]:
    """What Chromium reports the page's Content-Security-Policy blocked, from now on."""
    seen: list[str] = []
    pg.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Page]:
    """A fresh browser context, logged in; the test fails if the page's policy blocked anything of its own."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    violations = csp_violations(pg)
    pg.goto(f"{server.url}/?token={TOKEN}")
    expect(pg.locator("#link-status")).to_have_text("live")
    yield pg
    context.close()
    assert violations == []


def shot(page: Page, name: str) -> None:
    """With DASHBOARD_SCREENSHOTS set, a full-page screenshot at 1280 and at 390 pixels wide."""
    where = os.environ.get("DASHBOARD_SCREENSHOTS")
    if not where:
        return
    Path(where).mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)  # let the layout settle before the picture (not a wait for state)
        page.screenshot(path=f"{where}/{name}-{width}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def wait_task(server: ServerProcess, task_id: str) -> dict[str, Any]:
    with server.client() as c:
        out: dict[str, Any] = c.get(f"/tasks/{task_id}/output", params={"wait": True, "timeout": 60}).json()
    assert out["finished"], out
    return out


def test_login_by_url_and_by_form_and_a_wrong_token_is_refused(browser: Any, server: ServerProcess) -> None:
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(f"{server.url}/?token=wrong")
    expect(pg.get_by_role("alert")).to_contain_text("Wrong token")
    assert not context.cookies()
    shot(pg, "login-wrong")
    pg.goto(server.url + "/")
    pg.get_by_label("Token").fill("still-wrong")
    pg.get_by_role("button", name="Log in").click()
    expect(pg.get_by_role("alert")).to_contain_text("Wrong token")
    pg.get_by_label("Token").fill(TOKEN)
    pg.get_by_role("button", name="Log in").click()
    expect(pg.get_by_role("heading", name="Tasks")).to_be_visible()
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    context.close()

    context = browser.new_context()
    pg = context.new_page()
    pg.goto(f"{server.url}/?token={TOKEN}")
    expect(pg.get_by_role("heading", name="Tasks")).to_be_visible()
    assert pg.url == server.url + "/"  # the token left the address bar
    expect(pg.locator("#link-status")).to_have_text("live")
    context.close()


def test_a_task_from_the_form_shows_tool_calls_live_then_steer_approve_and_cancel(
        page: Page, server: ServerProcess) -> None:
    page.get_by_text("New task").click()
    page.get_by_label("Prompt").fill("Survey the workspace carefully")
    page.get_by_label("Agent").select_option("careful")
    page.get_by_label("Model").fill("demo")
    page.get_by_label("Priority").fill("3")
    page.get_by_role("button", name="Launch").click()
    notice = page.locator(".new-task .notice-ok")
    expect(notice).to_contain_text("Launched")
    task_id = re.search(r"\((bg_\w+)\)", notice.inner_text()).group(1)  # type: ignore[union-attr]
    row = page.locator(f'tr[data-id="{task_id}"]')
    expect(row).to_be_visible()
    shot(page, "tasks")
    row.locator(".name a").click()

    # the careful agent stops before its `write` for a person: its earlier tool calls are already there
    expect(page.locator(".title-row .status")).to_have_text("waiting")
    expect(page.locator(".transcript .live-dot")).to_have_text("waiting for a person to allow write (above)…")
    expect(page.locator('.msg-tool[data-tool="bash"]')).to_be_visible()
    expect(page.locator('.msg-tool[data-tool="write"]')).to_contain_text("demo-notes/")
    expect(page.locator("#approvals-count")).to_have_text("1")
    with server.client() as c:
        assert c.get(f"/tasks/{task_id}").json()["priority"] == 3

    page.get_by_label("Steer (reaches the agent before its next request)").fill("also mention the tests")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".actions .notice-ok")).to_contain_text("Sent")
    shot(page, "task-waiting")

    # the row says what it waits for
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Tasks").click()
    expect(row.locator(".waits")).to_have_text("waits for approval: write")
    shot(page, "tasks-waiting")
    with server.client() as c:
        name = c.get(f"/tasks/{task_id}").json()["name"]
    page.get_by_role("link", name=re.compile("Approvals")).click()
    card = page.locator("article.approval").first
    expect(card).to_contain_text("write")
    expect(card.locator(".task-name")).to_have_text(name)  # the inbox names the task
    card.get_by_label("Reason").fill("notes are fine")
    shot(page, "approvals")
    card.get_by_role("button", name="Approve").click()
    with server.client() as c:
        decided = [a for a in c.get("/approvals", params={"status": "all"}).json() if a["task_id"] == task_id]
    assert decided[0]["status"] == "approved" and decided[0]["decision_reason"] == "notes are fine"

    page.goto(f"{server.url}/#/task/{task_id}")
    # the steering message reached the agent as a user message after the approved write
    expect(page.locator(".msg-user", has_text="also mention the tests")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".title-row .status")).to_have_text("cancelled")
    expect(page.locator(".actions .notice-ok").first).to_contain_text("Cancelled")
    with server.client() as c:
        assert c.get(f"/tasks/{task_id}").json()["end_reason"] == "user"


def test_fork_at_a_chosen_message_with_a_model_and_errors_show_in_the_page(page: Page, server: ServerProcess) -> None:
    with server.client() as c:
        task = c.post("/tasks", json={"prompt": "Draft release notes", "model": "demo"}).json()
    wait_task(server, task["id"])
    page.goto(f"{server.url}/#/task/{task['id']}")
    expect(page.locator(".title-row .status")).to_have_text("completed")
    expect(page.get_by_role("region", name="Result")).to_contain_text("Finished")
    shot(page, "task-completed")

    expect(page.get_by_role("button", name="Send")).to_have_count(0)  # a finished task offers resume, not steer
    page.get_by_placeholder("What next?").fill("one more thing")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".actions .notice-ok")).to_contain_text("Resumed")
    wait_task(server, task["id"])

    page.get_by_label("Fork (a new task on a copy of this session)").fill("try it again")
    page.get_by_label("Fork model").fill("no-such-provider:model")
    page.get_by_role("button", name="Fork").click()
    expect(page.locator(".fork .notice-error")).to_contain_text("no-such-provider")

    page.get_by_label("Fork at").select_option("3")
    page.get_by_label("Fork model").fill("demo")
    page.get_by_role("button", name="Fork").click()
    link = page.locator(".fork .notice-ok a")
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(rf"#/task/(?!{task['id']})bg_"))
    fork_id = page.url.rsplit("/", 1)[1]
    with server.client() as c:
        fork = c.get(f"/tasks/{fork_id}").json()
    assert fork["forked_from"]["task_id"] == task["id"] and fork["forked_from"]["at"] == 3
    expect(page.locator(".title-row .status")).to_have_text("completed")


def test_a_chat_with_a_background_agent_whose_result_comes_back(page: Page, server: ServerProcess) -> None:
    page.get_by_role("link", name="Chat").click()
    box = page.get_by_label("Message")
    box.fill("research the history of tea")
    box.press("Enter")
    expect(page.locator(".bubble-person", has_text="research the history of tea")).to_be_visible()
    expect(page.locator(".bubble-agent", has_text="background agent is on it")).to_be_visible()
    result = page.locator('[data-kind="agent-result"]')
    expect(result).to_contain_text("Finished")
    expect(result.locator(".status")).to_have_text("completed")
    answer = page.locator(".bubble-agent", has_text="reports")
    expect(answer).to_be_visible()
    shot(page, "chat")
    page.set_viewport_size({"width": 390, "height": 640})  # a phone: the log is longer than the screen
    for n in range(3):
        box.fill(f"hello number {n}")
        box.press("Enter")
        expect(page.locator(".bubble-agent", has_text=f"You said 'hello number {n}'")).to_be_visible()
        newest = page.locator(".chat-log .bubble").last.bounding_box()
        composer = page.locator(".chat-form").bounding_box()
        assert newest is not None and composer is not None
        assert newest["y"] >= 0 and newest["y"] + newest["height"] <= composer["y"] + 0.5, (newest, composer)
    shot(page, "chat-long")
    page.set_viewport_size({"width": 1280, "height": 900})
    href = answer.locator(".files a").first.get_attribute("href")
    assert href and href.startswith("/api/v1/files/demo-notes/")
    assert page.request.get(server.url + href).ok  # the session cookie downloads it
    assert page.request.post(f"{server.url}/api/v1/conversations/default/clear").status == 403  # no CSRF header
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Clear").click()
    expect(page.locator(".chat .notice-ok")).to_contain_text("Cleared")


@pytest.fixture
def big_server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = make_server(tmp_path / "big")
    seed_tasks(Settings(home=srv.home), 2000)
    srv.start(timeout=START_TIMEOUT)
    yield srv
    srv.stop()


def test_two_thousand_tasks_load_and_the_page_reconnects_after_a_restart(browser: Any,
                                                                         big_server: ServerProcess) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.goto(f"{big_server.url}/?token={TOKEN}")
    expect(pg.locator(".pager")).to_contain_text("1–50 of 2000")
    expect(pg.locator("tr.task-row")).to_have_count(50)
    pg.get_by_role("button", name="Older →").click()
    expect(pg.locator(".pager")).to_contain_text("51–100 of 2000")
    pg.get_by_label("Search tasks").fill("number 1999")
    expect(pg.locator("tr.task-row")).to_have_count(1)
    pg.get_by_label("Search tasks").fill("")
    pg.get_by_role("button", name="running").click()
    expect(pg.locator(".empty")).to_contain_text("No task matches")
    pg.get_by_role("button", name="all").click()
    expect(pg.locator(".pager")).to_contain_text("1–50 of 2000")
    expect(pg.locator("#link-status")).to_have_text("live")

    started = time.monotonic()
    big_server.stop()  # with this tab following the event stream: at once, and the page says so at once
    assert time.monotonic() - started < 2.0
    expect(pg.locator("#link-status")).to_have_text("server stopped", timeout=1000)
    expect(pg.locator("#down-banner")).to_contain_text("The bgagents server stopped")
    shot(pg, "server-stopped")
    big_server.start(timeout=START_TIMEOUT)
    expect(pg.locator("#link-status")).to_have_text("live")
    expect(pg.locator("#down-banner")).to_have_count(0)
    with httpx.Client(base_url=big_server.url + "/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        task = c.post("/tasks", json={"prompt": "after the restart", "model": "demo"}).json()
    row = pg.locator(f'tr[data-id="{task["id"]}"]')
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("completed")
    expect(pg.locator(".pager")).to_contain_text("of 2001")
    context.close()


def test_pages_run_under_their_policy_and_a_workspace_page_cannot_run(page: Page, server: ServerProcess) -> None:
    """The dashboard and /docs work under their Content-Security-Policy; an agent's HTML file, framed by the
    dashboard or opened, never runs as the dashboard's origin (it would read the API with the cookie)."""
    (server.home / "workspace" / "evil.html").write_text(
        "<script>fetch('/api/v1/tasks').then(r => r.text()).then(t => top.postMessage('STOLEN ' + t, '*'))"
        "</script>")
    page.evaluate("""() => { window.got = []; addEventListener('message', e => window.got.push(e.data));
                             const f = document.createElement('iframe'); f.src = '/api/v1/files/evil.html';
                             document.body.append(f); }""")
    with page.expect_download() as download:  # opened, it is a download, not a page
        page.evaluate("() => { const a = document.createElement('a'); a.href = '/api/v1/files/evil.html'; "
                      "document.body.append(a); a.click(); }")
    assert download.value.suggested_filename == "evil.html"
    page.wait_for_timeout(500)  # time for a script that must not run (nothing to wait for if it does not)
    assert page.evaluate("window.got") == []
    shot(page, "dashboard-csp")
    docs = page.context.new_page()
    violations = csp_violations(docs)
    docs.goto(server.url + "/docs")
    expect(docs.locator(".swagger-ui .info .title")).to_contain_text("bgagents")
    expect(docs.locator(".opblock").first).to_be_visible()
    shot(docs, "docs-csp")
    assert violations == []


def test_an_isolated_task_shows_its_branch_and_changes_then_merges_or_discards(
        page: Page, server: ServerProcess) -> None:
    with server.client() as c:
        kept = c.post("/tasks", json={"prompt": "Write release notes", "isolation": "worktree"}).json()
        dropped = c.post("/tasks", json={"prompt": "Write a draft", "isolation": "worktree"}).json()
    for task in (kept, dropped):
        wait_task(server, task["id"])
    page.goto(f"{server.url}/#/task/{kept['id']}")
    panel = page.get_by_role("region", name="Worktree")
    expect(panel.locator("#worktree-branch")).to_have_text(re.compile(r"^bgagents/.*" + kept["id"].removeprefix("bg_")))
    expect(panel.locator("#worktree-state")).to_have_text("active")
    expect(panel.locator("#worktree-stat")).to_contain_text("demo-notes/")
    panel.get_by_role("button", name="Diff").click()
    expect(panel.locator("#worktree-patch")).to_contain_text("+++ b/demo-notes/")
    shot(page, "task-worktree")
    page.once("dialog", lambda d: d.accept())
    panel.get_by_role("button", name="Merge").click()
    expect(panel.locator(".notice-ok")).to_contain_text("Merged")
    expect(panel.locator("#worktree-state")).to_have_text("merged")
    expect(panel.get_by_role("button", name="Discard")).to_be_disabled()
    assert "bgagents: " in git(server.home / "workspace", "log", "--oneline")

    page.goto(f"{server.url}/#/task/{dropped['id']}")
    panel = page.get_by_role("region", name="Worktree")
    page.once("dialog", lambda d: d.accept())
    panel.get_by_role("button", name="Discard").click()
    expect(panel.locator("#worktree-state")).to_have_text("discarded")
    with server.client() as c:
        assert c.get(f"/tasks/{dropped['id']}").json()["worktree"]["state"] == "discarded"


def test_usage_and_schedules_pages(page: Page, server: ServerProcess) -> None:
    with server.client() as c:
        wait_task(server, c.post("/tasks", json={"prompt": "Count things"}).json()["id"])
        by_model = {g["key"]: g for g in c.get("/usage", params={"by": "model"}).json()}
    page.get_by_role("link", name="Usage").click()
    row = page.locator('tr.usage-row[data-key="demo"]')
    expect(row).to_contain_text(str(by_model["demo"]["tasks"]))
    expect(row.locator("td").nth(2)).to_have_text(str(by_model["demo"]["requests"]))
    shot(page, "usage")
    page.get_by_role("button", name="by agent").click()
    expect(page.locator('tr.usage-row[data-key="general"]')).to_be_visible()
    page.get_by_label("Period").select_option("")
    expect(page.locator('tr.usage-row[data-key="general"]')).to_be_visible()

    page.get_by_role("link", name="Schedules").click()
    expect(page.locator(".schedules .empty")).to_contain_text("No schedules yet")
    page.get_by_text("New schedule").click()
    page.get_by_label("Name").fill("morning")
    page.get_by_label("When").fill("not a cron")
    page.get_by_label("Prompt").fill("Summarise the night")
    page.get_by_role("button", name="Add").click()
    expect(page.locator(".new-task .notice-error")).to_contain_text("not a cron expression")
    page.get_by_label("When").fill("0 8 * * *")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Add").click()
    row = page.locator('tr.schedule-row[data-name="morning"]')
    expect(row).to_contain_text("0 8 * * *")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row.locator(".schedule-state")).to_have_text("active")
    row.get_by_role("button", name="Run now").click()
    expect(row.locator(".notice-ok")).to_contain_text("Ran morning: bg_")
    expect(row.locator(".col-last a")).to_have_text(re.compile(r"^bg_"))
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".schedule-state")).to_have_text("paused")
    shot(page, "schedules")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Remove").click()
    expect(row).to_have_count(0)
    with server.client() as c:
        assert c.get("/schedules").json() == []
