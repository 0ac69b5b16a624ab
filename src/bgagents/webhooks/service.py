"""Turns stored events into webhook deliveries and sends them, durably, beside the tasks (never in their way).

Deliveries are made from the events table (events are stored before they are announced), with a cursor moved in
the same transaction, so each event gives each subscription one delivery, across restarts and processes. Sending
happens in tasks of its own with a timeout: a slow or dead receiver never slows an agent. A try that fails is
tried again after the next of `retry_delays`; after the last the delivery is `failed`. Success is recorded
before anything else is sent, so a delivered webhook is never sent again."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from standardwebhooks.webhooks import Webhook

from ..errors import InvalidInput, NotFound
from ..settings import WebhookSettings
from . import urls
from .store import Delivery, NewDelivery, Subscription, WebhookStore, dumps

if TYPE_CHECKING:
    from ..core.runtime import Runtime
    from ..core.schema import Event

log = logging.getLogger("bgagents.webhooks")

EVENT_TYPES = ("task.completed", "task.failed", "task.cancelled", "task.waiting", "conversation.response")
TASK_EVENTS = ("task.completed", "task.failed", "task.cancelled", "task.waiting")
SETTLE = 5.0  # seconds: events newer than this are read again (a PostgreSQL commit can land out of seq order)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Webhooks:
    def __init__(self, runtime: Runtime, settings: WebhookSettings, clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.settings = settings
        self.clock = clock
        self._store: WebhookStore | None = None
        self.http = httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False)
        self._loop: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._cursor = 0
        self._handled: set[int] = set()  # events past the cursor whose deliveries this process made

    @property
    def store(self) -> WebhookStore:
        """Made on first use (the runtime's database is open by then), with its tables."""
        if self._store is None:
            self._store = WebhookStore(self.runtime.store.engine)
            self._store.create_tables()
        return self._store

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(lambda: self.store)
        await self.store.sync_config(self._config_subscriptions())
        self._cursor = await self.store.start_cursor()
        self._loop = asyncio.create_task(self._run(), name="bgagents-webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.http.aclose()

    def _config_subscriptions(self) -> list[tuple[Subscription, str]]:
        wanted = []
        for entry in self.settings.subscriptions:
            urls.check_form(entry.url)
            events = _events(entry.events)
            wid = "wh_cfg_" + hashlib.sha1(entry.url.encode()).hexdigest()[:10]
            wanted.append((Subscription(id=wid, url=entry.url, events=events, description="from config.toml",
                                        source="config", created_at=self.clock()), entry.secret))
        return wanted

    # -- subscriptions -----------------------------------------------------------------------------

    async def subscribe(self, url: str, events: list[str] | None = None, description: str = "",
                        task_id: str | None = None) -> tuple[Subscription, str]:
        """A new subscription and its secret (kept to sign; shown to the caller once)."""
        await urls.check(url, self.settings.allow_private)
        sub = Subscription(id="wh_" + secrets.token_hex(6), url=url.strip(), events=_events(events),
                           description=description, source="launch" if task_id else "api", task_id=task_id,
                           created_at=self.clock())
        secret = self.launch_secret() if task_id else new_secret()
        await self.store.add(sub, secret)
        return sub, secret

    def launch_secret(self) -> str:
        """The secret of per-launch webhooks: `[webhooks] launch_secret`, else one kept in
        `$BGAGENTS_HOME/webhook-secret` (0600)."""
        if self.settings.launch_secret:
            return self.settings.launch_secret
        path = self.runtime.settings.home / "webhook-secret"
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                import os

                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(new_secret() + "\n")
        return path.read_text().strip()

    async def subscriptions(self) -> list[Subscription]:
        return [s for s, _ in await self.store.subscriptions()]

    async def get(self, webhook_id: str) -> Subscription:
        for sub in await self.subscriptions():
            if sub.id == webhook_id:
                return sub
        raise NotFound(f"no webhook with id '{webhook_id}'")

    async def delete(self, webhook_id: str) -> None:
        sub = await self.get(webhook_id)
        if sub.source == "config":
            raise InvalidInput(f"webhook {webhook_id} comes from config.toml: remove it there",
                               code="config_webhook")
        await self.store.delete(webhook_id)

    async def deliveries(self, webhook_id: str, limit: int = 100) -> list[Delivery]:
        await self.get(webhook_id)
        return await self.store.deliveries(webhook_id, limit)

    # -- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        with self.runtime.bus.subscribe(lambda e: e.type in EVENT_TYPES) as announced:
            while True:
                try:
                    await self.pump()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a database hiccup must not end webhooks for good
                    log.exception("webhooks: a round failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(announced.get(), timeout=self.settings.poll_interval)
                while not announced.empty():
                    announced.get_nowait()

    async def pump(self) -> None:
        """One round: deliveries for new events, then a send of each due delivery (in tasks of their own)."""
        await self._make_deliveries()
        now = self.clock()
        lease = self.settings.timeout + 30.0
        for delivery_id, payload, tries, url, secret, _ in await self.store.claim_due(now, lease, 50):
            task = asyncio.create_task(self._send(delivery_id, payload, tries + 1, url, secret))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _make_deliveries(self) -> None:
        """Deliveries for the events past the cursor. Events of the last SETTLE seconds stay past it (one may
        still commit with a lower seq), so a round reads only their seq and time, and the data of those it has
        not handled yet, and only when a webhook exists: each task's end used to re-read every recent event."""
        marks = await self.store.event_marks(self._cursor, EVENT_TYPES)
        if not marks:
            return
        fresh = [seq for seq, _ in marks if seq not in self._handled]
        new: list[NewDelivery] = []
        subs = await self.store.subscriptions() if fresh else []
        for event in await self.store.events_by_seq(fresh) if subs else []:
            wanted = [s for s, _ in subs
                      if event.type in s.events and (s.task_id is None or s.task_id == event.task_id)]
            if wanted:
                payload = dumps(await self._payload(event))
                new.extend(NewDelivery(webhook_id=s.id, event=event, payload=payload) for s in wanted)
        settled = [seq for seq, time_ in marks if time_ <= self.clock() - SETTLE]
        cursor = max([self._cursor, *settled])
        if len(marks) == 500:
            cursor = max(cursor, marks[-1][0])
        if new or cursor != self._cursor:
            await self.store.make_deliveries(new, cursor, self.clock())
        self._handled = {seq for seq in (*self._handled, *fresh) if seq > cursor}
        self._cursor = cursor

    async def _payload(self, event: Event) -> dict[str, Any]:
        data: dict[str, Any] = {"event_seq": event.seq}
        if event.type in TASK_EVENTS and event.task_id:
            with contextlib.suppress(NotFound):
                task = await self.runtime.get(event.task_id)
                data["task"] = task.model_dump(mode="json", exclude={"workspace"})
            data.update({k: v for k, v in event.data.items() if k in ("end_reason", "error", "approval")})
        else:
            data.update(event.data)
            if event.conversation_id:
                data["conversation_id"] = event.conversation_id
        stamp = dt.datetime.fromtimestamp(event.time, dt.UTC).isoformat()
        return {"type": event.type, "timestamp": stamp, "data": data}

    async def _send(self, delivery_id: str, payload: str, n: int, url: str, secret: str) -> None:
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            await urls.check(url, self.settings.allow_private)
            now = dt.datetime.now(dt.UTC)
            signature = Webhook(secret).sign(delivery_id, now, payload)
            headers = {"content-type": "application/json", "webhook-id": delivery_id,
                       "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
                       "user-agent": "bgagents-webhooks"}
            response = await self.http.post(url, content=payload.encode(), headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except InvalidInput as exc:
            error = exc.message
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        elapsed = (time.monotonic() - started) * 1000
        delays = self.settings.retry_delays
        if error is None:
            outcome, next_at = "delivered", None
        elif n > len(delays):
            outcome, next_at = "failed", None
            log.warning("webhook %s to %s failed after %d tries: %s", delivery_id, url, n, error)
        else:
            outcome, next_at = "pending", self.clock() + delays[n - 1]
        await self.store.record_try(delivery_id, n, self.clock(), status_code, error, elapsed, outcome, next_at)


def _events(events: list[str] | None) -> list[str]:
    if not events:
        return list(EVENT_TYPES)
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(f"unknown webhook events: {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
                           code="bad_webhook_events")
    return sorted(set(events))
