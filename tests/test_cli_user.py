"""What a new user meets in the CLI, against one real server: results and diffs that come out exactly as
written (through a pipe, byte for byte), names kept, waits that say what they wait for, profiles read
again while `serve` runs, bad input as one line, and the small things (`--version`, `-h`, completion,
tables that keep their columns when piped)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgagents.cli.webhooks import delivery_row
from bgagents.core.names import branch_part, chosen_slug, given_name, slugify, unique

from .conftest import ROOT, ServerProcess, free_port
from .fake_openai import FakeOpenAI, env_for
from .test_durability import wait_for

START = 120.0  # seconds a server may take to start on a loaded machine
ANSWER = ("[x] done, [bold]not bold[/bold], [demo model] and a [link](http://a.example/b) :smile:\n"
          + "a long line " * 30 + "\n\tünïcødé ✓ 😀 \\[escaped]\n\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module (demo model by default, the fake OpenAI server for `openai-chat:*`), its
    workspace a git repository with one commit (for isolated tasks)."""
    home = tmp_path_factory.mktemp("served")
    workspace = home / "workspace"
    workspace.mkdir()
    (workspace / "README.md").write_text("# a project\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run([*git, *args], cwd=workspace, check=True)
    with FakeOpenAI() as fake:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
        env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": "test-token", "BGAGENTS_MODEL": "demo",
                    "BGAGENTS_URL": f"http://127.0.0.1:{port}", "BGAGENTS_DEMO_PAUSE": "0.05",
                    "PYTHONPATH": str(ROOT), **env_for(fake.base_url)})
        server = ServerProcess(home=home, env=env, port=port)
        server.start(timeout=START)
        try:
            yield server
        finally:
            server.stop()


def run(server: ServerProcess, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[bytes]:
    """`bgagents ARGS` with stdout and stderr piped, as bytes."""
    return subprocess.run([sys.executable, "-m", "bgagents.cli.main", *args], env={**server.env, **env},
                          capture_output=True, timeout=timeout, cwd=server.home)


def launched(server: ServerProcess, **body: object) -> dict[str, object]:
    with server.client() as client:
        task: dict[str, object] = client.post("/tasks", json=body).json()
        wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] in ("completed", "failed"), 60,
                 "the task to end")
        ended: dict[str, object] = client.get(f"/tasks/{task['id']}").json()
        return ended


def on_a_terminal(server: ServerProcess, *args: str, until: bytes | None = None,
                  timeout: float = 60) -> tuple[int, bytes]:
    """`bgagents ARGS` on a pseudo-terminal 100 columns wide: its exit code and all it wrote."""
    master, slave = pty.openpty()
    env = {**server.env, "TERM": "xterm", "COLUMNS": "100", "LINES": "40"}
    proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=server.home, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the process is gone and its terminal closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=10)
        return proc.returncode, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        assert until is None or until in seen, seen[-2000:]


# -- what an agent wrote comes out exactly as written -----------------------------------------------------------


def test_a_result_comes_out_byte_for_byte_through_a_pipe(served: ServerProcess) -> None:
    expected = ("echo: " + ANSWER).encode()
    waited = run(served, "launch", ANSWER, "--model", "openai-chat:echo", "--wait")
    assert waited.returncode == 0, waited.stderr
    task_id = waited.stderr.decode().splitlines()[0]  # the id comes first, on stderr: stdout is the result alone
    assert task_id.startswith("bg_") and waited.stdout == expected
    assert run(served, "output", task_id).stdout == expected
    assert run(served, "output", task_id, "--wait").stdout == expected
    shown = run(served, "show", task_id).stdout.decode()
    assert f"result: echo: {ANSWER.splitlines()[0]}" in shown and ("a long line " * 30).strip() in shown
    assert f"prompt: {ANSWER.splitlines()[0]}" in shown
    logs = run(served, "logs", task_id).stdout.decode()
    assert "[bold]not bold[/bold]" in logs and ("a long line " * 30).strip() in logs


