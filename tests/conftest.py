"""Shared fixtures: a runtime on a temporary home, scripted models, a real server process."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Runtime, Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("BGAGENTS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BGAGENTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BGAGENTS_DEMO_PAUSE", "0.01")
    monkeypatch.chdir(tmp_path)


def make_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(home=tmp_path / "home", workspace=tmp_path / "ws", **kw)


POSTGRES_URL = os.environ.get("BGAGENTS_TEST_POSTGRES_URL")  # e.g. postgresql://postgres@127.0.0.1:54329


def fresh_postgres_database(name: str) -> str:
    """A new empty database on the test PostgreSQL server; returns its URL. The name gets a random suffix, so
    test runs side by side (pytest-xdist workers, or two checkouts) never share or drop each other's."""
    import psycopg

    assert POSTGRES_URL
    name = f"{name[:40]}_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_URL}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Runtime tests run on SQLite, and on PostgreSQL when BGAGENTS_TEST_POSTGRES_URL names a server."""
    if request.param == "sqlite":
        return make_settings(tmp_path)
    if not POSTGRES_URL:
        pytest.skip("BGAGENTS_TEST_POSTGRES_URL is not set")
    return make_settings(tmp_path, database_url=fresh_postgres_database(f"bg_{tmp_path.name[-20:]}".lower()))


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as rt:
        yield rt


def tool_returns(messages: list[ModelMessage]) -> int:
    return sum(isinstance(p, ToolReturnPart) for m in messages if isinstance(m, ModelRequest) for p in m.parts)


def user_texts(messages: list[ModelMessage]) -> list[str]:
    return [p.content for m in messages if isinstance(m, ModelRequest) for p in m.parts
            if isinstance(p, UserPromptPart) and isinstance(p.content, str)]


@dataclass
class Script:
    """A FunctionModel that calls `steps` tools in turn, then answers; it records every call it gets."""

    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answer: str = "done"
    delay: float = 0.0
    calls: list[list[ModelMessage]] = field(default_factory=list)
    before: Callable[[int], Any] | None = None

    async def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls.append(list(messages))
        if self.before is not None:
            result = self.before(len(self.calls))
            if asyncio.iscoroutine(result):
                await result
        if self.delay:
            await asyncio.sleep(self.delay)
        done = tool_returns(messages)
        if done < len(self.steps):
            name, args = self.steps[done]
            return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"call_{done}")])
        return ModelResponse(parts=[TextPart(self.answer)])

    def model(self, name: str = "script") -> FunctionModel:
        return FunctionModel(self, model_name=name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A real `bgagents serve` process on a temporary home."""

    home: Path
    env: dict[str, str]
    port: int
    token: str = "test-token"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str, timeout: float = 90.0) -> None:  # a loaded machine may take that long
        """`args`: more options of `serve` (e.g. `--workers 2`)."""
        log = open(self.home / f"server-{time.time_ns()}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(self.port), *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.home,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("server did not start:\n" + self.log_text())

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.home.glob("server-*.log")))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"},
                            timeout=30)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bgagents.cli.main", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.home)


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each live one at once, then waits for each (a kill after 30 s)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a real server is `slow` (README: `-m "not slow"`, the fast loop)."""
    for item in items:
        if "server_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        home = tmp_path / f"srv{len(servers)}"
        home.mkdir()
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
        full_env.update({
            "BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": "test-token", "BGAGENTS_URL": f"http://127.0.0.1:{port}",
            "BGAGENTS_DEMO_PAUSE": "0.05", "PYTHONPATH": str(ROOT), **env,
        })
        server = ServerProcess(home=home, env=full_env, port=port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def seed_tasks(settings: Settings, count: int, *, children_of_first: int = 0, status: str = "completed",
               prefix: str = "seeded") -> list[str]:
    """Writes `count` finished top-level tasks straight into the database (newest last), and
    `children_of_first` child tasks under the first one; returns the top-level ids."""
    from bgagents.core import db
    from bgagents.core.schema import Task

    settings.home.mkdir(parents=True, exist_ok=True)
    engine = db.create_engine(settings.sqlalchemy_url)
    now = time.time()
    rows: list[dict[str, Any]] = []
    ids = []
    for i in range(count):
        tid = f"bg_{prefix}{i:06d}"
        ids.append(tid)
        rows.append(Task(id=tid, name=f"{prefix}-{i}", status=status, prompt=f"{prefix} task number {i}",  # type: ignore[arg-type]
                         agent="general", model="demo", concurrency_key="demo", root_id=tid,
                         created_at=now - count + i, started_at=now - count + i, finished_at=now - count + i + 1)
                    .model_dump(mode="json"))
    for j in range(children_of_first):
        rows.append(Task(id=f"bg_{prefix}child{j:04d}", name=f"{prefix}-child-{j}", status=status,  # type: ignore[arg-type]
                         prompt=f"child {j}", agent="explore", model="demo", concurrency_key="demo",
                         parent_id=ids[0], root_id=ids[0], depth=1, created_at=now + j).model_dump(mode="json"))
    with engine.begin() as conn:
        conn.execute(db.tasks.insert(), rows)
    engine.dispose()
    return ids
