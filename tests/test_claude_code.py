"""The Claude Code runner against the real Claude Code CLI (bundled in claude-agent-sdk's wheel), offline:
the CLI talks to a fake Anthropic endpoint of our own (tests/fake_anthropic.py)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bgagents import Runtime, Settings
from tests.conftest import make_settings
from tests.fake_anthropic import FakeAnthropic, Reply, Steps, tool, tool_results, user_texts

sdk = pytest.importorskip("claude_agent_sdk", reason="the Claude Code runner needs the bgagents[claude] extra")
CLI = Path(sdk.__file__).parent / "_bundled" / "claude"
if not CLI.exists():
    pytest.skip(f"claude-agent-sdk has no bundled Claude Code CLI at {CLI}", allow_module_level=True)

MODEL = "claude-code:sonnet"
pytestmark = pytest.mark.slow  # real processes: the Claude Code CLI


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def claude_env(fake: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """The CLI on the fake endpoint with a private HOME (its sessions live there); a fresh script per test."""
    fake.requests.clear()
    fake.script = Steps()
    home = tmp_path / "claude-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    return fake


@pytest.fixture
async def rt(claude_env: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(make_settings(tmp_path)) as runtime:
        yield runtime


def claude_children() -> list[int]:
    """This process's Claude Code CLI children still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid, state = int(stat.rsplit(")", 1)[1].split()[1]), stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and state != "Z" and b"_bundled/claude" in cmdline:
            found.append(int(entry.name))
    return found


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_progress_transcript_and_result(rt: Runtime, claude_env: FakeAnthropic, tmp_path: Path) -> None:
    claude_env.script = Steps([
        tool("TaskCreate", subject="write the note", description="a note"),
        tool("TaskUpdate", taskId="1", status="in_progress"),
        tool("Bash", command="echo hello > note.txt", description="Write the note"),
        tool("TaskUpdate", taskId="1", status="completed"),
    ], answer="The note is written.")
    task = await rt.launch("write a note", model=MODEL)
    assert task.concurrency_key == MODEL
    done = await rt.wait(task.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.result is not None and done.result.text == "The note is written."
    assert (tmp_path / "ws" / "note.txt").read_text().strip() == "hello"
    p = done.progress
    assert p.requests == 5 and p.tool_calls == 4
    assert p.last_tool == "TaskUpdate"
    assert p.todos.total == 1 and p.todos.done == 1
    assert p.input_tokens == 500 and p.output_tokens == 100  # the fake's usage: 100 in, 20 out per request
    assert p.cost_usd is not None and p.cost_usd > 0
    assert p.last_message == "The note is written."
    events = [e async for e in _events(rt, task.id)]
    calls = [e.data["args"] for e in events if e.type == "task.tool_call"]
    assert "Bash: echo hello > note.txt" in calls
    assert any(e.type == "task.todos" for e in events)
    session = next(e for e in events if e.type == "task.session")
    assert session.data["runner"] == "claude-code" and session.data["session_id"]
    entries = await rt.transcript(task.id)
    roles = [(e.role, e.tool_name) for e in entries]
    assert roles[0] == ("user", None) and entries[0].content == "write a note"
    assert ("tool_call", "Bash") in roles and ("tool_result", "Bash") in roles
    assert roles[-1] == ("assistant", None) and entries[-1].content == "The note is written."
    assert claude_children() == []


async def _events(rt: Runtime, task_id: str) -> AsyncIterator[Any]:
    for event in await rt.store.events_since(0, task_id=task_id, limit=10_000):
        yield event


def texts_of(body: dict[str, Any]) -> str:
    return "\n".join(user_texts(body))


async def test_resume_continues_the_same_session(rt: Runtime, claude_env: FakeAnthropic) -> None:
    claude_env.script = lambda body: Reply(text=f"answer {len(user_texts(body))}")
    task = await rt.launch("first question", model=MODEL)
    first = await rt.wait(task.id, timeout=60)
    assert first.status == "completed", first.error
    await rt.resume(task.id, "second question")
    second = await rt.wait(task.id, timeout=60)
    assert second.status == "completed", second.error
    last = claude_env.main_requests()[-1]
    assert "first question" in texts_of(last) and "second question" in texts_of(last)
    assert any("answer" in str(m.get("content")) for m in last["messages"] if m["role"] == "assistant")
    sessions = {e.data["session_id"] for e in await rt.store.events_since(0, task_id=task.id)
                if e.type == "task.session"}
    assert len(sessions) == 1  # both turns ran in one Claude Code session
    assert [e.content for e in await rt.transcript(task.id) if e.role == "user"] == ["first question",
                                                                                  "second question"]
    assert second.progress.requests == 2


async def test_fork_whole_and_at_an_earlier_message(rt: Runtime, claude_env: FakeAnthropic) -> None:
    def script(body: dict[str, Any]) -> Reply:
        if not tool_results(body):
            return tool("Bash", command="echo one", description="Say one")
        return Reply(text="source answer" if "branch" not in texts_of(body) else "branch answer")

    claude_env.script = script
    source = await rt.launch("source prompt", model=MODEL)
    assert (await rt.wait(source.id, timeout=60)).status == "completed"
    rows = await rt.store.message_rows(source.id)
    assert len(rows) == 4  # prompt, tool call, tool result, answer

    whole = await rt.fork(source.id, "branch whole")
    assert (await rt.wait(whole.id, timeout=60)).status == "completed"
    seen = claude_env.main_requests()[-1]
    assert "source prompt" in texts_of(seen) and "branch whole" in texts_of(seen)
    assert "source answer" in str(seen["messages"])

    at = await rt.fork(source.id, "branch early", at=3)  # before the source's answer
    done = await rt.wait(at.id, timeout=60)
    assert done.status == "completed", done.error
    seen = claude_env.main_requests()[-1]
    assert "source prompt" in texts_of(seen) and "branch early" in texts_of(seen)
    assert "source answer" not in str(seen["messages"]) and len(tool_results(seen)) == 1

    # the source's own session is untouched: resuming it does not see the branches
    await rt.resume(source.id, "source again")
    assert (await rt.wait(source.id, timeout=60)).status == "completed"
    seen = claude_env.main_requests()[-1]
    assert "branch" not in texts_of(seen)


async def test_cancel_interrupts_within_a_second(rt: Runtime, claude_env: FakeAnthropic) -> None:
    claude_env.script = lambda body: Reply(hang=True)
    task = await rt.launch("never ends", model=MODEL)

    async def in_flight() -> bool:
        return bool(claude_env.main_requests()) and bool(claude_children())

    await wait_for(in_flight, timeout=60)
    started = time.monotonic()
    cancelled = await rt.cancel(task.id)
    assert cancelled.status == "cancelled"

    async def gone() -> bool:
        return not claude_children() and task.id not in rt.services.active

    await wait_for(gone, timeout=10)
    assert time.monotonic() - started < 1.0
    assert (await rt.get(task.id)).status == "cancelled"


def test_the_sdk_version_was_checked() -> None:
    """runners/claude_code/sdk.py reads the SDK's private `_transport._process`: a new version must be read
    again (and added to CHECKED_WITH) before it is trusted."""
    from bgagents.runners.claude_code.sdk import CHECKED_WITH

    installed = importlib.metadata.version("claude-agent-sdk")
    assert installed in CHECKED_WITH, (
        f"claude-agent-sdk {installed} is installed, runners/claude_code/sdk.py was checked with "
        f"{', '.join(CHECKED_WITH)}: check that a client's CLI process is still `client._transport._process`")


async def test_the_cli_process_is_found_after_connect_and_ended_by_close(claude_env: FakeAnthropic,
                                                                         tmp_path: Path) -> None:
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

    from bgagents.runners.claude_code import sdk as fence

    client = ClaudeSDKClient(ClaudeAgentOptions(cwd=str(tmp_path)))
    assert fence.cli_process(client) is None and fence.cli_pid(client) is None
    await client.connect()
    try:
        assert fence.cli_pid(client) in claude_children()
    finally:
        await fence.close(client, None, graceful=False)

    async def gone() -> bool:
        return not claude_children()

    await wait_for(gone, timeout=10)


async def test_steer_reaches_the_running_session(rt: Runtime, claude_env: FakeAnthropic) -> None:
    def script(body: dict[str, Any]) -> Reply:
        if "also say banana" in texts_of(body):
            return Reply(text="banana noted")
        if not tool_results(body):
            return tool("Bash", command="sleep 1", description="Wait")
        return Reply(text="no banana", delay=0.5)

    claude_env.script = script
    task = await rt.launch("work a while", model=MODEL)

    async def running_tool() -> bool:
        return (await rt.get(task.id)).progress.tool_calls == 1

    await wait_for(running_tool, timeout=60)
    await rt.send(task.id, "also say banana")
    done = await rt.wait(task.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.result is not None and done.result.text == "banana noted"
    assert any(e.role == "user" and e.content == "also say banana" for e in await rt.transcript(task.id))


@pytest.fixture
async def careful(claude_env: FakeAnthropic, tmp_path: Path) -> AsyncIterator[Runtime]:
    from bgagents.settings import ProfileSettings

    settings: Settings = make_settings(tmp_path, agents={"careful": ProfileSettings(
        runner="claude-code", model="sonnet", permissions={"bash": {"echo safe*": "allow", "*": "ask"}})})
    async with Runtime(settings) as runtime:
        yield runtime


@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_approval_from_a_permission_request(careful: Runtime, claude_env: FakeAnthropic, tmp_path: Path,
                                                  decision: str) -> None:
    def script(body: dict[str, Any]) -> Reply:
        done = tool_results(body)
        if not done:
            return tool("Bash", command="echo safe > safe.txt", description="Allowed by the profile")
        if len(done) == 1:
            return tool("Bash", command="touch asked.txt", description="Needs a person")
        return Reply(text=f"result: {done[-1].get('content')}")

    claude_env.script = script
    task = await careful.launch("make files", agent="careful")
    assert task.model == MODEL and task.concurrency_key == MODEL

    async def waiting() -> bool:
        return (await careful.get(task.id)).status == "waiting"

    await wait_for(waiting, timeout=60)
    [pending] = await careful.approvals()
    assert pending.task_id == task.id and pending.tool == "Bash" and pending.args["command"] == "touch asked.txt"
    assert "touch asked.txt" in pending.reason
    await careful.decide(pending.id, decision, reason="checked")
    done = await careful.wait(task.id, timeout=60)
    assert done.status == "completed", done.error
    workspace = tmp_path / "ws"
    assert (workspace / "safe.txt").exists()
    assert (workspace / "asked.txt").exists() == (decision == "approve")
    if decision == "deny":
        assert done.result is not None and "denied" in (done.result.text or "")


async def test_unanswered_approval_is_denied_after_the_timeout(claude_env: FakeAnthropic, tmp_path: Path) -> None:
    from bgagents.settings import LimitSettings, ProfileSettings

    claude_env.script = lambda body: (Reply(text="gave up") if tool_results(body)
                                      else tool("Bash", command="touch late.txt", description="Ask"))
    settings = make_settings(tmp_path, limits=LimitSettings(approval_timeout=0.5), agents={
        "careful": ProfileSettings(runner="claude-code", permissions={"bash": "ask"})})
    async with Runtime(settings) as rt:
        task = await rt.launch("try", agent="careful")
        assert task.model == "claude-code:default"
        done = await rt.wait(task.id, timeout=60)
        assert done.status == "completed", done.error
        [expired] = await rt.approvals("denied")
        assert "no answer" in (expired.decision_reason or "")
        assert not (tmp_path / "ws" / "late.txt").exists()


def events_of(db: Path, task_id: str, kind: str) -> int:
    import sqlite3

    from bgagents.core.db import events

    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {events.name} WHERE task_id = ? AND type = ?",
                                (task_id, kind)).fetchone()[0])


