"""bash cannot reach the server's secrets: bubblewrap sandbox, scrubbed environment, private files."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgagents import Runtime
from bgagents.settings import ProfileSettings, SandboxSettings, Settings
from bgagents.tools.private import ServerFiles
from bgagents.tools.sandbox import SandboxUnavailable, bash_environment, choose

from .conftest import Script, ServerProcess, make_settings
from .fake_openai import FakeOpenAI, env_for
from .test_durability import wait_for


def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    sandbox, _ = asyncio.run(choose("auto", ServerFiles.of(Path("/tmp/none"), Path("/tmp")), True))
    return sandbox is not None


needs_bwrap = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap is not installed or cannot run here")


@needs_bwrap
def test_a_tasks_bash_cannot_read_the_servers_secrets(server_factory: Callable[..., ServerProcess]) -> None:
    with FakeOpenAI() as fake:
        server = server_factory(**env_for(fake.base_url), BGAGENTS_TOKEN="", MY_SERVICE_API_KEY="sk-live-abc123",
                                DEPLOY_PASSWORD="hunter2", HARMLESS_SETTING="visible-value")
        server.start(timeout=90)  # a loaded machine can take long to import everything
        server.token = (server.home / "token").read_text().strip()
        assert server.proc is not None
        home = server.home
        command = (f"env; cat /proc/$PPID/environ; cat /proc/[0-9]*/environ; cat /proc/{server.proc.pid}/environ; "
                   f"cat {home}/token; head -c 16 {home}/bgagents.db; cat {home}/bgagents.db-wal; echo LS:; "
                   f"ls -A {home}; echo written > proof.txt; cat proof.txt; echo > /tmp/scratch && echo TMP-OK")
        with server.client() as client:
            task = client.post("/tasks", json={"prompt": f"run: {command}", "model": "openai-chat:run"}).json()
            wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] == "completed", 60, "the task")
            out = client.get(f"/tasks/{task['id']}").json()["result"]["text"]
    for secret in (server.token, "sk-live-abc123", "hunter2", "test-key", "SQLite format"):
        assert secret not in out, (secret, out)
    assert "visible-value" in out  # what is not a secret is passed on
    assert out.split("LS:")[1].split()[0] == "workspace"  # the home shows only the workspace
    assert "written" in out and (home / "workspace" / "proof.txt").read_text() == "written\n"
    assert "TMP-OK" in out


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@needs_bwrap
async def test_network_is_on_or_off_per_profile(tmp_path: Path, listener: int) -> None:
    settings = make_settings(tmp_path, sandbox=SandboxSettings(network=False),
                             agents={"online": ProfileSettings(network=True)})
    command = f"exec 3<>/dev/tcp/127.0.0.1/{listener} && echo CONNECTED"
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("bash", {"command": command})], answer="finished").model())
        offline = await rt.wait((await rt.launch("x", model="m")).id, timeout=30)
        online = await rt.wait((await rt.launch("x", model="m", agent="online")).id, timeout=30)
        out = {name: "\n".join(str(e.content) for e in await rt.transcript(t.id) if e.role == "tool_result")
               for name, t in (("offline", offline), ("online", online))}
    assert "CONNECTED" in out["online"]
    assert "CONNECTED" not in out["offline"] and "exit code" in out["offline"]


async def test_off_mode_runs_bash_without_the_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    outside = tmp_path / "outside.txt"
    outside.write_text("seen from outside")
    command = f"cat {outside}; echo made > made.txt; env"
    async with Runtime(make_settings(tmp_path, sandbox=SandboxSettings(mode="off"))) as rt:
        assert rt.services.sandbox is None
        rt.register_model("m", Script(steps=[("bash", {"command": command})]).model())
        task = await rt.wait((await rt.launch("x", model="m")).id, timeout=30)
        out = "\n".join(str(e.content) for e in await rt.transcript(task.id) if e.role == "tool_result")
    assert "seen from outside" in out and (tmp_path / "ws" / "made.txt").read_text() == "made\n"
    assert "sk-secret" not in out


async def test_mode_on_without_bwrap_is_an_error_and_auto_is_a_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SandboxUnavailable, match="bwrap is not installed"):
        await choose("on", ServerFiles.of(tmp_path / "home", tmp_path), True)
    with caplog.at_level(logging.WARNING, logger="bgagents"):
        async with Runtime(make_settings(tmp_path)) as rt:
            assert rt.services.sandbox is None
    notes = [r.getMessage() for r in caplog.records if "unsandboxed" in r.getMessage()]
    assert len(notes) == 1 and "bubblewrap" in notes[0] and "\n" not in notes[0]


async def test_database_and_token_files_are_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("todoread", {})]).model())
        await rt.wait((await rt.launch("x", model="m")).id, timeout=30)
        files = [tmp_path / "home" / name for name in ("bgagents.db", "bgagents.db-wal", "bgagents.db-shm")]
        assert all(f.exists() for f in files)
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    settings.resolve_token(create=True)
    modes["token"] = stat.S_IMODE((tmp_path / "home" / "token").stat().st_mode)
    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


def test_the_environment_rule() -> None:
    given = {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TERM": "xterm", "TZ": "UTC",
        "VIRTUAL_ENV": "/venv", "EDITOR": "vi",
        "OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x", "BGAGENTS_TOKEN": "x", "BGAGENTS_DATABASE_URL": "x",
        "GITHUB_TOKEN": "x", "AWS_SECRET_ACCESS_KEY": "x", "PGPASSWORD": "x", "my_password": "x",
        "GOOGLE_APPLICATION_CREDENTIALS": "x", "SSH_AUTH_SOCK": "x", "SESSION_COOKIE": "x",
        "DATABASE_URL": "postgresql://app:s3cret@db/app", "MIRROR": "https://example.org/simple",
    }
    kept = bash_environment(given)
    assert sorted(kept) == ["EDITOR", "HOME", "LANG", "LC_ALL", "MIRROR", "PATH", "TERM", "TZ", "VIRTUAL_ENV"]
    assert bash_environment(os.environ).get("PATH") == os.environ.get("PATH")


@needs_bwrap
async def test_a_task_in_its_own_worktree_can_commit_there_and_nowhere_else(tmp_path: Path) -> None:
    from .test_worktrees import git, repo

    ws = repo(tmp_path / "ws")
    command = ("echo new > new.txt && git -c user.name=a -c user.email=a@a add new.txt && "
               "git -c user.name=a -c user.email=a@a commit -qm 'by the agent' && echo COMMITTED; "
               f"echo x > {ws}/shared.txt")
    async with Runtime(make_settings(tmp_path)) as rt:
        assert rt.services.sandbox is not None
        rt.register_model("m", Script(steps=[("bash", {"command": command})]).model())
        task = await rt.launch("x", model="m", isolation="worktree")
        task = await rt.wait(task.id, timeout=30)
        out = "\n".join(str(e.content) for e in await rt.transcript(task.id) if e.role == "tool_result")
        assert task.worktree is not None
        assert "COMMITTED" in out, out
        assert "by the agent" in git(Path(task.worktree.path), "log", "--oneline")
    assert (ws / "shared.txt").read_text().startswith("line 1")  # the shared workspace is not writable


def test_serve_says_in_one_line_at_start_what_is_not_protected(server_factory: Callable[..., ServerProcess],
                                                                tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    server = server_factory(PATH=str(tmp_path / "empty"))
    server.start(timeout=90)
    server.stop()
    lines = [line for line in server.log_text().splitlines() if "not protected" in line]
    assert len(lines) == 1, server.log_text()
    assert "bash and Claude Code tasks run unsandboxed (bwrap is not installed" in lines[0]


@pytest.mark.slow
def test_serve_with_the_sandbox_required_but_missing_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "PATH": str(tmp_path / "empty"), "BGAGENTS_SANDBOX__MODE": "on",
           "BGAGENTS_HOME": str(tmp_path / "home")}
    from .conftest import free_port

    done = subprocess.run([sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    starting, error = done.stderr.strip().splitlines()  # the line said at once, then why it stops
    assert starting.startswith("bgagents: starting the server")
    assert error == ("error: sandbox mode is 'on' but the bash sandbox cannot run: bwrap is not installed "
                     "(Debian/Ubuntu: apt install bubblewrap)")


@needs_bwrap
async def test_secret_files_stay_hidden_when_the_home_is_the_workspace(tmp_path: Path) -> None:
    from bgagents.core.bash_setup import server_files
    from bgagents.tools.sandbox import plan

    from .test_builtin_tools import call_tool, make_ctx

    ctx = make_ctx(tmp_path)
    settings = Settings(home=ctx.workspace, workspace=ctx.workspace)
    (ctx.workspace / "token").write_text("tok-in-the-workspace")
    (ctx.workspace / "bgagents.db").write_text("SQLite format 3")
    ctx.sandbox = plan(shutil.which("bwrap") or "bwrap", server_files(settings), True)
    out = await call_tool(ctx, "bash", {"command": "cat token bgagents.db; echo ok > mine.txt && cat mine.txt"})
    assert "tok-in-the-workspace" not in out and "SQLite" not in out and "ok" in out


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A folder outside /tmp (a sandbox's /tmp is its own anyway): sockets and homes live in such places."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bgagents-test-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def user_home(home: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The server user's $HOME, with these files in it."""
    for name, text in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    monkeypatch.setenv("HOME", str(home))