def test_a_piped_diff_is_applied_by_git_apply(served: ServerProcess, tmp_path: Path) -> None:
    task = launched(served, prompt="write [x] [bold]notes[/bold] ü", isolation="worktree")
    assert task["status"] == "completed"
    with served.client() as client:
        api = client.get(f"/tasks/{task['id']}/diff").json()
    piped = run(served, "diff", str(task["id"]))
    assert piped.returncode == 0 and piped.stdout == api["patch"].encode()  # only the patch on stdout
    assert api["branch"] in piped.stderr.decode()
    assert b"[bold]notes[/bold]" in piped.stdout
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(served.home / "workspace"), str(clone)], check=True)
    (tmp_path / "x.patch").write_bytes(piped.stdout)
    applied = subprocess.run(["git", "apply", str(tmp_path / "x.patch")], cwd=clone, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    [note] = (clone / "demo-notes").glob("*.md")
    assert "Task: write [x] [bold]notes[/bold] ü" in note.read_text()
    stat = run(served, "diff", str(task["id"]), "--stat")
    assert stat.stdout.decode() == api["stat"] + "\n"
    shown = run(served, "show", str(task["id"])).stdout.decode()  # an isolated task's branch, state and changes
    assert f"branch: {api['branch']}\n" in shown and "worktree: active at " in shown
    assert "changes: " + api["stat"].splitlines()[0] in shown


def test_tables_keep_their_columns_when_piped(served: ServerProcess) -> None:
    task = launched(served, prompt="a task with a rather long name so that a table would cut it", name="x" * 50)
    listed = run(served, "ls", "--all").stdout.decode().splitlines()
    assert listed[0].split("\t") == ["ID", "NAME", "STATUS", "MODEL", "ELAPSED", "TOKENS", "PROGRESS"]
    row = next(line.split("\t") for line in listed if line.startswith(str(task["id"])))
    assert row[1] == "x" * 50 and row[2] == "completed" and row[3] == "demo"
    added = run(served, "schedule", "add", "inbox", "Summarise my inbox", "--cron", "0 8 * * *")
    assert added.returncode == 0, added.stderr
    schedules = run(served, "schedule", "ls").stdout.decode().splitlines()
    assert schedules[0].split("\t") == ["NAME", "WHEN", "NEXT", "STATE", "TARGET", "LAST", "SOURCE"]
    assert schedules[1].split("\t")[0] == "inbox" and schedules[1].split("\t")[-1] == "api"
    run(served, "schedule", "rm", "inbox")


# -- names a user gives are kept --------------------------------------------------------------------------------


def test_names_a_user_gives_are_kept(served: ServerProcess) -> None:
    named = json.loads(run(served, "launch", "do it now", "--name", "do-it", "--json").stdout)
    assert named["name"] == "do-it"  # once `task`: every word of it is a stop word
    spaced = json.loads(run(served, "launch", "x", "--name", "  Fix the login/bug  ", "--json").stdout)
    assert spaced["name"] == "Fix the login-bug"  # a name is also a URL's path segment: no slash
    generated = json.loads(run(served, "launch", "Survey the workspace and write a short note", "--json").stdout)
    assert generated["name"] == "survey-workspace-write-short"  # generated names as before
    with served.client() as client:
        for _ in range(2):
            assert client.post("/conversations/names/background-agents",
                               json={"prompt": "research the history of tea", "name": "do-it"}).status_code == 202

        def names() -> list[str]:
            return sorted(t["name"] for t in client.get("/tasks", params={"limit": 200}).json()
                          if t["name"].startswith("do-it") and t["id"] != named["id"])

        wait_for(lambda: len(names()) == 2, 60, "two background agents")
        assert names() == ["do-it", "do-it-2"]  # a clash gets a suffix; the task's name is its session's


def test_the_rules_of_names() -> None:
    assert [given_name(n) for n in ("do-it", "  Fix  the\tbug ", "a/b", "x" * 80, " ")] == [
        "do-it", "Fix the bug", "a-b", "x" * 64, "task"]
    assert [chosen_slug(n) for n in ("do-it", "Research the market", "task-2", "x" * 41)] == [
        "do-it", "research-market", "task-2", "x" * 40]
    assert [slugify(p) for p in ("do it", "Survey the workspace and write a short note")] == [
        "task", "survey-workspace-write-short"]  # generated names as they were
    assert branch_part("Fix the login-bug") == "fix-the-login-bug" and branch_part("ü") == "task"
    assert unique("do-it", {"do-it", "do-it-2"}) == "do-it-3"


# -- waiting says what it waits for -----------------------------------------------------------------------------


def test_launch_wait_prints_the_id_first_then_a_live_status_line(served: ServerProcess) -> None:
    code, seen = on_a_terminal(served, "launch", "hello", "--model", "openai-chat:slow-2500", "--wait",
                               until=b"slow done")
    assert code == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))  # without colours and cursor moves
    task_id = text.split()[0]
    assert task_id.startswith("bg_")
    assert f"{task_id} running · waited 0m0" in text  # the status line, updated while it runs
    assert text.rstrip().endswith("slow done")