def test_kill9_mid_turn_resumes_the_same_session(server_factory: Any, claude_env: FakeAnthropic,
                                                 tmp_path: Path) -> None:
    """A real server is killed while Claude Code waits for the model; the restarted server resumes the same
    session (the model sees what was done, the finished step is not run again), the parent hears once."""
    recovered = "previous run of this turn was interrupted"

    def script(body: dict[str, Any]) -> Reply:
        if recovered in texts_of(body):
            return Reply(text="recovered and done")
        if not tool_results(body):
            return tool("Bash", command="echo step >> steps.log", description="Do the step")
        return Reply(hang=True)

    claude_env.script = script
    server = server_factory(HOME=os.environ["HOME"], **claude_env.env())
    server.start()
    with server.client() as api:
        parent = api.post("/tasks", json={"prompt": "parent", "model": "demo"}).json()
        assert api.get(f"/tasks/{parent['id']}/output", params={"wait": True, "timeout": 60}).json()["finished"]
        child = api.post("/tasks", json={"prompt": "child prompt", "model": MODEL,
                                         "parent_id": parent["id"]}).json()
        deadline = time.monotonic() + 60
        while len(claude_env.main_requests()) < 2:  # the step ran; the model is answering
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.05)
    server.kill9()
    before = len(claude_env.main_requests())
    server.start()
    with server.client() as api:
        done = api.get(f"/tasks/{child['id']}/output", params={"wait": True, "timeout": 60}).json()
        assert done["status"] == "completed", (done, server.log_text())
        assert done["result"]["text"] == "recovered and done"
    resumed = claude_env.main_requests()[before:]
    assert len(resumed) == 1
    assert "child prompt" in texts_of(resumed[0]) and len(tool_results(resumed[0])) == 1
    assert user_texts(resumed[0])[-1].strip().endswith("do not redo steps that are already done.")
    workspace = server.home / "workspace"
    assert (workspace / "steps.log").read_text().count("step") == 1
    assert not list((server.home / "run").glob("*.pid"))
    server.stop()
    db = server.home / "bgagents.db"
    assert events_of(db, parent["id"], "task.children_done") == 1

    # a finished turn is never run again
    count = len(claude_env.requests)
    server.start()
    with server.client() as api:
        time.sleep(1.0)
        assert api.get(f"/tasks/{child['id']}").json()["status"] == "completed"
    server.stop()
    assert len(claude_env.requests) == count
    assert events_of(db, parent["id"], "task.children_done") == 1