def unix_server(path: str) -> socket.socket:
    """A Unix socket that answers every connection with a greeting (a database's socket, for the test)."""
    import threading

    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HELLO-FROM-THE-DATABASE")

    threading.Thread(target=serve, daemon=True).start()
    return server


def postgres_socket() -> str | None:
    """The Unix socket of the tests' PostgreSQL server (BGAGENTS_TEST_POSTGRES_URL), when it has one here."""
    from .conftest import POSTGRES_URL

    port = (POSTGRES_URL or "").rsplit(":", 1)[-1].split("/")[0]
    for folder in ("/tmp", "/run/postgresql", "/var/run/postgresql"):
        if port.isdigit() and Path(folder, f".s.PGSQL.{port}").exists():
            return f"{folder}/.s.PGSQL.{port}"
    return None


@needs_bwrap
async def test_the_sandbox_hides_homes_and_sockets(tmp_path: Path, outside_tmp: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With the network off a task reached the database through its Unix socket and read the server user's
    home; now neither is in its sandbox, only the system, the workspace and its own /tmp and $HOME."""
    home = outside_tmp / "home"
    secrets = {".claude/.credentials.json": "claude-oauth-secret", ".ssh/id_ed25519": "ssh-private-key",
               ".aws/credentials": "aws-secret-key", ".pgpass": "pg-password", ".netrc": "netrc-password"}
    user_home(home, secrets, monkeypatch)
    (outside_tmp / "run").mkdir()
    listener = unix_server(str(outside_tmp / "run" / ".s.PGSQL.5432"))
    abstract = unix_server(f"\0bgagents-test-{os.getpid()}")
    sockets = [str(outside_tmp / "run" / ".s.PGSQL.5432"), f"@bgagents-test-{os.getpid()}"]
    sockets += [s for s in (postgres_socket(),) if s]
    probe = ("import socket, sys\n"
             "for path in sys.argv[1:]:\n"
             "    s = socket.socket(socket.AF_UNIX)\n"
             "    try:\n"
             "        s.connect(path.replace('@', '\\0', 1) if path.startswith('@') else path)\n"
             "        print('CONNECTED', path, s.recv(100))\n"
             "    except OSError as e:\n"
             "        print('refused', path, e.strerror)\n"
             "print('PROBED')\n")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "probe.py").write_text(probe)
    command = (f"cat {' '.join(str(home / n) for n in secrets)}; ls -A /root /home $HOME /run; "
               f"python3 probe.py {' '.join(sockets)}; echo made > made.txt && cat made.txt; "
               "echo x > ~/scratch && echo HOME-WRITABLE")
    try:
        async with Runtime(make_settings(tmp_path, sandbox=SandboxSettings(network=False))) as rt:
            rt.register_model("m", Script(steps=[("bash", {"command": command})], answer="finished").model())
            task = await rt.wait((await rt.launch("x", model="m")).id, timeout=30)
            out = "\n".join(str(e.content) for e in await rt.transcript(task.id) if e.role == "tool_result")
    finally:
        listener.close()
        abstract.close()
    assert "PROBED" in out and "made" in out and "HOME-WRITABLE" in out, out
    assert "CONNECTED" not in out and "HELLO" not in out, out
    assert not any(text in out for text in secrets.values()), out
    assert (tmp_path / "ws" / "made.txt").read_text() == "made\n"
    assert not (home / "scratch").exists()  # the command's $HOME was its own


@needs_bwrap
async def test_a_workspace_of_the_home_still_hides_its_credentials_and_the_servers_files(
        outside_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workspace is the server user's home, holding $BGAGENTS_HOME: bash and the file tools see the
    person's files, not their credentials nor the server's token."""
    from .test_builtin_tools import call_tool, make_ctx

    home = outside_tmp / "me"
    secrets = {".ssh/id_ed25519": "ssh-private-key", ".claude/.credentials.json": "claude-oauth-secret",
               ".aws/credentials": "aws-secret-key", ".netrc": "netrc-password", ".bgagents/token": "api-token"}
    user_home(home, {**secrets, "notes.txt": "my notes"}, monkeypatch)
    settings = Settings(home=home / ".bgagents", workspace=home, sandbox=SandboxSettings(network=False))
    async with Runtime(settings) as rt:
        ctx = make_ctx(outside_tmp, sandbox=rt.services.sandbox, server_files=rt.services.server_files)
        ctx.workspace = home.resolve()
        shown = await call_tool(ctx, "bash", {"command": f"cat notes.txt {' '.join(secrets)}; ls -A"})
        read = [await call_tool(ctx, "read", {"path": name}) for name in secrets]
        found = await call_tool(ctx, "grep", {"pattern": "secret|key|password|token"})
    assert "my notes" in shown and not any(text in shown for text in secrets.values()), shown
    assert all("server's own files or its user's credentials" in r for r in read), read
    assert not any(text in found for text in secrets.values()), found
