"""Reads and writes of the conversation tables. Each change that must happen once is one transaction.

The queue is `bg_conv_events` (a `seq` per conversation); what ended turns left behind is
`bg_conv_outcomes` (written in the transaction that ends the turn, through the core's `task_ended` hook); what the
conversation answered is `bg_conv_responses`. Every change also stores its event in `bg_events`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic_core import to_jsonable_python
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..core import db
from ..core.names import chosen_slug, slugify, unique
from ..core.schema import ACTIVE, Event
from ..core.store import Store
from . import tables
from .schema import EventRecord, Response

Row = sa.Row[Any]
T = TypeVar("T")


def _event(row: Row) -> EventRecord:
    return EventRecord(seq=row.seq, name=row.name, type=row.type, time=row.time, status=row.status,
                       task_id=row.task_id, data=row.data)


def _response(row: Row) -> Response:
    return Response.model_validate(dict(row._mapping))


# asked for every task's turn and end (is it a session?): built once, as the core store's hot statements
_SESSION_OF_TASK = sa.select(tables.conv_sessions).where(tables.conv_sessions.c.task_id == sa.bindparam("w_task"))


class ConversationStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.clock = store.clock

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.store.run(fn, *args)

    # -- names -------------------------------------------------------------------------------------

    def unique_name(self, conn: sa.Connection, cid: str, text: str, kept: bool = False) -> str:
        """A slug of `text` that no event or session of this conversation has, a taken one with a suffix
        (SPEC 4.8). `kept`: `text` is a name chosen for a background agent, kept when it is a slug already."""
        base = chosen_slug(text) if kept else slugify(text)
        like = base[:30] + "%"
        taken = {r[0] for r in conn.execute(sa.select(tables.conv_events.c.name).where(
            tables.conv_events.c.conversation_id == cid, tables.conv_events.c.name.like(like)))}
        taken |= {r[0] for r in conn.execute(sa.select(tables.conv_sessions.c.name).where(
            tables.conv_sessions.c.conversation_id == cid, tables.conv_sessions.c.name.like(like)))}
        return unique(base, taken)

    # -- the queue ---------------------------------------------------------------------------------

    def _ensure(self, conn: sa.Connection, cid: str) -> None:
        """Creates the conversation unless it exists; concurrent first events each find it made once."""
        insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
        conn.execute(insert(tables.conversations)
                     .values(id=cid, main_task_id=None, next_seq=1, created_at=self.clock())
                     .on_conflict_do_nothing(index_elements=["id"]))

    def _take_seq(self, conn: sa.Connection, cid: str) -> int:
        """The next seq of the conversation, taken in one statement that also locks its row until commit, so
        concurrent events get distinct seqs and the names they pick next see each other."""
        self._ensure(conn, cid)
        conversations = tables.conversations
        taken: int = conn.execute(conversations.update().where(conversations.c.id == cid)
                                  .values(next_seq=conversations.c.next_seq + 1)
                                  .returning(conversations.c.next_seq)).scalar_one()
        return taken - 1

    def insert_event(self, conn: sa.Connection, cid: str, type_: str, label: str,
                     build: Callable[[str], dict[str, Any]], source: str | None = None) -> tuple[EventRecord, Event]:
        """Appends an event to the queue: the next seq, a unique name, `build(name)` as its data."""
        seq = self._take_seq(conn, cid)
        name = self.unique_name(conn, cid, label)
        data = to_jsonable_python(build(name))
        now = self.clock()
        conn.execute(tables.conv_events.insert().values(conversation_id=cid, seq=seq, name=name, type=type_, data=data,
                                                        time=now, status="pending", source=source))
        record = EventRecord(seq=seq, name=name, type=type_, time=now, status="pending", data=data)
        stored = self.store.insert_event(conn, "conversation.event", None,
                                         {"seq": seq, "name": name, "type": type_, "event": data},
                                         conversation_id=cid)
        return record, stored

    def add_event_sync(self, cid: str, type_: str, label: str, build: Callable[[str], dict[str, Any]],
                       source: str | None = None, with_event: Callable[[sa.Connection], None] | None = None,
                       ) -> tuple[EventRecord, Event | None]:
        """Stores an event; one whose `source` is already stored is not stored again (no new event then).
        `with_event` runs in the same transaction (a channel records how far it has read)."""
        with self.engine.begin() as conn:
            existing = None if source is None else conn.execute(
                sa.select(tables.conv_events).where(tables.conv_events.c.source == source)).first()
            if existing is not None:
                record, stored = _event(existing), None
            else:
                record, stored = self.insert_event(conn, cid, type_, label, build, source)
            if with_event is not None:
                with_event(conn)
            return record, stored

    async def add_event(self, cid: str, type_: str, label: str, build: Callable[[str], dict[str, Any]],
                        source: str | None = None, with_event: Callable[[sa.Connection], None] | None = None,
                        ) -> tuple[EventRecord, Event | None]:
        return await self.run(self.add_event_sync, cid, type_, label, build, source, with_event)

    def next_work_sync(self, cid: str) -> tuple[str, int] | None:
        """What the conversation does next: an ended turn's outcome first, else the oldest pending event."""
        with self.engine.connect() as conn:
            outcome = conn.execute(sa.select(tables.conv_outcomes.c.id).where(
                tables.conv_outcomes.c.conversation_id == cid, tables.conv_outcomes.c.handled.is_(False))
                .order_by(tables.conv_outcomes.c.id).limit(1)).first()
            if outcome is not None:
                return "outcome", outcome.id
            event = conn.execute(sa.select(tables.conv_events.c.seq).where(
                tables.conv_events.c.conversation_id == cid, tables.conv_events.c.status == "pending")
                .order_by(tables.conv_events.c.seq).limit(1)).first()
            return ("event", event.seq) if event is not None else None

    def event_row_sync(self, cid: str, seq: int) -> Row:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(tables.conv_events).where(tables.conv_events.c.conversation_id == cid,
                                                                tables.conv_events.c.seq == seq)).one()

    def conversation_sync(self, cid: str) -> Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(tables.conversations).where(tables.conversations.c.id == cid)).first()

    def busy_conversations_sync(self) -> list[str]:
        """Conversations with a pending event or an unhandled outcome (to pick up after a restart)."""
        with self.engine.connect() as conn:
            ids = {r[0] for r in conn.execute(sa.select(tables.conv_events.c.conversation_id).distinct().where(
                tables.conv_events.c.status == "pending"))}
            ids |= {r[0] for r in conn.execute(sa.select(tables.conv_outcomes.c.conversation_id).distinct().where(
                tables.conv_outcomes.c.handled.is_(False)))}
            return sorted(ids)

    def plan_turn_sync(self, cid: str, seq: int, plan: dict[str, Any], session: dict[str, Any]) -> None:
        """Decides once how the event's turn starts: the plan, the new main pointer and the session row."""
        with self.engine.begin() as conn:
            target = plan["task_id"]
            conn.execute(tables.conv_events.update().where(tables.conv_events.c.conversation_id == cid,
                                                       tables.conv_events.c.seq == seq)
                         .values(plan=plan, task_id=target, turn=plan["turn"]))
            conn.execute(tables.conversations.update().where(tables.conversations.c.id == cid)
                         .values(main_task_id=target))
            values = {**session, "role": "main", "killed": False, "result_override": None,
                      "turn_started_at": self.clock(), "last_check_at": None}
            if conn.execute(tables.conv_sessions.update().where(tables.conv_sessions.c.task_id == target)
                            .values(**values)).rowcount == 0:
                conn.execute(tables.conv_sessions.insert().values(task_id=target, conversation_id=cid, **values))

    def mark_started_sync(self, cid: str, seq: int, data: dict[str, Any]) -> Event:
        with self.engine.begin() as conn:
            conn.execute(tables.conv_events.update().where(tables.conv_events.c.conversation_id == cid,
                                                       tables.conv_events.c.seq == seq).values(status="started"))
            return self.store.insert_event(conn, "conversation.turn_started", data.get("task_id"), data,
                                           conversation_id=cid)

    def turn_failed_sync(self, cid: str, seq: int, plan: dict[str, Any], error: str) -> Event:
        """The event's turn could not start (e.g. a model that no longer exists): the person is told, the
        event is done and the main session stays what it was."""
        with self.engine.begin() as conn:
            conn.execute(tables.conv_events.update().where(tables.conv_events.c.conversation_id == cid,
                                                       tables.conv_events.c.seq == seq).values(status="done"))
            main = plan["task_id"] if plan["mode"] == "resume" else plan.get("source")
            conn.execute(tables.conversations.update().where(tables.conversations.c.id == cid)
                         .values(main_task_id=main))
            name = conn.execute(sa.select(tables.conv_events.c.name).where(tables.conv_events.c.conversation_id == cid,
                                                                       tables.conv_events.c.seq == seq)).scalar_one()
            return self.insert_response(conn, cid, {"action": "send", "action_reason": "turn could not start",
                                                    "message": f"[Error] {error}", "event_name": name})

    # -- sessions ----------------------------------------------------------------------------------

    def session_sync(self, task_id: str) -> Row | None:
        with self.engine.connect() as conn:
            return conn.execute(_SESSION_OF_TASK, {"w_task": task_id}).first()

    def session_by_origin_sync(self, origin: str) -> Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(tables.conv_sessions).where(tables.conv_sessions.c.origin == origin)).first()

    def add_background_session_sync(self, cid: str, task_id: str, label: str, prompt: str, origin: str) -> Row:
        """A background session's row, written before its task exists so its end is never missed."""
        with self.engine.begin() as conn:
            name = self.unique_name(conn, cid, label, kept=True)
            conn.execute(tables.conv_sessions.insert().values(
                task_id=task_id, conversation_id=cid, name=name, prompt=prompt, role="background", killed=False,
                turn_started_at=self.clock(), origin=origin))
            return conn.execute(sa.select(tables.conv_sessions).where(tables.conv_sessions.c.task_id == task_id)).one()

    def sessions_sync(self, cid: str) -> list[Row]:
        """Every session of the conversation whose task is active, oldest turn first."""
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(tables.conv_sessions).join(db.tasks, db.tasks.c.id == tables.conv_sessions.c.task_id)
                .where(tables.conv_sessions.c.conversation_id == cid, db.tasks.c.status.in_(list(ACTIVE)))
                .order_by(tables.conv_sessions.c.turn_started_at)).all())

    def running_background_sync(self) -> list[Row]:
        """Background sessions (not killed) whose task is running, in every conversation: for health checks."""
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(tables.conv_sessions).join(db.tasks, db.tasks.c.id == tables.conv_sessions.c.task_id)
                .where(tables.conv_sessions.c.role == "background", tables.conv_sessions.c.killed.is_(False),
                       db.tasks.c.status.in_(["running", "waiting"]))).all())

    def demote_sync(self, task_id: str, why: str) -> Event | None:
        """The main session's running turn goes on in the background; None if it ended meanwhile.

        The task row is locked first, so its end and this change are never interleaved: the outcome
        is recorded with the role the session had when it ended."""
        with self.engine.begin() as conn:
            task = conn.execute(sa.select(db.tasks.c.status).where(db.tasks.c.id == task_id)
                                .with_for_update()).first()
            if task is None or task.status not in ACTIVE:
                return None
            session = conn.execute(sa.select(tables.conv_sessions)
                                   .where(tables.conv_sessions.c.task_id == task_id)).first()
            if session is None or session.role != "main":
                return None
            conn.execute(tables.conv_sessions.update().where(tables.conv_sessions.c.task_id == task_id)
                         .values(role="background", turn_started_at=session.turn_started_at))
            return self.store.insert_event(conn, "conversation.backgrounded", task_id,
                                           {"name": session.name, "why": why},
                                           conversation_id=session.conversation_id)

    def set_session_sync(self, task_id: str, values: dict[str, Any], event_type: str | None = None,
                         data: dict[str, Any] | None = None) -> Event | None:
        with self.engine.begin() as conn:
            conn.execute(tables.conv_sessions.update().where(tables.conv_sessions.c.task_id == task_id)
                         .values(**to_jsonable_python(values)))
            if event_type is None:
                return None
            cid = conn.execute(sa.select(tables.conv_sessions.c.conversation_id)
                               .where(tables.conv_sessions.c.task_id == task_id)).scalar_one()
            return self.store.insert_event(conn, event_type, task_id, data or {}, conversation_id=cid)

    def clear_sync(self, cid: str) -> Event:
        with self.engine.begin() as conn:
            self._ensure(conn, cid)
            conn.execute(tables.conversations.update().where(tables.conversations.c.id == cid)
                         .values(main_task_id=None))
            return self.store.insert_event(conn, "conversation.cleared", None, {}, conversation_id=cid)

    # -- outcomes and responses --------------------------------------------------------------------

    def record_outcome(self, conn: sa.Connection, task_id: str) -> None:
        """A session's turn ended: its outcome is kept, in the transaction that ends it (the core calls this
        as the extension's `task_ended`), for the conversation to deliver or feed back (exactly once; a
        killed session's is marked so)."""
        session = conn.execute(_SESSION_OF_TASK, {"w_task": task_id}).first()
        if session is None:
            return
        task = conn.execute(sa.select(db.tasks).where(db.tasks.c.id == task_id)).one()
        if conn.execute(sa.select(tables.conv_outcomes.c.id).where(tables.conv_outcomes.c.task_id == task_id,
                                                                   tables.conv_outcomes.c.turn == task.turn)).first():
            return
        result = task.result
        status = task.status
        if session.result_override is not None:  # a health check found it finished and stopped it
            result, status = {"text": None, "data": session.result_override}, "completed"
        conn.execute(tables.conv_outcomes.insert().values(
            conversation_id=session.conversation_id, task_id=task_id, turn=task.turn, name=session.name,
            role=session.role, killed=session.killed, status=status, result=result, error=task.error,
            created_at=self.clock(), handled=False))

    def main_sessions(self) -> sa.Select[Any]:
        """Task ids of the conversations' main sessions: retention keeps them (their next event resumes them)."""
        return sa.select(tables.conversations.c.main_task_id).where(tables.conversations.c.main_task_id.is_not(None))

    def outcome_sync(self, outcome_id: int) -> Row:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(tables.conv_outcomes).where(tables.conv_outcomes.c.id == outcome_id)).one()

    def insert_response(self, conn: sa.Connection, cid: str, values: dict[str, Any]) -> Event:
        now = self.clock()
        values = {"event_name": None, "task_id": None, "action_reason": "", "message": None, "files": [],
                  "buttons": [], **values, "conversation_id": cid, "created_at": now}
        values["delivered"] = values["action"] == "send"
        seq = conn.execute(tables.conv_responses.insert().values(**values)).inserted_primary_key
        assert seq is not None
        response = Response.model_validate({**values, "seq": seq[0]})
        kind = "conversation.response" if response.delivered else "conversation.silent"
        return self.store.insert_event(conn, kind, response.task_id, response.model_dump(mode="json"),
                                       conversation_id=cid)

    def respond_sync(self, cid: str, values: dict[str, Any]) -> Event:
        with self.engine.begin() as conn:
            self._ensure(conn, cid)
            return self.insert_response(conn, cid, values)

    def finish_outcome_sync(self, outcome_id: int, response: dict[str, Any] | None,
                            feedback: tuple[str, str, Callable[[str], dict[str, Any]]] | None,
                            dropped: bool = False) -> list[Event]:
        """Handles an outcome once: its response delivered, or its result queued as an event, or dropped."""
        with self.engine.begin() as conn:
            changed = conn.execute(tables.conv_outcomes.update().where(tables.conv_outcomes.c.id == outcome_id,
                                                                   tables.conv_outcomes.c.handled.is_(False))
                                   .values(handled=True)).rowcount
            if not changed:
                return []
            outcome = conn.execute(sa.select(tables.conv_outcomes).where(tables.conv_outcomes.c.id == outcome_id)).one()
            cid = outcome.conversation_id
            out: list[Event] = []
            if response is not None:
                out.append(self.insert_response(conn, cid, response))
            if feedback is not None:
                type_, label, build = feedback
                out.append(self.insert_event(conn, cid, type_, label, build)[1])
            if dropped:
                out.append(self.store.insert_event(conn, "conversation.dropped", outcome.task_id,
                                                   {"name": outcome.name, "status": outcome.status},
                                                   conversation_id=cid))
            return out

    def responses_sync(self, cid: str, since: int, limit: int) -> list[Response]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.conv_responses).where(
                tables.conv_responses.c.conversation_id == cid, tables.conv_responses.c.delivered.is_(True),
                tables.conv_responses.c.seq > since).order_by(tables.conv_responses.c.seq).limit(limit)).all()
            return [_response(r) for r in rows]

    def history_sync(self, cid: str) -> list[dict[str, Any]]:
        """Every event in and every response out, in the order they happened."""
        with self.engine.connect() as conn:
            events = conn.execute(sa.select(tables.conv_events).where(tables.conv_events.c.conversation_id == cid)
                                  .order_by(tables.conv_events.c.seq)).all()
            responses = conn.execute(sa.select(tables.conv_responses)
                                     .where(tables.conv_responses.c.conversation_id == cid)
                                     .order_by(tables.conv_responses.c.seq)).all()
        lines = [{"kind": "event", **_event(r).model_dump(mode="json")} for r in events]
        lines += [{"kind": "response", **_response(r).model_dump(mode="json"), "time": r.created_at}
                  for r in responses]
        lines.sort(key=lambda line: line["time"])
        return lines