@pytest.mark.parametrize(("limits", "launch_limits", "status", "reason"), [
    ({"consecutive_threshold": 3}, None, "cancelled", "circuit_breaker"),
    ({}, {"requests": 2}, "failed", "budget"),
    ({}, {"tool_calls": 2}, "failed", "budget"),
    ({"stale_timeout": 1.0}, None, "failed", "stale"),
])
async def test_supervision_applies(claude_env: FakeAnthropic, tmp_path: Path, limits: dict[str, float],
                                   launch_limits: dict[str, float] | None, status: str, reason: str) -> None:
    from bgagents.settings import LimitSettings

    if reason == "stale":
        claude_env.script = lambda body: Reply(hang=True)
    else:  # the same call over and over
        claude_env.script = lambda body: tool("Bash", command="echo again >> loop.log", description="Again")
    async with Runtime(make_settings(tmp_path, limits=LimitSettings(**limits))) as rt:
        task = await rt.launch("loop", model=MODEL, limits=launch_limits)
        done = await rt.wait(task.id, timeout=60)
        assert (done.status, done.end_reason) == (status, reason), done.error
        assert claude_children() == []
        if reason == "circuit_breaker":
            assert "called 3 times in a row" in (done.error or "")
            assert (tmp_path / "ws" / "loop.log").read_text().count("again") == 2  # the third was refused


