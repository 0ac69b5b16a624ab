"""The pieces that make a busy server fast, checked for what they promise (timings live in benchmarks/)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bgagents.core import db
from bgagents.core.events import EventBus
from bgagents.core.models import ModelRegistry
from bgagents.core.schema import Event


def test_sqlite_writers_of_one_process_take_turns_without_the_busy_handler(tmp_path: Path) -> None:
    """With SQLite's busy handler off, concurrent writers would fail with 'database is locked'; the gate
    orders them, and every write lands."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    other = db.connect(f"sqlite:///{tmp_path / 'gate.db'}")  # a second engine on the file (as DBOS has)

    def no_busy_handler(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    for e in (engine, other):
        sa.event.listen(e, "connect", no_busy_handler)
        e.dispose()
    errors: list[BaseException] = []

    def writer(e: sa.Engine, k: int) -> None:
        try:
            for i in range(40):
                with e.begin() as conn:
                    conn.execute(db.steering.insert().values(task_id=f"t{k}", text=str(i), created_at=1.0,
                                                             claimed=False))
                    conn.execute(sa.select(db.steering.c.id).limit(1)).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(engine if k % 2 else other, k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.steering)).scalar() == 8 * 40


def test_openai_models_share_one_connection_pool_that_keeps_its_connections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    registry = ModelRegistry()
    a, b = registry.resolve("openai-chat:model-a"), registry.resolve("openai:model-b")
    assert a.provider is b.provider  # type: ignore[attr-defined]
    pool = a.provider.client._client  # type: ignore[attr-defined]
    assert pool._transport._pool._max_keepalive_connections >= 1000


async def test_watchers_of_one_task_are_offered_its_events_only() -> None:
    """A waiter on one task is not asked about every other task's events; watchers of all still get all."""
    bus = EventBus()
    asked: list[str | None] = []

    def accept(event: Event) -> bool:
        asked.append(event.task_id)
        return True

    def event(seq: int, task_id: str | None) -> Event:
        return Event(seq=seq, time=1.0, type="task.progress", task_id=task_id, data={})

    with bus.subscribe(accept, task_id="a") as of_a, bus.subscribe() as of_all:
        for seq, task_id in enumerate(["a", "b", None, "a"]):
            bus.announce(event(seq, task_id))
        assert [of_a.get_nowait().seq for _ in range(of_a.qsize())] == [0, 3]
        assert of_all.qsize() == 4
    assert asked == ["a", "a"]
    with bus.subscribe(accept, task_id="a"):
        pass
    bus.announce(event(9, "a"))  # nobody watches any more
    assert asked == ["a", "a"]
