"""Subscriptions, deliveries and their tries in the database; every change of a delivery in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..core import db as core_db
from ..core.schema import Event
from . import db

T = TypeVar("T")


class Subscription(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str = ""
    source: str
    task_id: str | None = None
    created_at: float


class Try(BaseModel):
    n: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


class Delivery(BaseModel):
    id: str
    webhook_id: str
    event_seq: int
    type: str
    status: str
    tries: int
    next_at: float
    created_at: float
    finished_at: float | None
    log: list[Try] = []


class NewDelivery(BaseModel):
    webhook_id: str
    event: Event
    payload: str


def delivery_id(webhook_id: str, seq: int) -> str:
    """The same for every try and every process: receivers drop repeats by the webhook-id header."""
    return "msg_" + hashlib.sha1(f"{webhook_id}:{seq}".encode()).hexdigest()[:24]


class WebhookStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def create_tables(self) -> None:
        core_db.create_tables(self.engine, db.metadata)

    def _insert_ignoring_duplicates(self, table: sa.Table) -> Any:
        dialect = self.engine.dialect.name
        return (pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)).on_conflict_do_nothing()

    # -- subscriptions -----------------------------------------------------------------------------

    def add_sync(self, sub: Subscription, secret: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(db.subscriptions.insert().values(**sub.model_dump(), secret=secret))

    async def add(self, sub: Subscription, secret: str) -> None:
        await self._run(self.add_sync, sub, secret)

    def sync_config_sync(self, wanted: Sequence[tuple[Subscription, str]]) -> None:
        """Makes the config file's subscriptions the only `config` ones (kept by id, so their logs stay)."""
        with self.engine.begin() as conn:
            ids = [s.id for s, _ in wanted]
            conn.execute(db.subscriptions.delete().where(db.subscriptions.c.source == "config",
                                                         db.subscriptions.c.id.not_in(ids)))
            for sub, secret in wanted:
                conn.execute(db.subscriptions.delete().where(db.subscriptions.c.id == sub.id))
                conn.execute(db.subscriptions.insert().values(**sub.model_dump(), secret=secret))

    async def sync_config(self, wanted: Sequence[tuple[Subscription, str]]) -> None:
        await self._run(self.sync_config_sync, wanted)

    def subscriptions_sync(self) -> list[tuple[Subscription, str]]:
        query = sa.select(db.subscriptions).order_by(db.subscriptions.c.created_at)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return [(Subscription.model_validate(r), r["secret"]) for r in rows]

    async def subscriptions(self) -> list[tuple[Subscription, str]]:
        return await self._run(self.subscriptions_sync)

    def delete_sync(self, webhook_id: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(db.subscriptions.delete().where(db.subscriptions.c.id == webhook_id)).rowcount
            conn.execute(db.deliveries.update().where(db.deliveries.c.webhook_id == webhook_id,
                                                      db.deliveries.c.status == "pending")
                         .values(status="failed"))
        return bool(gone)

    async def delete(self, webhook_id: str) -> bool:
        return await self._run(self.delete_sync, webhook_id)

    # -- deliveries --------------------------------------------------------------------------------

    def start_cursor_sync(self) -> int:
        """Where this database's webhooks start: the saved cursor, else the newest event (none from before)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(db.cursor.c.seq).where(db.cursor.c.name == "main")).first()
            if row is not None:
                return int(row.seq)
            newest = conn.execute(sa.select(sa.func.max(core_db.events.c.seq))).scalar() or 0
            conn.execute(self._insert_ignoring_duplicates(db.cursor).values(name="main", seq=newest))
            return int(conn.execute(sa.select(db.cursor.c.seq).where(db.cursor.c.name == "main")).scalar_one())

    async def start_cursor(self) -> int:
        return await self._run(self.start_cursor_sync)

    def event_marks_sync(self, since: int, types: Sequence[str], limit: int = 500) -> list[tuple[int, float]]:
        """(seq, time) of the events after `since`: what a round must look at, without reading their data."""
        query = (sa.select(core_db.events.c.seq, core_db.events.c.time)
                 .where(core_db.events.c.seq > since, core_db.events.c.type.in_(list(types)))
                 .order_by(core_db.events.c.seq).limit(limit))
        with self.engine.connect() as conn:
            return [(int(r.seq), float(r.time)) for r in conn.execute(query)]

    async def event_marks(self, since: int, types: Sequence[str], limit: int = 500) -> list[tuple[int, float]]:
        return await self._run(self.event_marks_sync, since, types, limit)

    def events_by_seq_sync(self, seqs: Sequence[int]) -> list[Event]:
        query = sa.select(core_db.events).where(core_db.events.c.seq.in_(list(seqs))).order_by(core_db.events.c.seq)
        with self.engine.connect() as conn:
            return [Event.model_validate(dict(r._mapping)) for r in conn.execute(query)]

    async def events_by_seq(self, seqs: Sequence[int]) -> list[Event]:
        return await self._run(self.events_by_seq_sync, seqs)

    def make_deliveries_sync(self, new: Sequence[NewDelivery], cursor: int, now: float) -> None:
        """Stores the deliveries and moves the cursor in one transaction; a delivery made before (by this
        or another process) is left as it is."""
        with self.engine.begin() as conn:
            for d in new:
                conn.execute(self._insert_ignoring_duplicates(db.deliveries).values(
                    id=delivery_id(d.webhook_id, d.event.seq), webhook_id=d.webhook_id, event_seq=d.event.seq,
                    type=d.event.type, payload=d.payload, status="pending", tries=0, next_at=now, created_at=now))
            conn.execute(db.cursor.update().where(db.cursor.c.name == "main", db.cursor.c.seq < cursor)
                         .values(seq=cursor))

    async def make_deliveries(self, new: Sequence[NewDelivery], cursor: int, now: float) -> None:
        await self._run(self.make_deliveries_sync, new, cursor, now)

    def claim_due_sync(self, now: float, lease: float, limit: int) -> list[tuple[str, str, int, str, str, str]]:
        """Takes up to `limit` due deliveries for this process until `now + lease`:
        (delivery id, payload, tries so far, url, secret, webhook id)."""
        due = (sa.select(db.deliveries.c.id).where(
            db.deliveries.c.status == "pending", db.deliveries.c.next_at <= now,
            sa.or_(db.deliveries.c.lease_until.is_(None), db.deliveries.c.lease_until < now))
            .order_by(db.deliveries.c.next_at).limit(limit))
        claimed = []
        with self.engine.begin() as conn:
            for (did,) in conn.execute(due).all():
                taken = conn.execute(db.deliveries.update().where(
                    db.deliveries.c.id == did, db.deliveries.c.status == "pending",
                    sa.or_(db.deliveries.c.lease_until.is_(None), db.deliveries.c.lease_until < now))
                    .values(lease_until=now + lease)).rowcount
                if not taken:
                    continue
                row = conn.execute(sa.select(db.deliveries.c.payload, db.deliveries.c.tries, db.subscriptions.c.url,
                                             db.subscriptions.c.secret, db.subscriptions.c.id)
                                   .join(db.subscriptions, db.subscriptions.c.id == db.deliveries.c.webhook_id)
                                   .where(db.deliveries.c.id == did)).first()
                if row is not None:
                    claimed.append((did, row.payload, row.tries, row.url, row.secret, row.id))
        return claimed

    async def claim_due(self, now: float, lease: float, limit: int) -> list[tuple[str, str, int, str, str, str]]:
        return await self._run(self.claim_due_sync, now, lease, limit)

    def record_try_sync(self, delivery: str, n: int, at: float, status_code: int | None, error: str | None,
                        duration_ms: float, outcome: str, next_at: float | None) -> None:
        """Logs one try and sets where the delivery stands: delivered, failed, or pending again at `next_at`."""
        with self.engine.begin() as conn:
            conn.execute(db.tries.insert().values(delivery_id=delivery, n=n, at=at, status_code=status_code,
                                                  error=error, duration_ms=duration_ms))
            values: dict[str, Any] = {"tries": n, "lease_until": None, "status": outcome}
            if outcome == "pending":
                values["next_at"] = next_at
            else:
                values["finished_at"] = at
            conn.execute(db.deliveries.update().where(db.deliveries.c.id == delivery,
                                                      db.deliveries.c.status == "pending").values(**values))

    async def record_try(self, delivery: str, n: int, at: float, status_code: int | None, error: str | None,
                         duration_ms: float, outcome: str, next_at: float | None) -> None:
        await self._run(self.record_try_sync, delivery, n, at, status_code, error, duration_ms, outcome, next_at)

    def deliveries_sync(self, webhook_id: str, limit: int) -> list[Delivery]:
        query = (sa.select(db.deliveries).where(db.deliveries.c.webhook_id == webhook_id)
                 .order_by(db.deliveries.c.event_seq.desc()).limit(limit))
        with self.engine.connect() as conn:
            found = [Delivery.model_validate(dict(r._mapping)) for r in conn.execute(query)]
            ids = [d.id for d in found]
            logs: dict[str, list[Try]] = {}
            if ids:
                for r in conn.execute(sa.select(db.tries).where(db.tries.c.delivery_id.in_(ids))
                                      .order_by(db.tries.c.n)):
                    logs.setdefault(r.delivery_id, []).append(Try.model_validate(dict(r._mapping)))
        return [d.model_copy(update={"log": logs.get(d.id, [])}) for d in found]

    async def deliveries(self, webhook_id: str, limit: int = 100) -> list[Delivery]:
        return await self._run(self.deliveries_sync, webhook_id, limit)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