async def test_fork_of_a_native_task_onto_claude_code(rt: Runtime, claude_env: FakeAnthropic) -> None:
    claude_env.script = lambda body: Reply(text="continued on Claude Code")
    source = await rt.launch("list the files", model="demo")
    assert (await rt.wait(source.id, timeout=60)).status == "completed"
    fork = await rt.fork(source.id, "now on claude", model=MODEL)
    done = await rt.wait(fork.id, timeout=60)
    assert done.status == "completed", done.error
    first = texts_of(claude_env.main_requests()[-1])
    assert "<earlier-conversation>" in first and "user: list the files" in first and "now on claude" in first


async def test_isolated_worktree(claude_env: FakeAnthropic, tmp_path: Path) -> None:
    from tests.test_worktrees import git, repo

    ws = repo(tmp_path / "ws")
    claude_env.script = lambda body: (Reply(text="edited") if tool_results(body)
                                      else tool("Bash", command="echo mine >> shared.txt", description="Edit"))
    async with Runtime(make_settings(tmp_path)) as rt:
        task = await rt.launch("edit in isolation", model=MODEL, isolation="worktree")
        done = await rt.wait(task.id, timeout=60)
        assert done.status == "completed", done.error
        assert done.result is not None and "shared.txt" in (done.result.diff_stat or "")
        assert "mine" not in (ws / "shared.txt").read_text()  # the workspace is untouched until a merge
        await rt.merge(task.id)
        assert "mine" in (ws / "shared.txt").read_text()
        assert "bgagents" in git(ws, "log", "--oneline")


