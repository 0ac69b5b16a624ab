"""Process identity: each process runs DBOS under an executor id of its own and holds a lock for as long
as it lives, so the work a live process holds is never run a second time, and a dead one's is taken over.

DBOS tags every workflow it runs with its executor id and, at launch, recovers only the pending
workflows of its own id; it does not know which other executors are alive. The lock says so:
- SQLite (one process per database): an exclusive `flock` on a file beside the database. A second
  process on the same database is refused; every other executor id found there is dead.
- PostgreSQL (many processes): a session advisory lock keyed by the executor id, held on a connection
  of its own. The server drops it the moment the process dies (its socket closes), so an executor
  whose lock can be taken is dead, and whoever takes it recovers its workflows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import IO, Protocol

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from ..errors import BgAgentsError


class DatabaseInUse(BgAgentsError):
    """Another live process runs the tasks of this SQLite database."""

    code = "database_in_use"
    status = 409


def new_executor_id() -> str:
    """Readable and unique: host, pid and a random suffix (a pid is reused after a restart)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Lease(Protocol):
    executor_id: str

    def acquire(self) -> None:
        """Marks this process alive; raises `DatabaseInUse` where only one process may run."""

    def release(self) -> None: ...

    def claim_dead(self, executor_id: str) -> bool:
        """True when no live process holds `executor_id`; the claim stops others recovering it too,
        until `release_claim`."""

    def release_claim(self, executor_id: str) -> None: ...


class FileLease:
    """One process per SQLite database: an exclusive lock on `<database>.lock`, holding the pid for
    the message a second process gets."""

    def __init__(self, path: Path, executor_id: str) -> None:
        self.path = path
        self.executor_id = executor_id
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # held open for the life of the process
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise DatabaseInUse(
                f"{holder} is already running the tasks of {self.path.with_suffix('')} (lock {self.path}); "
                "stop it first, or use another BGAGENTS_HOME; several processes need PostgreSQL "
                "(BGAGENTS_DATABASE_URL)") from None
        f.seek(0)
        f.truncate()
        f.write(f"bgagents pid {os.getpid()} (executor {self.executor_id})\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing drops the lock
            self._file = None

    def claim_dead(self, executor_id: str) -> bool:
        return executor_id != self.executor_id  # we hold the database: nobody else is alive

    def release_claim(self, executor_id: str) -> None:
        """Nothing to release: on SQLite one process holds the whole database."""


class PostgresLease:
    """Session advisory locks on a connection of their own, one key per executor id."""

    def __init__(self, url: str, executor_id: str) -> None:
        self.url = url
        self.executor_id = executor_id
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()  # one connection, used from worker threads

    def _execute(self, sql: str, key: str) -> bool:
        assert self._conn is not None, "the lease is not acquired"
        with self._lock:
            return bool(self._conn.execute(sa.text(sql), {"key": "bgagents-executor:" + key}).scalar())

    def acquire(self) -> None:
        self._engine = sa.create_engine(self.url, poolclass=NullPool)
        self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._execute("SELECT pg_advisory_lock(hashtextextended(:key, 0)) IS NULL", self.executor_id)

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # ends the session: its locks go
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def claim_dead(self, executor_id: str) -> bool:
        if executor_id == self.executor_id:
            return False
        return self._execute("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))", executor_id)

    def release_claim(self, executor_id: str) -> None:
        self._execute("SELECT pg_advisory_unlock(hashtextextended(:key, 0))", executor_id)


def lease_for(url: str, executor_id: str) -> Lease:
    """The lease that fits the database at `url` (a SQLAlchemy URL)."""
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        if not database or database == ":memory:":
            raise ValueError("a SQLite database needs a file")
        return FileLease(Path(database + ".lock"), executor_id)
    return PostgresLease(url, executor_id)


def pending_executors(engine: sa.Engine) -> list[str]:
    """Executor ids that DBOS says are running workflows right now (workflows in PENDING)."""
    table = "workflow_status" if engine.dialect.name == "sqlite" else "dbos.workflow_status"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"SELECT DISTINCT executor_id FROM {table} WHERE status = 'PENDING' AND executor_id IS NOT NULL"))
        return [r[0] for r in rows]
