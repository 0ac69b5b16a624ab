"""Reads and writes of the runtime's tables. Every state change is written with its event, in one transaction.

Calls are synchronous SQLAlchemy run in a worker thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelRequest, ModelResponse, ToolCallPart
from pydantic_core import to_jsonable_python

from . import db
from .extensions import Extension
from .schema import ACTIVE, TERMINAL, Approval, Event, Progress, Task

T = TypeVar("T")


def _task_from_row(row: sa.Row[Any]) -> Task:
    values = dict(row._mapping)
    values.pop("spawn_key", None)
    return Task.model_validate(values)


def _event_from_row(row: sa.Row[Any]) -> Event:
    return Event.model_validate(dict(row._mapping))


def _dump_message(message: ModelMessage) -> Any:
    return to_jsonable_python(message, bytes_mode="base64")


def _one_line(text: str, limit: int) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def load_messages(rows: Iterable[Any]) -> list[ModelMessage]:
    return list(ModelMessagesTypeAdapter.validate_python(list(rows)))


def continuable(history: list[Any]) -> list[Any]:
    """The history without a trailing response whose tool calls have no results yet (a session forked
    mid-turn): such a call cannot be continued, so the copy ends at the message before it."""
    while history and isinstance(history[-1], ModelResponse) and any(
            isinstance(p, ToolCallPart) for p in history[-1].parts):
        history.pop()
    return history



# The statements of every step of a turn, built once with their values as parameters: building a SQLAlchemy
# statement and its cache key took more CPU than SQLite takes to run it (a task row read: 87 -> 40 us).
# WHERE parameters are named `w_*`, since an UPDATE takes its SET columns from the parameters' names.
_TASK = sa.select(db.tasks).where(db.tasks.c.id == sa.bindparam("w_id"))
_TODOS = sa.select(db.tasks.c.todos).where(db.tasks.c.id == sa.bindparam("w_id"))
_UPDATE_TASK = db.tasks.update().where(db.tasks.c.id == sa.bindparam("w_id"))
_UPDATE_TASK_IN = _UPDATE_TASK.where(db.tasks.c.status.in_(sa.bindparam("w_status", expanding=True)))
_INSERT_TASK = db.tasks.insert()
_INSERT_EVENT = db.events.insert()
_DELETE_MESSAGES = db.messages.delete().where(db.messages.c.session_id == sa.bindparam("w_session"),
                                              db.messages.c.idx >= sa.bindparam("w_from"),
                                              db.messages.c.idx < sa.bindparam("w_to"))
_INSERT_MESSAGES = db.messages.insert()
_UNCLAIMED = (sa.select(db.steering.c.id, db.steering.c.text)
              .where(db.steering.c.task_id == sa.bindparam("w_task"), db.steering.c.claimed.is_(False))
              .order_by(db.steering.c.id))
_CLAIM = db.steering.update().where(db.steering.c.id.in_(sa.bindparam("w_ids", expanding=True)))
_TURN_MESSAGE = sa.select(db.messages.c.idx).where(db.messages.c.session_id == sa.bindparam("w_session"),
                                                  db.messages.c.turn == sa.bindparam("w_turn")).limit(1)
_LAST_INDEX = sa.select(sa.func.max(db.messages.c.idx)).where(db.messages.c.session_id == sa.bindparam("w_session"))
_LAST_MESSAGE = (sa.select(db.messages.c.idx, db.messages.c.kind, db.messages.c.message)
                 .where(db.messages.c.session_id == sa.bindparam("w_session"),
                        db.messages.c.turn < sa.bindparam("w_turn"))
                 .order_by(db.messages.c.idx.desc()).limit(1))


def _update_task(conn: sa.Connection, task_id: str, values: dict[str, Any],
                 only_if_status: Iterable[str] | None = None) -> int:
    """Sets `values` (JSON-ready) on a task, only from those states when given; how many rows changed."""
    if only_if_status is None:
        return conn.execute(_UPDATE_TASK, {**values, "w_id": task_id}).rowcount
    return conn.execute(_UPDATE_TASK_IN, {**values, "w_id": task_id, "w_status": list(only_if_status)}).rowcount


class Store:
    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] = time.time,
                 extensions: Sequence[Extension] = ()) -> None:
        self.engine = engine
        self.clock = clock
        self.extensions = extensions  # their task_ended hooks join the transaction that ends a task
        # our own threads: the loop's default executor belongs to DBOS, which shuts it down on destroy
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="bgagents-db")
        self._inline = engine.dialect.name == "sqlite"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def quick(self, fn: Callable[..., T], *args: Any) -> T:
        """A short statement of a task's turn. On SQLite it runs right here on the loop: a local file is
        read or written in well under a millisecond, less than a trip to a thread costs, and under load
        getting the GIL back from the loop took milliseconds more. PostgreSQL is a network round trip:
        the pool."""
        if self._inline:
            return fn(*args)
        return await self.run(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- tasks -------------------------------------------------------------------------------------

    def insert_event(self, conn: sa.Connection, type_: str, task_id: str | None, data: dict[str, Any],
                      conversation_id: str | None = None) -> Event:
        now = self.clock()
        seq = conn.execute(_INSERT_EVENT, {"time": now, "type": type_, "task_id": task_id,
                                           "data": to_jsonable_python(data), "conversation_id": conversation_id}
                           ).inserted_primary_key
        assert seq is not None
        return Event(seq=seq[0], time=now, type=type_, task_id=task_id, conversation_id=conversation_id,
                     data=data)

    def _insert_task(self, conn: sa.Connection, task: Task, messages: Sequence[ModelMessage],
                     spawn_key: str | None) -> Event:
        values = task.model_dump(mode="json", exclude={"subtree"})
        conn.execute(_INSERT_TASK, {**values, "spawn_key": spawn_key})
        self._insert_messages(conn, task.id, 0, 0, messages)
        return self.insert_event(conn, "task.queued", task.id, {"task": values})

    def insert_task_sync(self, task: Task, messages: Sequence[ModelMessage] = (), spawn_key: str | None = None,
                         also: Callable[[sa.Connection], None] | None = None) -> Event:
        """Stores a new task; `also` writes in the same transaction (e.g. what launched it, exactly once)."""
        with self.engine.begin() as conn:
            event = self._insert_task(conn, task, messages, spawn_key)
            if also is not None:
                also(conn)
            return event

    def insert_tasks_sync(self, items: Sequence[tuple[Task, Sequence[ModelMessage], str | None]]) -> list[Event]:
        """Several tasks in one transaction: all stored, or none."""
        with self.engine.begin() as conn:
            return [self._insert_task(conn, task, messages, spawn_key) for task, messages, spawn_key in items]

    async def insert_tasks(self, items: Sequence[tuple[Task, Sequence[ModelMessage], str | None]]) -> list[Event]:
        return await self.run(self.insert_tasks_sync, items)

    async def insert_task(self, task: Task, messages: Sequence[ModelMessage] = (), spawn_key: str | None = None,
                          also: Callable[[sa.Connection], None] | None = None) -> Event:
        return await self.quick(self.insert_task_sync, task, messages, spawn_key, also)

    def _one_task(self, query: sa.Select[Any], params: dict[str, Any] | None = None) -> Task | None:
        with self.engine.connect() as conn:
            row = conn.execute(query, params).first()
        return _task_from_row(row) if row else None

    async def task_by_spawn_key(self, spawn_key: str) -> Task | None:
        return await self.run(self._one_task, sa.select(db.tasks).where(db.tasks.c.spawn_key == spawn_key))

    def get_task_sync(self, task_id: str) -> Task | None:
        return self._one_task(_TASK, {"w_id": task_id})

    async def get_task(self, task_id: str) -> Task | None:
        return await self.quick(self.get_task_sync, task_id)

    def list_tasks_sync(self, status: Sequence[str] | None = None, parent_id: str | None = None,
                        limit: int | None = None, ids: Sequence[str] | None = None) -> list[Task]:
        query = sa.select(db.tasks).order_by(db.tasks.c.created_at.desc(), db.tasks.c.id.desc())
        if status:
            query = query.where(db.tasks.c.status.in_(list(status)))
        if parent_id is not None:
            query = query.where(db.tasks.c.parent_id == parent_id)
        if ids is not None:
            query = query.where(db.tasks.c.id.in_(list(ids)))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_task_from_row(row) for row in conn.execute(query)]

    async def list_tasks(self, status: Sequence[str] | None = None, parent_id: str | None = None,
                         limit: int | None = None, ids: Sequence[str] | None = None) -> list[Task]:
        return await self.run(self.list_tasks_sync, status, parent_id, limit, ids)

    def find_tasks_sync(self, status: Sequence[str] | None, search: str | None, top_level: bool,
                        offset: int, limit: int) -> tuple[list[Task], int]:
        """One page of tasks (newest first) matching the filters, and how many match in all."""
        where: list[sa.ColumnElement[bool]] = []
        if status:
            where.append(db.tasks.c.status.in_(list(status)))
        if top_level:
            where.append(db.tasks.c.parent_id.is_(None))
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(sa.or_(*(column.ilike(pattern, escape="\\") for column in (
                db.tasks.c.id, db.tasks.c.name, db.tasks.c.prompt, db.tasks.c.agent, db.tasks.c.model))))
        query = (sa.select(db.tasks).where(*where).order_by(db.tasks.c.created_at.desc(), db.tasks.c.id.desc())
                 .offset(offset).limit(limit))
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(db.tasks).where(*where)).scalar_one()
            return [_task_from_row(row) for row in conn.execute(query)], total

    def tasks_under_sync(self, root_ids: Sequence[str], limit: int) -> list[Task]:
        """The descendants of these root tasks, oldest first."""
        query = (sa.select(db.tasks).where(db.tasks.c.root_id.in_(list(root_ids)), db.tasks.c.parent_id.is_not(None))
                 .order_by(db.tasks.c.created_at, db.tasks.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [_task_from_row(row) for row in conn.execute(query)]

    def last_event_seq_sync(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(db.events.c.seq))).scalar_one() or 0)

    def update_task_sync(self, task_id: str, values: dict[str, Any], event_type: str | None,
                         event_data: dict[str, Any] | None = None,
                         only_if_status: Iterable[str] | None = None) -> Event | bool | None:
        """Updates a task and stores its event atomically; with `only_if_status`, only from those states.

        Returns the event (or True when there is none) when the row changed, None when it did not.
        """
        with self.engine.begin() as conn:
            if not _update_task(conn, task_id, to_jsonable_python(values), only_if_status):
                return None
            if values.get("status") in TERMINAL:
                self._close_approvals(conn, task_id, values)
                self._notify_parent(conn, task_id)
                for extension in self.extensions:
                    extension.task_ended(conn, task_id)
            if event_type is None:
                return True
            return self.insert_event(conn, event_type, task_id, event_data or {})

    def _notify_parent(self, conn: sa.Connection, child_id: str) -> None:
        """Records the child's end for its parent, in the transaction that ends it: exactly once.

        While siblings are still active the notice waits quietly; when the last one ends (or one
        fails) the parent gets one summary of every waiting notice, as a steering message that
        reaches it at its next step (or when it is resumed)."""
        child = conn.execute(_TASK, {"w_id": child_id}).first()
        if child is None or not child.parent_id:
            return
        if conn.execute(sa.select(db.notices.c.child_id).where(db.notices.c.child_id == child_id)).first():
            return
        now = self.clock()
        began = child.started_at or child.created_at
        seconds = max(0, int((child.finished_at or now) - began))
        detail = ""
        if child.status == "completed" and child.result and child.result.get("text"):
            detail = f" — result: {_one_line(child.result['text'], 300)}"
        elif child.error:
            detail = f" — {child.end_reason or 'error'}: {_one_line(child.error, 300)}"
        summary = f"- {child.id} ({child.name}): {child.status} after {seconds}s{detail}"
        conn.execute(db.notices.insert().values(child_id=child_id, parent_id=child.parent_id, status=child.status,
                                                summary=summary, created_at=now, delivered=False))
        active = conn.execute(sa.select(sa.func.count()).select_from(db.tasks).where(
            db.tasks.c.parent_id == child.parent_id, db.tasks.c.status.in_(list(ACTIVE)))).scalar_one()
        if active and child.status != "failed":
            return
        waiting = conn.execute(sa.select(db.notices.c.child_id, db.notices.c.summary)
                               .where(db.notices.c.parent_id == child.parent_id, db.notices.c.delivered.is_(False))
                               .order_by(db.notices.c.created_at)).all()
        conn.execute(db.notices.update().where(db.notices.c.child_id.in_([w.child_id for w in waiting]))
                     .values(delivered=True))
        head = "A background task failed" if child.status == "failed" and active else "Background tasks finished"
        text = (f"<background-tasks>\n{head}:\n" + "\n".join(w.summary for w in waiting)
                + ("\n(other tasks are still running)" if active else "")
                + "\nUse background_output(task_id) for a full result.\n</background-tasks>")
        parent_is_task = conn.execute(sa.select(db.tasks.c.id).where(db.tasks.c.id == child.parent_id)).first()
        if parent_is_task:
            conn.execute(db.steering.insert().values(task_id=child.parent_id, text=text, created_at=now))
            self.insert_event(conn, "task.children_done", child.parent_id,
                               {"children": [w.child_id for w in waiting], "summary": text})
        else:
            self.insert_event(conn, "conversation.children_done", None,
                               {"children": [w.child_id for w in waiting], "summary": text},
                               conversation_id=child.parent_id)

    async def update_task(self, task_id: str, values: dict[str, Any], event_type: str | None,
                          event_data: dict[str, Any] | None = None,
                          only_if_status: Iterable[str] | None = None) -> Event | bool | None:
        return await self.quick(self.update_task_sync, task_id, values, event_type, event_data, only_if_status)

    def count_descendants_sync(self, root_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(db.tasks).where(db.tasks.c.root_id == root_id,
                                                                       db.tasks.c.id != root_id)
            ).scalar_one())

    async def count_descendants(self, root_id: str) -> int:
        return await self.run(self.count_descendants_sync, root_id)

    def running_counts_sync(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.tasks.c.concurrency_key, sa.func.count())
                .where(db.tasks.c.status.in_(["running", "waiting"]))
                .group_by(db.tasks.c.concurrency_key)
            )
            return {key: int(n) for key, n in rows}

    # -- events ------------------------------------------------------------------------------------

    def add_event_sync(self, type_: str, task_id: str | None, data: dict[str, Any],
                       conversation_id: str | None = None) -> Event:
        with self.engine.begin() as conn:
            return self.insert_event(conn, type_, task_id, data, conversation_id)

    async def add_event(self, type_: str, task_id: str | None, data: dict[str, Any],
                        conversation_id: str | None = None) -> Event:
        return await self.quick(self.add_event_sync, type_, task_id, data, conversation_id)

    def events_since_sync(self, since: int, task_id: str | None = None, conversation_id: str | None = None,
                          limit: int = 500) -> list[Event]:
        query = sa.select(db.events).where(db.events.c.seq > since).order_by(db.events.c.seq).limit(limit)
        if task_id is not None:
            query = query.where(db.events.c.task_id == task_id)
        if conversation_id is not None:
            query = query.where(db.events.c.conversation_id == conversation_id)
        with self.engine.connect() as conn:
            return [_event_from_row(row) for row in conn.execute(query)]

    async def events_since(self, since: int, task_id: str | None = None, conversation_id: str | None = None,
                           limit: int = 500) -> list[Event]:
        return await self.run(self.events_since_sync, since, task_id, conversation_id, limit)

    # -- transcripts -------------------------------------------------------------------------------

    def _insert_messages(self, conn: sa.Connection, session_id: str, turn: int, start: int,
                         messages: Sequence[ModelMessage]) -> None:
        """Upserts messages from index `start`: a replayed step writes the same rows again, harmlessly."""
        if not messages:
            return
        now = self.clock()
        conn.execute(_DELETE_MESSAGES, {"w_session": session_id, "w_from": start, "w_to": start + len(messages)})
        conn.execute(_INSERT_MESSAGES, [
            {"session_id": session_id, "idx": start + i, "turn": turn,
             "kind": "response" if isinstance(m, ModelResponse) else "request",
             "message": _dump_message(m), "created_at": now}
            for i, m in enumerate(messages)
        ])

    def save_messages_sync(self, session_id: str, turn: int, start: int, messages: Sequence[ModelMessage],
                           task_values: dict[str, Any] | None = None, event_type: str | None = None,
                           event_data: dict[str, Any] | None = None) -> Event | None:
        with self.engine.begin() as conn:
            # a turn's progress: nothing more is written once the task was cancelled
            if task_values and not _update_task(conn, session_id, to_jsonable_python(task_values),
                                                ("running", "waiting")):
                return None
            self._insert_messages(conn, session_id, turn, start, messages)
            if event_type:
                return self.insert_event(conn, event_type, session_id, event_data or {})
        return None

    async def save_messages(self, session_id: str, turn: int, start: int, messages: Sequence[ModelMessage],
                            task_values: dict[str, Any] | None = None, event_type: str | None = None,
                            event_data: dict[str, Any] | None = None) -> Event | None:
        return await self.quick(self.save_messages_sync, session_id, turn, start, messages, task_values,
                               event_type, event_data)

    def open_turn_sync(self, session_id: str, turn: int, request: ModelRequest) -> None:
        """Stores a turn's first request as the transcript's next message, unless the turn stored messages
        already (a replay after a crash, which must not add it twice)."""
        with self.engine.begin() as conn:
            if conn.execute(_TURN_MESSAGE, {"w_session": session_id, "w_turn": turn}).first() is not None:
                return
            last = conn.execute(_LAST_INDEX, {"w_session": session_id}).scalar()
            self._insert_messages(conn, session_id, turn, 0 if last is None else last + 1, [request])

    async def open_turn(self, session_id: str, turn: int, request: ModelRequest) -> None:
        await self.quick(self.open_turn_sync, session_id, turn, request)

    def message_rows_sync(self, session_id: str, before_turn: int | None = None, since: int = 0,
                          limit: int | None = None) -> list[dict[str, Any]]:
        query = (sa.select(db.messages).where(db.messages.c.session_id == session_id, db.messages.c.idx >= since)
                 .order_by(db.messages.c.idx))
        if before_turn is not None:
            query = query.where(db.messages.c.turn < before_turn)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    async def message_rows(self, session_id: str, before_turn: int | None = None, since: int = 0,
                           limit: int | None = None) -> list[dict[str, Any]]:
        return await self.run(self.message_rows_sync, session_id, before_turn, since, limit)

    def open_request_sync(self, session_id: str, before_turn: int) -> dict[str, Any] | None:
        """The last message before `before_turn` if it is a request (a fork's copy may end with one), else
        None. The turn's first response rewrites that row with the turn's prompt merged in (as the model
        saw it), so a replay of the turn takes the row as it was from the turn's checkpoint."""
        with self.engine.connect() as conn:
            row = conn.execute(_LAST_MESSAGE, {"w_session": session_id, "w_turn": before_turn}).first()
        return {"idx": row.idx, "message": row.message} if row is not None and row.kind == "request" else None

    async def open_request(self, session_id: str, before_turn: int) -> dict[str, Any] | None:
        return await self.quick(self.open_request_sync, session_id, before_turn)

    async def history(self, session_id: str, before_turn: int,
                      open_request: dict[str, Any] | None = None) -> list[ModelMessage]:
        """The transcript before `before_turn`; with `open_request` (read at the turn's start), that row as
        it was then, so the first run of a turn and its replay after a crash see the same history."""
        rows = await self.message_rows(session_id, before_turn=before_turn)
        if open_request is not None:
            rows = [*(r for r in rows if r["idx"] < open_request["idx"]), open_request]
        return load_messages(row["message"] for row in rows)

    # -- steering ----------------------------------------------------------------------------------

    def add_steering_sync(self, task_id: str, text: str, allowed_status: Iterable[str]) -> Event | None:
        """Stores a steering message only while the task is in `allowed_status` (checked in the transaction)."""
        with self.engine.begin() as conn:
            status = conn.execute(sa.select(db.tasks.c.status).where(db.tasks.c.id == task_id)).scalar()
            if status not in set(allowed_status):
                return None
            conn.execute(db.steering.insert().values(task_id=task_id, text=text, created_at=self.clock()))
            return self.insert_event(conn, "task.steered", task_id, {"message": text})

    async def add_steering(self, task_id: str, text: str, allowed_status: Iterable[str]) -> Event | None:
        return await self.quick(self.add_steering_sync, task_id, text, allowed_status)

    def claim_steering_sync(self, task_id: str) -> list[str]:
        with self.engine.begin() as conn:
            rows = conn.execute(_UNCLAIMED, {"w_task": task_id}).all()
            if rows:
                conn.execute(_CLAIM, {"claimed": True, "w_ids": [r.id for r in rows]})
            return [r.text for r in rows]

    async def claim_steering(self, task_id: str) -> list[str]:
        return await self.quick(self.claim_steering_sync, task_id)

    # -- todos -------------------------------------------------------------------------------------

    def get_todos_sync(self, task_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(_TODOS, {"w_id": task_id}).scalar() or [])

    async def get_todos(self, task_id: str) -> list[dict[str, Any]]:
        return await self.quick(self.get_todos_sync, task_id)

    async def running_counts(self) -> dict[str, int]:
        return await self.run(self.running_counts_sync)

    # -- approvals ---------------------------------------------------------------------------------

    def insert_approval_sync(self, approval: Approval, workflow_id: str) -> Event | None:
        """Stores a pending approval and puts its task in `waiting`; a replay finds it already there.

        The task row is written first, as every writer of approvals does (the task, then its approvals), so
        two transactions never wait on each other. A task that already ended (cancelled while the call was
        being asked) gets its approval closed at once: nobody is asked about a task that is over."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(db.approvals.c.id).where(db.approvals.c.id == approval.id)).first():
                return None
            waiting = conn.execute(db.tasks.update().where(db.tasks.c.id == approval.task_id,
                                                           db.tasks.c.status.in_(["running", "waiting"]))
                                   .values(status="waiting")).rowcount
            row = approval.model_dump(mode="json")
            if not waiting:
                row.update(status="cancelled", decision_reason="the task had already ended", decided_at=self.clock())
            conn.execute(db.approvals.insert().values(**row, workflow_id=workflow_id))
            if not waiting:
                return None
            return self.insert_event(conn, "task.waiting", approval.task_id,
                                     {"approval": approval.model_dump(mode="json")})

    async def insert_approval(self, approval: Approval, workflow_id: str) -> Event | None:
        return await self.run(self.insert_approval_sync, approval, workflow_id)

    def decide_approval_sync(self, approval_id: str, decision: str, reason: str | None) -> tuple[Event, str] | None:
        """Records a decision on a pending approval; returns its event and the workflow to tell, or None when
        it was no longer pending. Exactly one decision wins, however many arrive at once: the update is
        conditional on `pending` and its row count says who won (PostgreSQL re-checks the condition once the
        winner commits; SQLite has one writer at a time)."""
        with self.engine.begin() as conn:
            task_id = conn.execute(sa.select(db.approvals.c.task_id).where(db.approvals.c.id == approval_id)).scalar()
            if task_id is None:
                return None
            # the task first, like every writer of approvals (no two transactions wait on each other)
            conn.execute(sa.select(db.tasks.c.id).where(db.tasks.c.id == task_id).with_for_update())
            status = "approved" if decision == "approve" else "denied"
            won = conn.execute(db.approvals.update().where(db.approvals.c.id == approval_id,
                                                           db.approvals.c.status == "pending")
                               .values(status=status, decision_reason=reason, decided_at=self.clock())).rowcount
            if not won:
                return None
            row = conn.execute(sa.select(db.approvals.c.tool, db.approvals.c.workflow_id)
                               .where(db.approvals.c.id == approval_id)).one()
            conn.execute(db.tasks.update().where(db.tasks.c.id == task_id, db.tasks.c.status == "waiting")
                         .values(status="running"))
            event = self.insert_event(conn, f"task.{status}", task_id,
                                      {"approval_id": approval_id, "tool": row.tool, "reason": reason})
            return event, row.workflow_id

    async def decide_approval(self, approval_id: str, decision: str, reason: str | None) -> tuple[Event, str] | None:
        return await self.run(self.decide_approval_sync, approval_id, decision, reason)

    def _close_approvals(self, conn: sa.Connection, task_id: str, values: dict[str, Any]) -> None:
        """A task that ends leaves no approval pending: nothing would run if it were approved."""
        why = "the task was cancelled" if values["status"] == "cancelled" else f"the task ended {values['status']}"
        if values.get("end_reason"):
            why += f" ({values['end_reason']})"
        conn.execute(db.approvals.update().where(db.approvals.c.task_id == task_id, db.approvals.c.status == "pending")
                     .values(status="cancelled", decision_reason=why, decided_at=self.clock()))

    def approvals_sync(self, status: str | None = None, approval_id: str | None = None) -> list[Approval]:
        query = sa.select(db.approvals).order_by(db.approvals.c.created_at)
        if status is not None:
            query = query.where(db.approvals.c.status == status)
        if approval_id is not None:
            query = query.where(db.approvals.c.id == approval_id)
        with self.engine.connect() as conn:
            return [Approval.model_validate(dict(r._mapping)) for r in conn.execute(query)]

    async def approvals(self, status: str | None = None, approval_id: str | None = None) -> list[Approval]:
        return await self.run(self.approvals_sync, status, approval_id)

    # -- retention ---------------------------------------------------------------------------------

    def prune_sync(self, finished_before: float) -> dict[str, int]:
        """Deletes tasks finished before the cutoff, unless a parent that is still active refers to them or
        an extension retains them (e.g. a conversation's main session, which its next event resumes)."""
        with self.engine.begin() as conn:
            parents = sa.select(db.tasks.c.id).where(db.tasks.c.status.in_(list(ACTIVE)))
            query = sa.select(db.tasks.c.id, db.tasks.c.turn).where(
                db.tasks.c.status.in_(list(TERMINAL)), db.tasks.c.finished_at < finished_before,
                sa.or_(db.tasks.c.parent_id.is_(None), db.tasks.c.parent_id.not_in(parents)))
            for extension in self.extensions:
                kept = extension.retained()
                if kept is not None:
                    query = query.where(db.tasks.c.id.not_in(kept))
            old_turns = {r.id: r.turn for r in conn.execute(query)}
            old = list(old_turns)
            for table, column in ((db.messages, db.messages.c.session_id), (db.events, db.events.c.task_id),
                                  (db.steering, db.steering.c.task_id), (db.approvals, db.approvals.c.task_id),
                                  (db.tasks, db.tasks.c.id)):  # session rows stay: they keep names unique
                for i in range(0, len(old), 500):
                    conn.execute(table.delete().where(column.in_(old[i:i + 500])))
            return old_turns

    def _usage_of_trees(self, root_ids: Sequence[str]) -> list[tuple[str, str | None, Progress]]:
        rows: list[tuple[str, str | None, Progress]] = []
        with self.engine.connect() as conn:
            for i in range(0, len(root_ids), 500):
                query = sa.select(db.tasks.c.id, db.tasks.c.parent_id, db.tasks.c.progress).where(
                    db.tasks.c.root_id.in_(list(root_ids[i:i + 500])))
                rows.extend((r.id, r.parent_id, Progress.model_validate(r.progress or {})) for r in conn.execute(query))
        return rows

    async def usage_of_trees(self, root_ids: Sequence[str]) -> list[tuple[str, str | None, Progress]]:
        """(id, parent_id, progress) of every task in the trees of `root_ids`."""
        return await self.run(self._usage_of_trees, root_ids)

    def _usage_since(self, since: float) -> list[tuple[str, str, float, Progress]]:
        query = sa.select(db.tasks.c.model, db.tasks.c.agent, db.tasks.c.created_at, db.tasks.c.progress).where(
            db.tasks.c.created_at >= since)
        with self.engine.connect() as conn:
            return [(r.model, r.agent, r.created_at, Progress.model_validate(r.progress or {}))
                    for r in conn.execute(query)]

    async def usage_since(self, since: float) -> list[tuple[str, str, float, Progress]]:
        """(model, agent, created_at, progress) of every task created since `since`."""
        return await self.run(self._usage_since, since)

    def _task_ids_with_worktrees(self) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.tasks.c.id, db.tasks.c.worktree))
            return {r.id for r in rows if r.worktree}  # a JSON column keeps None as 'null', so test in Python

    async def task_ids_with_worktrees(self) -> set[str]:
        return await self.run(self._task_ids_with_worktrees)

    async def prune(self, finished_before: float) -> dict[str, int]:
        """The removed tasks, each with its last turn (their DBOS workflows go too, see Runtime.prune)."""
        return await self.run(self.prune_sync, finished_before)
