"""Reads and writes of the schedule tables (synchronous; run in the core store's worker threads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from ..core.store import Store
from ..errors import Conflict, NotFound
from . import tables
from .spec import LastRun, Schedule

T = TypeVar("T")
Row = sa.Row[Any]


def schedule_of(row: Row, last: Row | None = None, next_run_at: float | None = None) -> Schedule:
    return Schedule.model_validate({**row.spec, "name": row.name, "paused": row.paused, "source": row.source,
                                    "created_at": row.created_at, "done": row.done, "next_run_at": next_run_at,
                                    "last_run": run_of(last) if last is not None else None})


def run_of(row: Row) -> LastRun:
    return LastRun.model_validate({k: v for k, v in row._mapping.items() if k not in ("id", "schedule")})


class ScheduleStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.clock = store.clock

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.store.run(fn, *args)

    def add_sync(self, name: str, spec: dict[str, Any], paused: bool, source: str, origin: str | None = None,
                 file_entry: dict[str, Any] | None = None) -> Row:
        """Stores a new schedule; its runs start after now. A name taken is a Conflict; a replayed
        origin (the agent's tool call again) returns the schedule it made."""
        with self.engine.begin() as conn:
            if origin is not None:
                found = conn.execute(sa.select(tables.schedules).where(tables.schedules.c.origin == origin)).first()
                if found is not None:
                    return found
            if conn.execute(sa.select(tables.schedules.c.name).where(tables.schedules.c.name == name)).first():
                raise Conflict(f"a schedule named '{name}' exists; remove it first or pick another name",
                               code="schedule_exists")
            now = self.clock()
            conn.execute(tables.schedules.insert().values(name=name, spec=spec, paused=paused, source=source,
                                                          origin=origin, file_entry=file_entry, cursor=now,
                                                          done=False, created_at=now))
            return conn.execute(sa.select(tables.schedules).where(tables.schedules.c.name == name)).one()

    def replace_sync(self, name: str, spec: dict[str, Any], paused: bool, file_entry: dict[str, Any]) -> None:
        """A schedules.toml entry that changed: its new form counts from now."""
        with self.engine.begin() as conn:
            conn.execute(tables.schedules.update().where(tables.schedules.c.name == name).values(
                spec=spec, paused=paused, file_entry=file_entry, cursor=self.clock(), done=False))

    def get_sync(self, name: str) -> Row:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.schedules).where(tables.schedules.c.name == name)).first()
        if row is None:
            raise NotFound(f"no schedule named '{name}'")
        return row

    def list_sync(self, source: str | None = None) -> list[Row]:
        query = sa.select(tables.schedules).order_by(tables.schedules.c.name)
        if source is not None:
            query = query.where(tables.schedules.c.source == source)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def active_sync(self) -> list[Row]:
        """The schedules that may have a run due: not paused, not a finished one-shot."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(tables.schedules).where(tables.schedules.c.paused.is_(False),
                                                                       tables.schedules.c.done.is_(False))))

    def last_runs_sync(self) -> dict[str, Row]:
        latest = sa.select(sa.func.max(tables.runs.c.id)).group_by(tables.runs.c.schedule)
        with self.engine.connect() as conn:
            return {r.schedule: r for r in conn.execute(sa.select(tables.runs).where(tables.runs.c.id.in_(latest)))}

    def remove_sync(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(tables.schedules.delete().where(tables.schedules.c.name == name)).rowcount:
                raise NotFound(f"no schedule named '{name}'")
            conn.execute(tables.runs.delete().where(tables.runs.c.schedule == name))

    def set_paused_sync(self, name: str, paused: bool) -> None:
        """Pauses or resumes; a resumed schedule's runs count from now (those skipped while paused do not
        catch up), except a one-shot, whose time may have passed: it fires late, as a missed one."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(tables.schedules).where(tables.schedules.c.name == name)).first()
            if row is None:
                raise NotFound(f"no schedule named '{name}'")
            values: dict[str, Any] = {"paused": paused}
            if not paused and row.paused and row.spec.get("cron"):
                values["cursor"] = self.clock()
            conn.execute(tables.schedules.update().where(tables.schedules.c.name == name).values(**values))

    def has_run(self, conn: sa.Connection, name: str, scheduled_at: float) -> bool:
        return conn.execute(sa.select(tables.runs.c.id).where(tables.runs.c.schedule == name,
                                                              tables.runs.c.scheduled_at == scheduled_at)).first() \
            is not None

    def has_run_sync(self, name: str, scheduled_at: float) -> bool:
        with self.engine.connect() as conn:
            return self.has_run(conn, name, scheduled_at)

    def insert_run(self, conn: sa.Connection, name: str, scheduled_at: float, **values: Any) -> None:
        """The run's row: a second insert of the same (schedule, scheduled_at) fails the transaction."""
        conn.execute(tables.runs.insert().values(schedule=name, scheduled_at=scheduled_at, fired_at=self.clock(),
                                                 **values))

    def insert_run_sync(self, name: str, scheduled_at: float, **values: Any) -> None:
        with self.engine.begin() as conn:
            self.insert_run(conn, name, scheduled_at, **values)

    def advance_sync(self, name: str, cursor: float, done: bool) -> None:
        """Marks runs up to `cursor` handled (never moving back, whoever else got further)."""
        with self.engine.begin() as conn:
            conn.execute(tables.schedules.update().where(tables.schedules.c.name == name,
                                                         tables.schedules.c.cursor < cursor).values(cursor=cursor))
            if done:
                conn.execute(tables.schedules.update().where(tables.schedules.c.name == name).values(done=True))

    def run_sync(self, name: str, scheduled_at: float) -> Row:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(tables.runs).where(tables.runs.c.schedule == name,
                                                             tables.runs.c.scheduled_at == scheduled_at)).one()
