"""SQLite writers of one process take turns on a Python lock instead of SQLite's busy handler.

SQLite lets one writer at a time; another that finds the write lock taken sleeps in SQLite's busy
handler (1, 2, 5 ... 100 ms) and tries again, so under load the lock sits free while writers sleep.
Only one process uses a SQLite database (core/identity.py), so a lock per database file in this
process orders every write transaction of both engines (ours and DBOS's) with an immediate hand-over.
Reads (WAL) never wait. The busy timeout stays as a safety net.

A connection takes the gate before a statement that opens a write transaction (pysqlite begins one
before DML; DBOS sometimes says BEGIN itself) and gives it back when that transaction ends, or at
once when the statement ran outside one (a read, autocommit).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

_WRITES = ("insert", "update", "delete", "replace", "begin", "with", "create", "alter", "drop")


class Gate:
    """A lock that the thread holding it may take again (two connections in one thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            while self._owner is not None and self._owner != me:
                self._cond.wait()
            self._owner = me
            self._depth += 1

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth <= 0:
                self._depth = 0
                self._owner = None
                self._cond.notify()


_gates: dict[str, Gate] = {}
_gates_lock = threading.Lock()


def gate_for(path: str) -> Gate:
    with _gates_lock:
        return _gates.setdefault(path, Gate())


class GatedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> GatedCursor:
        conn: GatedConnection = self.connection  # type: ignore[assignment]
        conn.enter(sql)
        try:
            super().execute(sql, parameters)
        finally:
            conn.settle()
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> GatedCursor:
        conn: GatedConnection = self.connection  # type: ignore[assignment]
        conn.enter(sql)
        try:
            super().executemany(sql, seq_of_parameters)
        finally:
            conn.settle()
        return self


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions hold its database's gate (`gate` set on connect)."""

    gate: Gate | None = None
    _holds = False

    def cursor(self, factory: Any = GatedCursor) -> Any:
        return super().cursor(factory)

    def enter(self, sql: str) -> None:
        if self.gate is not None and not self._holds and sql.lstrip()[:7].lower().startswith(_WRITES):
            self.gate.acquire()
            self._holds = True

    def settle(self) -> None:
        """After a statement: the gate goes back unless a transaction is still open."""
        if self._holds and not self.in_transaction:
            self._leave()

    def _leave(self) -> None:
        if self._holds and self.gate is not None:
            self._holds = False
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._leave()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._leave()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._leave()