def test_output_wait_says_an_approval_is_waited_for_and_how_to_decide(served: ServerProcess) -> None:
    agents = served.home / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "asker.md").write_text('---\ndescription: Asks first\npermissions:\n  bash:\n    "*": ask\n---\n'
                                     "You ask first.\n")
    task_id = run(served, "launch", "look around", "--agent", "asker").stdout.decode().strip()
    proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "output", task_id, "--wait", "--timeout",
                             "60"], env=served.env, cwd=served.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert f"{task_id} waits for your approval of bash: ls -la" in line, line
        approval = line.split("bgagents approve ")[1].split()[0]
        assert f"bgagents deny {approval}" in line
        decided = run(served, "approve", approval)
        assert decided.returncode == 0, decided.stderr
        out, rest = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.startswith(b"[demo model] Finished: 'look around'"), rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- profiles are read again when they change ------------------------------------------------------------------


def test_a_profile_added_while_serve_runs_is_used_at_once(served: ServerProcess) -> None:
    agents = served.home / ".bgagents" / "agents"  # ./.bgagents/agents of the server's working directory
    agents.mkdir(parents=True, exist_ok=True)
    reader = agents / "reader.md"
    reader.write_text("---\ndescription: Reads things\ntools: read, glob\n---\nYou only read.\n")
    listed = run(served, "agents").stdout.decode().splitlines()
    assert f"reader\t(default)\t{reader}\tReads things" in listed and "general\t(default)\tbuilt-in\t" in listed[1]
    used = run(served, "launch", "read it", "--agent", "reader", "--json")
    assert used.returncode == 0 and json.loads(used.stdout)["agent"] == "reader"
    reader.write_text("---\nname: [unclosed\n---\nx\n")  # broken: the last good version stays in use
    assert run(served, "launch", "read it", "--agent", "reader").returncode == 0
    told = run(served, "agents")
    assert f"not usable: {reader}: front matter is not valid YAML" in told.stderr.decode()
    (agents / "flyer.md").write_text("---\ntools: read, fly\n---\nYou fly.\n")
    flying = run(served, "launch", "fly", "--agent", "flyer")
    assert flying.returncode == 1 and flying.stderr.decode().count("\n") == 1
    assert "agent 'flyer' cannot be used" in flying.stderr.decode() and "unknown tools: fly" in flying.stderr.decode()
    log = served.log_text()
    assert "front matter is not valid YAML" in log and "Traceback" not in log


# -- bad input is one line, never a traceback ------------------------------------------------------------------


def one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    text = result.stderr.decode()
    assert "Traceback" not in text and "pydantic.dev" not in text and "ValueError" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    return text.strip()