async def test_stop_while_waiting_for_approval_resumes_the_session(claude_env: FakeAnthropic,
                                                                   tmp_path: Path) -> None:
    """A server that stops (SIGTERM) mid-turn resumes the same session on its next start; the approval the
    stopped CLI was waiting for is closed as denied, and the agent is told to go on."""
    from bgagents.settings import ProfileSettings

    def script(body: dict[str, Any]) -> Reply:
        if "previous run of this turn was interrupted" in texts_of(body):
            return Reply(text="resumed after the restart")
        return tool("Bash", command="touch asked.txt", description="Needs a person")

    claude_env.script = script
    settings = make_settings(tmp_path, agents={"careful": ProfileSettings(runner="claude-code",
                                                                          permissions={"bash": "ask"})})
    async with Runtime(settings) as rt:
        task = await rt.launch("make a file", agent="careful")

        async def waiting() -> bool:
            return (await rt.get(task.id)).status == "waiting"

        await wait_for(waiting, timeout=60)
    assert claude_children() == []
    async with Runtime(settings) as rt:
        done = await rt.wait(task.id, timeout=60)
        assert done.status == "completed", done.error
        assert done.result is not None and done.result.text == "resumed after the restart"
        [closed] = await rt.approvals("denied")
        assert "interrupted by a restart" in (closed.decision_reason or "")
    resumed = claude_env.main_requests()[-1]
    assert "make a file" in texts_of(resumed)
    assert not (tmp_path / "ws" / "asked.txt").exists()


def test_a_tasks_bash_reaches_no_secret_and_writes_only_its_workspace(
        server_factory: Any, claude_env: FakeAnthropic, tmp_path: Path) -> None:
    """Claude Code's Bash ran with the server's whole environment (both provider keys, the API token), read
    the server user's home and wrote outside the workspace. Now the CLI runs in the task's sandbox with only
    what it needs, and its Bash in a sandbox of its own, as a native task's bash does."""
    import shutil

    if shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap")
    home = Path(os.environ["HOME"])  # the server user's home: the CLI's sessions and sign-in live there
    (home / ".claude").mkdir(exist_ok=True)
    (home / ".claude" / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "oauth-secret"}}')
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("ssh-private-key")
    outside = tmp_path / "outside.txt"
    server = server_factory(**{**claude_env.env(), "ANTHROPIC_API_KEY": "sk-ant-own-key"}, HOME=str(home),
                            OPENAI_API_KEY="sk-openai-other-key", MY_SERVICE_TOKEN="service-token")
    (server.home / "config.toml").write_text('webhooks = { allow_private = false }\n# config-secret\n')
    server.start()
    assert server.proc is not None
    secrets = ("sk-ant-own-key", "sk-openai-other-key", "test-token", "service-token", "oauth-secret",
               "ssh-private-key", "config-secret")
    command = (f"{{ env; cat /proc/{server.proc.pid}/environ /proc/$PPID/environ /proc/[0-9]*/environ "
               f"{home}/.claude/.credentials.json {home}/.ssh/id_ed25519 {server.home}/token "
               f"{server.home}/config.toml; }} 2>/dev/null | tr '\\0' '\\n' | grep -o -E '{'|'.join(secrets)}' "
               f"| sort -u | sed 's/^/LEAK /'; echo pwned > {outside}; echo pwned >> {home}/.bashrc; "
               "echo made > inside.txt && cat inside.txt")
    claude_env.script = Steps([tool("Bash", command=command, description="Probe"),
                               tool("Read", file_path=f"{home}/.claude/.credentials.json"),
                               tool("Write", file_path=str(server.home / "agents" / "evil.md"), content="x")],
                              answer="probed")
    with server.client() as api:
        task = api.post("/tasks", json={"prompt": "probe", "model": MODEL}).json()
        done = api.get(f"/tasks/{task['id']}/output", params={"wait": True, "timeout": 90}).json()
    server.stop()
    assert done["status"] == "completed", (done, server.log_text())
    bash, read, write = [json.dumps(r) for r in tool_results(claude_env.main_requests()[-1])]
    assert "made" in bash and "LEAK" not in bash, bash
    assert "outside the workspace" in read and "oauth-secret" not in read, read
    assert "outside the workspace" in write and not (server.home / "agents").exists(), write
    assert not outside.exists()
    assert "pwned" not in ((home / ".bashrc").read_text() if (home / ".bashrc").exists() else "")
    assert (server.home / "workspace" / "inside.txt").read_text() == "made\n"


