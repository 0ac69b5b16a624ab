"""The runtime's own tables (tasks, events, transcripts, steering), beside DBOS's in one database."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from .sqlite_gate import GatedConnection, gate_for

metadata = sa.MetaData()

tasks = sa.Table(
    "bg_tasks",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("fallback_models", sa.JSON, nullable=False, default=list),
    sa.Column("concurrency_key", sa.String(256), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("parent_id", sa.String(64), nullable=True, index=True),
    sa.Column("root_id", sa.String(64), nullable=False),
    sa.Column("depth", sa.Integer, nullable=False, default=0),
    sa.Column("turn", sa.Integer, nullable=False, default=1),
    sa.Column("forked_from", sa.JSON, nullable=True),
    sa.Column("limits", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("queued_at", sa.Float, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("last_activity_at", sa.Float, nullable=True),
    sa.Column("progress", sa.JSON, nullable=False, default=dict),
    sa.Column("todos", sa.JSON, nullable=False, default=list),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("end_reason", sa.String(32), nullable=True),
    sa.Column("attempts", sa.JSON, nullable=False, default=list),
    # parent, turn and tool call of the background_task call that launched it: a replayed call finds it
    sa.Column("spawn_key", sa.String(256), nullable=True, unique=True),
    # set by who launches it (e.g. the main conversation): instructions before the profile's, a JSON
    # schema the final output must follow instead of plain text
    sa.Column("instructions", sa.Text, nullable=True),
    sa.Column("output_schema", sa.JSON, nullable=True),
    sa.Column("trace", sa.JSON, nullable=True),  # its latest turn's span, for links (see core/tracing.py)
    # isolation = "worktree": its own git worktree (see core/worktrees.py); workspace: where its tools work
    sa.Column("workspace", sa.Text, nullable=True),
    sa.Column("worktree", sa.JSON, nullable=True),
)

events = sa.Table(
    "bg_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("task_id", sa.String(64), nullable=True, index=True),
    sa.Column("conversation_id", sa.String(128), nullable=True, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON, nullable=False, default=dict),
)

messages = sa.Table(
    "bg_messages",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("turn", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("message", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

steering = sa.Table(
    "bg_steering",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(64), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("claimed", sa.Boolean, nullable=False, default=False),
)


notices = sa.Table(
    "bg_notices",
    metadata,
    sa.Column("child_id", sa.String(64), primary_key=True),  # one notice per child: exactly once
    sa.Column("parent_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered", sa.Boolean, nullable=False, default=False),
)

approvals = sa.Table(
    "bg_approvals",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(64), nullable=False, index=True),
    sa.Column("workflow_id", sa.String(80), nullable=False),
    sa.Column("tool", sa.String(128), nullable=False),
    sa.Column("args", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending, approved, denied, cancelled
    sa.Column("decision_reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("decided_at", sa.Float, nullable=True),
)



def _tune_sqlite(dbapi_conn: Any, _record: Any) -> None:
    """WAL and synchronous=NORMAL: measured 5.9x -> 3.7x of bare asyncio; durable across process crashes.

    IMMEDIATE transactions serialize writers up front (as DBOS does for its own engine)."""
    dbapi_conn.isolation_level = "IMMEDIATE"
    dbapi_conn.execute("PRAGMA busy_timeout=30000")
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")


def private_sqlite_file(url: str) -> None:
    """The database holds every prompt and answer: it is created readable by its owner only (0600),
    and SQLite gives its -wal and -shm files the mode of the database file."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


def connect(url: str, pool_size: int = 20) -> sa.Engine:
    """An engine with our settings; on SQLite the file is switched to WAL once (it stays so)."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    private_sqlite_file(url)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30,
                                                 "factory": GatedConnection},
                              pool_size=pool_size, max_overflow=pool_size)
    event.listen(engine, "connect", _tune_sqlite)
    gate = gate_for(str(sa.make_url(url).database))  # writers take turns here, not in the busy handler

    @event.listens_for(engine, "connect")
    def _gate(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.gate = gate
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    return engine


def create_engine(url: str) -> sa.Engine:
    """The engine of the runtime's own tables, which it creates when missing."""
    engine = connect(url)
    create_tables(engine, metadata)
    return engine


def create_tables(engine: sa.Engine, tables: sa.MetaData) -> None:
    """Creates the missing tables of `tables` (the core's, or an extension's) and adds missing columns,
    one process at a time (see `schema_lock`)."""
    with schema_lock(engine.url):
        tables.create_all(engine)
        _add_missing_columns(engine, tables)


SCHEMA_LOCK = sa.text("SELECT pg_try_advisory_lock(hashtextextended('bgagents-schema', 0))")
SCHEMA_LOCK_WAIT = 300.0  # seconds; a migration takes well under one
SCHEMA_LOCK_POLL = 0.2


@contextlib.contextmanager
def schema_lock(url: str | sa.URL, wait: float = SCHEMA_LOCK_WAIT) -> Iterator[None]:
    """While the schema is created or migrated (ours, and DBOS's), processes sharing a PostgreSQL database
    take turns: replicas started at once would otherwise each see a table missing and create it, and all but
    one fail. A session advisory lock on a fixed key, on a connection of its own, so it goes with the session
    whatever happens (a crash included). SQLite needs none: one process holds a SQLite home.

    The lock is tried, not waited for in a statement: DBOS's migration builds indexes CONCURRENTLY, which
    waits for every transaction open in the database, and a statement blocked on the lock is one (the
    processes waiting would wait on the one migrating, and it on them)."""
    url = sa.make_url(url)
    if not url.drivername.startswith("postgresql"):
        yield
        return
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            deadline = time.monotonic() + wait
            while not conn.execute(SCHEMA_LOCK).scalar():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another bgagents process has been creating or migrating the database's "
                                       f"tables for more than {wait:g} s; is one stuck?")
                time.sleep(SCHEMA_LOCK_POLL)
            yield  # closing the connection ends the session, and the lock with it
    finally:
        engine.dispose()


def _add_missing_columns(engine: sa.Engine, tables: sa.MetaData) -> None:
    """Upgrades a database made by an older version: columns added since are added (all nullable)."""
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in tables.sorted_tables:
            existing = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in existing:
                    assert column.nullable, f"{table.name}.{column.name} must be nullable to be added later"
                    kind = column.type.compile(engine.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