def test_settings_errors_and_unknown_keys_are_one_line_each(served: ServerProcess, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.toml"
    config.write_text('concurency = 3\n[limits]\nstale_timout = 5\n')
    listed = run(served, "ls", BGAGENTS_HOME=str(home))
    assert listed.returncode == 0
    warnings = listed.stderr.decode().splitlines()
    assert warnings == [f"warning: {config}: unknown key concurency (ignored); did you mean 'concurrency'?",
                        f"warning: {config}: unknown key [limits] stale_timout (ignored); did you mean "
                        "'stale_timeout'?"]
    config.write_text("[limits]\nstale_timeout = -1\n")
    bad = run(served, "ls", BGAGENTS_HOME=str(home))
    assert bad.returncode == 1
    assert one_line(bad) == (f"error: bad setting [limits] stale_timeout: Input should be greater than 0 (got -1) "
                             f"(set in {config} or BGAGENTS_LIMITS__STALE_TIMEOUT)")
    config.write_text('model = "x\n')
    assert f"error: {config} is not valid TOML" in one_line(run(served, "ls", BGAGENTS_HOME=str(home)))
    config.unlink()
    not_json = run(served, "ls", BGAGENTS_HOME=str(home), BGAGENTS_AGENTS="{x")
    assert one_line(not_json) == "error: bad setting: the environment variable BGAGENTS_AGENTS is not valid JSON"


def test_model_errors_are_one_line_without_the_exception_class(served: ServerProcess) -> None:
    unknown = run(served, "launch", "hi", "--model", "foo:bar")
    text = one_line(unknown)
    assert unknown.returncode == 1 and "model 'foo:bar' cannot be used: Unknown provider: foo" in text
    assert text.count("demo") <= 2 and "read where `bgagents serve` runs" in text


def test_doctor_checks_without_a_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "agents").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_") and k != "OPENAI_API_KEY"}
    env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_URL": f"http://127.0.0.1:{free_port()}",
                "PYTHONPATH": str(ROOT)})

    def doctor(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bgagents.cli.main", "doctor", *args], env={**env, **more},
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)

    clean = doctor(BGAGENTS_MODEL="demo")
    assert clean.returncode == 0, clean.stdout
    assert "ok: models usable here: demo" in clean.stdout and "note: no server answers at" in clean.stdout
    (home / "config.toml").write_text('modle = "demo"\n[agents.coder]\nmodel = "openai:gpt-4o"\n')
    (home / "agents" / "broken.md").write_text("---\ntools: [read\n---\nx\n")
    (home / "agents" / "typo.md").write_text("---\ntool: read\n---\nx\n")
    (home / "schedules.toml").write_text('[walk]\ncron = "0 18 * * *"\nprompt = "Go"\nagent = "walker"\n')
    found = doctor(BGAGENTS_MODLE="demo")
    assert found.returncode == 1 and "Traceback" not in found.stdout + found.stderr
    lines = found.stdout.splitlines()
    expected = [f"warning: {home / 'config.toml'}: unknown key modle (ignored); did you mean 'model'?",
                f"error: {home / 'agents' / 'broken.md'}: front matter is not valid YAML",
                f"warning: {home / 'agents' / 'typo.md'}: unknown key tool (ignored); did you mean 'tools'?",
                f"error: {home / 'schedules.toml'}: [walk] names unknown agent 'walker'",
                "warning: environment variable BGAGENTS_MODLE is not a setting (ignored); did you mean "
                "BGAGENTS_MODEL?",
                "warning: no default model",
                "error: agent profile 'coder': model 'openai:gpt-4o' cannot be used: OPENAI_API_KEY is not set"]
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
    assert all(line.split(":")[0] in ("ok", "note", "warning", "error") for line in lines), lines
    as_json = json.loads(doctor("--json").stdout)
    assert {"level": "error", "message": f"{home / 'schedules.toml'}: [walk] names unknown agent 'walker'"} in as_json


# -- small things -------------------------------------------------------------------------------------------


def test_version_short_help_and_completion(served: ServerProcess) -> None:
    from bgagents import __version__

    assert run(served, "--version").stdout.decode() == f"bgagents {__version__}\n"
    assert b"Usage: bgagents" in run(served, "-h").stdout and b"Usage: bgagents ls" in run(served, "ls", "-h").stdout
    completed = run(served, _BGAGENTS_COMPLETE="complete_bash", COMP_WORDS="bgagents la", COMP_CWORD="1")
    assert completed.stdout.decode().split() == ["launch"]
    shown = run(served, "--show-completion", "bash")
    assert shown.returncode == 0 and b"_BGAGENTS_COMPLETE=complete_bash" in shown.stdout


def test_open_says_when_no_browser_was_opened(served: ServerProcess) -> None:
    headless = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": ""}
    opened = run(served, "open", **headless)
    assert opened.returncode == 0 and opened.stdout.decode() == f"{served.url}/?token={served.token}\n"
    assert "no browser was opened" in one_line(opened)
    as_json = json.loads(run(served, "open", "--json", **headless).stdout)
    assert as_json == {"url": f"{served.url}/?token={served.token}", "opened": False}


def test_webhook_deliveries_label_the_http_status() -> None:
    tries = [{"n": 1, "at": 0.0, "status_code": 500, "error": None},
             {"n": 2, "at": 1.0, "status_code": None, "error": "connection refused"}]
    row = delivery_row({"id": "dl_1", "type": "task.completed", "status": "failed", "next_at": 0.0, "log": tries})
    assert row == ["dl_1", "task.completed", "failed", "HTTP 500; error: connection refused"]
