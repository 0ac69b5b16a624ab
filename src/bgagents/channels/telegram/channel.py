"""The Telegram channel: a bot whose allowed chats are each one conversation (`telegram-CHAT_ID`).

Updates come by long polling (the default) or by webhook; either way each goes through `handle`,
one at a time, in order. A chat that is not allowed gets one refusal and nothing of it is stored or
logged but its id. An update is recorded as handled only once it is (with its event, when it makes
one), so after a crash or a Telegram error it is taken again; one that keeps failing is skipped
after a few tries rather than blocking the chat forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import Update

from ...core.extensions import Extension
from ...errors import BgAgentsError
from ...runtime import Runtime
from ...settings import TelegramSettings
from .handlers import Handlers
from .outbox import Outbox
from .store import TelegramStore, metadata

if TYPE_CHECKING:
    from ...core.runtime import Runtime as CoreRuntime

log = logging.getLogger("bgagents.telegram")

T = TypeVar("T")
UPDATES = ["message", "callback_query"]
TRIES = 3  # an update that fails this often is skipped (logged) so the chat goes on
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds between tries after a network or server error
REFUSAL = ("This is a private bgagents bot; this chat is not one it talks to. (Its owner can allow chat id "
           "{chat} in [telegram] allowed_chats.)")
WEBHOOK_PATH = "/telegram/webhook"


def chat_of(update: Update) -> int | None:
    if update.message is not None:
        return update.message.chat.id
    if update.callback_query is not None:
        query = update.callback_query
        return query.message.chat.id if query.message is not None else query.from_user.id
    return None


class TelegramChannel(Extension):
    """An extension of `bgagents.Runtime` (it needs its conversations): `Runtime(extensions=[channel])`."""

    name = "telegram"
    metadata = metadata

    def __init__(self, settings: TelegramSettings) -> None:
        if settings.token is None:
            raise ValueError("the Telegram channel needs [telegram] token")
        self._runtime: Runtime | None = None
        self.settings = settings
        self._token = settings.token.get_secret_value()
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_url))
        self.bot = Bot(self._token, session=session)
        self.allowed = frozenset(settings.allowed_chats)
        self.dispatcher = Dispatcher()
        self.outbox = Outbox(self)
        self._handlers: Handlers | None = None
        self._store: TelegramStore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()  # set once the bot is known to Telegram and updates flow

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the Telegram channel is not attached to a runtime"
        return self._runtime

    @property
    def store(self) -> TelegramStore:
        assert self._store is not None, "the Telegram channel is not started"
        return self._store

    @property
    def webhook(self) -> bool:
        return bool(self.settings.webhook_url)

    @property
    def secret(self) -> str:
        """What Telegram sends in X-Telegram-Bot-Api-Secret-Token with each webhook call."""
        if self.settings.webhook_secret is not None:
            return self.settings.webhook_secret.get_secret_value()
        return hashlib.sha256(b"bgagents-telegram-webhook:" + self._token.encode()).hexdigest()

    def conversation_id(self, chat: int) -> str:
        return f"telegram-{chat}"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.runtime.store.run(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- lifecycle ---------------------------------------------------------------------------------

    def attach(self, runtime: CoreRuntime) -> None:
        if not isinstance(runtime, Runtime):
            raise TypeError("the Telegram channel needs bgagents.Runtime (the runtime with conversations)")
        self._runtime = runtime
        self._store = TelegramStore(runtime.db_engine, self.bot.id)
        if self._handlers is None:
            self._handlers = Handlers(self)
            self.dispatcher.include_router(self._handlers.router)

    async def start(self) -> None:
        if not self.allowed:
            log.warning("telegram: no chat is allowed ([telegram] allowed_chats); every chat gets a refusal")
        self.spawn(self._main())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.bot.session.close()

    async def _main(self) -> None:
        if not await self._connect():
            return
        self.spawn(self._forever(self.outbox.run))
        if self.webhook:
            await self._retrying(lambda: self.bot.set_webhook(
                self.settings.webhook_url or "", secret_token=self.secret, allowed_updates=UPDATES,
                max_connections=1))  # one at a time: a conversation's events keep their order
            log.info("telegram: updates come by webhook to %s", self.settings.webhook_url)
            self.ready.set()
        else:
            await self._retrying(lambda: self.bot.delete_webhook(drop_pending_updates=False))
            await self._poll()

    async def _connect(self) -> bool:
        try:
            me = await self._retrying(self.bot.get_me)
        except TelegramUnauthorizedError:
            log.error("telegram: the bot token was refused by %s; the channel is off", self.settings.api_url)
            return False
        log.info("telegram: bot @%s (id %s), %d allowed chat(s)", me.username, me.id, len(self.allowed))
        return True

    async def _retrying(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Network and server errors are waited out, with growing pauses."""
        for attempt in range(1_000_000):
            try:
                return await call()
            except (TelegramNetworkError, TelegramServerError) as exc:
                log.warning("telegram: %s; trying again", exc.message)
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        raise AssertionError("unreachable")

    async def _forever(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await run()
            except Exception:
                log.exception("telegram: %s failed; starting it again", run.__qualname__)
                await asyncio.sleep(BACKOFF[-2])

    # -- updates in --------------------------------------------------------------------------------

    async def _poll(self) -> None:
        offset = await self.run(self.store.offset_sync)
        self.ready.set()
        timeout = self.settings.poll_timeout
        while True:
            start = None if offset is None else offset + 1
            try:
                updates = await self._retrying(functools.partial(
                    self.bot.get_updates, offset=start, timeout=timeout, allowed_updates=UPDATES,
                    request_timeout=timeout + 15))
            except TelegramConflictError:
                log.error("telegram: another process takes this bot's updates (getUpdates conflict); waiting")
                await asyncio.sleep(BACKOFF[-1])
                continue
            for update in updates:
                if not await self.handle(update):
                    await asyncio.sleep(BACKOFF[0])
                    break  # taken again from Telegram, from this one on
                offset = update.update_id

    async def handle(self, update: Update) -> bool:
        """Handles one update; False means it failed and must come again (Telegram redelivers it)."""
        async with self._lock:
            chat = chat_of(update)
            try:
                if chat is None or chat not in self.allowed:
                    await self._refuse(update, chat)
                else:
                    await self._dispatch(update, chat)
            except Exception as exc:
                tries = self._failures.get(update.update_id, 0) + 1
                self._failures[update.update_id] = tries
                if tries < TRIES:
                    log.warning("telegram: update %s failed (%s: %s); it comes again", update.update_id,
                                type(exc).__name__, getattr(exc, "message", ""))
                    return False
                log.exception("telegram: update %s failed %d times; skipped", update.update_id, tries)
            self._failures.pop(update.update_id, None)
            await self.run(self.store.record_offset_sync, update.update_id)
            return True

    async def _dispatch(self, update: Update, chat: int) -> None:
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except BgAgentsError as exc:  # the person asked for something that cannot be done: say why
            await self._tell(update, chat, exc.message)
        except (TelegramBadRequest, TelegramForbiddenError) as exc:
            log.warning("telegram: chat %s: a reply was refused: %s", chat, exc.message)

    async def _tell(self, update: Update, chat: int, text: str) -> None:
        if update.callback_query is not None:
            with contextlib.suppress(TelegramAPIError):
                await update.callback_query.answer(text[:200])
        await self.bot.send_message(chat, text)

    async def _refuse(self, update: Update, chat: int | None) -> None:
        """One refusal per chat, ever; nothing of the update is kept or logged but the chat's id."""
        if update.callback_query is not None:
            with contextlib.suppress(TelegramAPIError):
                await update.callback_query.answer()
        if chat is None or not await self.run(self.store.refuse_once_sync, chat):
            return
        log.warning("telegram: chat %s is not in [telegram] allowed_chats; refused", chat)
        with contextlib.suppress(TelegramBadRequest, TelegramForbiddenError):
            await self.bot.send_message(chat, REFUSAL.format(chat=chat))
