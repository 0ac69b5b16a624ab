"""Process identity: each process runs DBOS under an executor id of its own and holds a lock for as long
as it lives, so the work a live process holds is never run a second time, and a dead one's is taken over.

DBOS tags every workflow it runs with its executor id and, at launch, recovers only the pending
workflows of its own id; it does not know which other executors are alive. The lock says so:
- SQLite (one process per database): an exclusive `flock` on a file beside the database. A second
  process on the same database is refused; every other executor id found there is dead.
- PostgreSQL (many processes): a session advisory lock keyed by the executor id, held on a connection
  of its own. The server drops it the moment the process dies (its socket closes), so an executor
  whose lock stays free is dead, and whoever takes it recovers its workflows. The connection can also
  drop while the process lives (a restart of PostgreSQL, `pg_terminate_backend`): the process checks
  it often (`check`) and takes its lock again on a new one, well before others stop waiting
  (`takeover_grace`); if another process holds it by then, that one is taking its work over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import IO, Literal, Protocol

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


LeaseState = Literal["held", "regained", "lost"]


class Lease(Protocol):
    executor_id: str

    def acquire(self) -> None:
        """Marks this process alive; raises `DatabaseInUse` where only one process may run."""

    def release(self) -> None: ...

    def check(self) -> LeaseState:
        """`held`: this process still holds its lock. `regained`: the lock was lost and is held again, on a
        new connection (others may have taken work over meanwhile). `lost`: not held now (another process
        holds it, or the database cannot be reached); asked again, it tries again."""

    def is_free(self, executor_id: str) -> bool:
        """True when no live process holds `executor_id` now (a look: nothing is claimed)."""

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
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        f = open(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")  # held for the process's life
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

    def check(self) -> LeaseState:
        return "held"  # a lock on a file this process keeps open cannot be lost

    def is_free(self, executor_id: str) -> bool:
        return executor_id != self.executor_id  # we hold the database: nobody else is alive

    def claim_dead(self, executor_id: str) -> bool:
        return self.is_free(executor_id)

    def release_claim(self, executor_id: str) -> None:
        """Nothing to release: on SQLite one process holds the whole database."""


class PostgresLease:
    """Session advisory locks on a connection of their own, one key per executor id."""

    def __init__(self, url: str, executor_id: str) -> None:
        self.url = url
        self.executor_id = executor_id
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._held = False  # this process's own lock is held on `_conn`
        self._lock = threading.Lock()  # one connection, used from worker threads

    def _execute(self, sql: str, key: str) -> bool:
        assert self._conn is not None, "the lease is not acquired"
        return bool(self._conn.execute(sa.text(sql), {"key": "bgagents-executor:" + key}).scalar())

    def _connect(self) -> sa.Connection:
        assert self._engine is not None, "the lease is not acquired"
        return self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # ends the session: its locks go
            self._conn = None
        self._held = False

    def acquire(self) -> None:
        self._engine = sa.create_engine(self.url, poolclass=NullPool)
        self._conn = self._connect()
        with self._lock:
            self._execute("SELECT pg_advisory_lock(hashtextextended(:key, 0)) IS NULL", self.executor_id)
            self._held = True

    def release(self) -> None:
        with self._lock:
            self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def check(self) -> LeaseState:
        with self._lock:
            if self._held:
                try:
                    assert self._conn is not None
                    self._conn.execute(sa.text("SELECT 1"))  # the session lives: its locks are held
                    return "held"
                except sa.exc.SQLAlchemyError:
                    self._drop()
            try:
                if self._conn is None:
                    self._conn = self._connect()
                if self._execute("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))", self.executor_id):
                    self._held = True
                    return "regained"
            except sa.exc.SQLAlchemyError:
                self._drop()
            return "lost"

    def _ask(self, sql: str, executor_id: str) -> bool | None:
        """`sql` about another executor; None while this process does not hold its own lock (not sure of
        itself, it takes nobody for dead), or when the connection drops (`check` takes the lock again)."""
        if executor_id == self.executor_id:
            return None
        with self._lock:
            if not self._held:
                return None
            try:
                return self._execute(sql, executor_id)
            except sa.exc.SQLAlchemyError:
                self._drop()
                return None

    def is_free(self, executor_id: str) -> bool:
        # an advisory lock on a bigint key shows in pg_locks as its high and low 32 bits
        held = self._ask("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
                         "AND granted AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(:key, 0))",
                         executor_id)
        return held is False

    def claim_dead(self, executor_id: str) -> bool:
        return bool(self._ask("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))", executor_id))

    def release_claim(self, executor_id: str) -> None:
        """After a dropped connection there is nothing to release: it took its claims with it."""
        self._ask("SELECT pg_advisory_unlock(hashtextextended(:key, 0))", executor_id)


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


def own_pending(engine: sa.Engine, executor_id: str) -> dict[str, str | None]:
    """The workflows DBOS says `executor_id` is running (PENDING): workflow id -> queue name."""
    table = "workflow_status" if engine.dialect.name == "sqlite" else "dbos.workflow_status"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT workflow_uuid, queue_name FROM {table} "
                                    "WHERE status = 'PENDING' AND executor_id = :executor"),
                            {"executor": executor_id})
        return {r[0]: r[1] for r in rows}