async def test_its_bash_is_offline_with_the_profiles_network_off(claude_env: FakeAnthropic, tmp_path: Path) -> None:
    """The CLI reaches its model; the commands of its Bash do not reach the network (the same endpoint)."""
    import shutil

    from bgagents.settings import ProfileSettings

    if shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap")
    command = f"exec 3<>/dev/tcp/127.0.0.1/{claude_env.port} && echo CONNECTED; echo tried"
    claude_env.script = Steps([tool("Bash", command=command, description="Reach out")], answer="offline")
    settings = make_settings(tmp_path, agents={"offline": ProfileSettings(runner="claude-code", network=False)})
    async with Runtime(settings) as rt:
        done = await rt.wait((await rt.launch("reach", agent="offline")).id, timeout=60)
    assert done.status == "completed", done.error
    out = json.dumps(tool_results(claude_env.main_requests()[-1]))
    assert "tried" in out and "CONNECTED" not in out, out


async def test_without_the_sandbox_the_cli_still_gets_only_what_it_needs(
        claude_env: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgagents.settings import SandboxSettings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-other-key")
    monkeypatch.setenv("BGAGENTS_TOKEN", "the-api-token")
    claude_env.script = Steps([tool("Bash", command="env; echo listed", description="Env")], answer="done")
    async with Runtime(make_settings(tmp_path, sandbox=SandboxSettings(mode="off"))) as rt:
        done = await rt.wait((await rt.launch("env", model=MODEL)).id, timeout=60)
    assert done.status == "completed", done.error
    out = json.dumps(tool_results(claude_env.main_requests()[-1]))
    assert "listed" in out and "ANTHROPIC_BASE_URL" in out, out
    assert "sk-openai-other-key" not in out and "the-api-token" not in out, out


async def test_a_launch_is_refused_at_once_without_a_login_and_accepted_with_a_key(
        claude_env: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from bgagents.server import create_app

    claude_env.script = lambda body: Reply(text="signed in")
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))  # no login there
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    async with Runtime(make_settings(tmp_path)) as runtime:
        app = create_app(runtime, "t", manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                     headers={"Authorization": "Bearer t"}) as api:
            refused = await api.post("/tasks", json={"prompt": "fix it", "model": MODEL})
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == "unknown_model" and "Claude Code is not signed in" in error["message"]
            assert "ANTHROPIC_API_KEY" in error["message"] and "\n" not in error["message"]
            assert (await api.get("/tasks")).json() == []  # nothing stored
            monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
            accepted = await api.post("/tasks", json={"prompt": "fix it", "model": MODEL})
            assert accepted.status_code == 201, accepted.text
            done = await runtime.wait(accepted.json()["id"], timeout=120)
    assert done.status == "completed" and done.result is not None and done.result.text == "signed in"
