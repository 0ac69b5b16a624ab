"""What people see: leaving chat at once, model errors that say where keys are read, a URL without its
scheme, a cancel as one log line, `chat --message` with background results, a demo that leaves nothing."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgagents.cli.chat import POLL_WAIT

from .conftest import ServerProcess
from .test_durability import wait_for
from .test_scale import alive

START = 120.0  # seconds a server may take to start on a loaded machine
QUIT_WITHIN = 5.0  # seconds; the chat's long poll waits POLL_WAIT (25 s), which leaving used to wait out


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in {seen[-500:]!r}"
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            seen += os.read(fd, 4096)
    return seen


def _leave_chat(server: ServerProcess, keys: bytes) -> float:
    """Starts `bgagents chat` on a pseudo-terminal, types `keys` while a long poll waits; seconds to exit."""
    master, slave = pty.openpty()
    env = {**server.env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "chat"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=server.home, close_fds=True)
    os.close(slave)
    try:
        _read_until(master, b"you>", 60)
        time.sleep(0.5)  # the long poll of /responses is under way
        started = time.monotonic()
        os.write(master, keys)
        proc.wait(timeout=POLL_WAIT + 20)
        took = time.monotonic() - started
        assert proc.returncode == 0
        return took
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_leaving_chat_is_immediate(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start(timeout=START)
    took = {name: _leave_chat(server, keys) for name, keys in
            (("/quit", b"/quit\r"), ("Ctrl-D", b"\x04"), ("Ctrl-C", b"\x03"))}
    print(f"\nseconds to leave bgagents chat: {took}")
    assert all(t < QUIT_WITHIN for t in took.values()), took


def test_model_errors_say_where_keys_are_read(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()  # no default model, no key
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        server.env.pop(key, None)
    server.start(timeout=START)
    assert "warning: no default model is set" in server.log_text()
    no_model = server.cli("launch", "hi")
    missing_key = server.cli("launch", "hi", "--model", "openai:gpt-4o")
    unknown = server.cli("launch", "hi", "--model", "gpt-4o")
    main_agent = server.cli("chat", "-m", "hi")
    for result in (no_model, missing_key, unknown, main_agent):
        assert result.returncode == 1 and "Traceback" not in result.stderr
        text = " ".join(result.stderr.split())
        assert "read where `bgagents serve` runs" in text and "bgagents demo" in text, text
        assert "BGAGENTS_MODEL=demo" in text or re.search(r"'demo'(, which)? needs no key", text), text
        assert "Agent('test')" not in text, text
        assert len(result.stderr.strip().splitlines()) == 1 and text.count("demo") <= 3, text
    assert "OPENAI_API_KEY is not set" in " ".join(missing_key.stderr.split())
    assert "[conversation] model" in " ".join(main_agent.stderr.split())  # not eaten as markup


def test_serve_warns_about_a_default_model_it_cannot_use(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="openai:gpt-4o")
    server.env.pop("OPENAI_API_KEY", None)
    server.start(timeout=START)
    log = " ".join(server.log_text().split())
    assert "warning: the default model cannot be used" in log and "OPENAI_API_KEY is not set" in log


def test_url_without_scheme_is_one_line(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    server.env["BGAGENTS_URL"] = f"127.0.0.1:{server.port}"
    result = server.cli("ls")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: BGAGENTS_URL '127.0.0.1:{server.port}' needs a scheme: e.g. http://127.0.0.1:{server.port}"]


def test_a_cancel_is_one_info_line_in_the_server_log(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo", BGAGENTS_DEMO_PAUSE="0.5")
    server.start(timeout=START)
    with server.client() as client:
        task = client.post("/tasks", json={"prompt": "long demo", "model": "demo"}).json()
        wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["progress"]["requests"] >= 2, 30, "mid-way")
        before = len(server.log_text().splitlines())
        assert server.cli("cancel", task["id"]).returncode == 0
        wait_for(lambda: client.get(f"/tasks/{task['id']}").json()["status"] == "cancelled", 10, "the cancel")
        time.sleep(1.5)  # whatever DBOS logs about the cancelled workflow comes within this
    after = server.log_text().splitlines()[before:]
    assert len(after) == 1, after
    assert f"INFO bgagents.tasks: task {task['id']} ({task['name']}) cancelled (user)" in after[0]


def test_chat_message_prints_the_background_results(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start(timeout=START)
    assert "warning" not in server.log_text()  # a usable default model: nothing to warn about
    result = server.cli("chat", "-m", "research the history of tea", "--wait", "60", timeout=90)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "a background agent is on it" in out  # the answer, then the agent's result
    assert "reports: Finished: 'research the history of tea'" in out, out
    quick = server.cli("chat", "-m", "hello", "--wait", "60")
    assert quick.returncode == 0 and "You said 'hello'" in quick.stdout and "reports:" not in quick.stdout


def _demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update({"TMPDIR": str(tmp_path / "tmp"), "BGAGENTS_DEMO_PAUSE": "0.01", "HOME": str(tmp_path)})
    return subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "demo", "--agents", "1", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)


@contextlib.contextmanager
def _kept_demo(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`bgagents demo --keep`, once it says its server is up; killed at the end if still running."""
    kept = _demo(tmp_path, "--keep")
    assert kept.stdout is not None
    try:
        for line in kept.stdout:
            if "Ctrl-C stops the server" in line:
                break
        yield kept
    finally:
        if kept.poll() is None:
            kept.kill()
            kept.wait()


@pytest.mark.slow
def test_demo_removes_its_home_unless_kept(tmp_path: Path) -> None:
    demo = _demo(tmp_path)
    output, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, output
    assert list((tmp_path / "tmp").glob("bgagents-demo-*")) == []
    with _kept_demo(tmp_path) as kept:
        kept.send_signal(signal.SIGINT)
        kept.communicate(timeout=60)
    [home] = (tmp_path / "tmp").glob("bgagents-demo-*")
    assert (home / "workspace" / "demo-notes").is_dir()


@pytest.mark.slow
def test_a_demo_killed_leaves_no_server_behind(tmp_path: Path) -> None:
    """`kill -9` of `bgagents demo --keep`: its server reads end-of-file on the demo's pipe and stops."""
    with _kept_demo(tmp_path) as kept:
        [home] = (tmp_path / "tmp").glob("bgagents-demo-*")
        servers = [int(p) for p in subprocess.run(["pgrep", "-f", "-P", str(kept.pid), "bgagents.cli.main serve"],
                                                    capture_output=True, text=True).stdout.split()]
        assert len(servers) == 1
        kept.kill()
        kept.wait()
        wait_for(lambda: not alive(servers[0]), 30, "the demo's server to stop")
        assert "the process that started it is gone" in (home / "server.log").read_text()
