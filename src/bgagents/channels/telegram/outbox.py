"""Responses out: each delivered response of an allowed chat's conversation, sent once, in order.

A response becomes its text pieces (HTML, plain text when Telegram refuses the HTML) and then its
files as documents; its buttons go on the last message as an inline keyboard. Every message sent is
recorded before the next one goes, so a restart goes on where delivery stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from aiogram.enums import ChatAction, ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, InputFile

from ...conversation.schema import Response
from ...tools.private import open_resolved
from ...tools.workspace import WorkspaceError, resolve_path
from . import render

if TYPE_CHECKING:
    from aiogram import Bot

    from .channel import TelegramChannel

log = logging.getLogger("bgagents.telegram")

RESCAN = 5.0  # seconds between looks for responses this process was not told of (another process, a retry)
RETRY = 1.0  # seconds before delivery is tried again after Telegram failed
TYPING_EVERY = 4.0  # Telegram shows "typing…" for 5 s
BUTTON_TEXT = 64  # characters of a label shown on a button


@dataclass(frozen=True)
class Part:
    """One message of a response: a text piece or a file."""

    piece: render.Piece | None = None
    file: str | None = None


def parts(response: Response) -> list[Part]:
    out = [Part(piece=p) for p in render.pieces(response.message or "")]
    return out + [Part(file=f) for f in response.files]


def keyboard(response: Response) -> InlineKeyboardMarkup | None:
    """The response's buttons, one per row; a press names the response and the button's index (labels
    can be longer than the 64 bytes Telegram allows in a button's data)."""
    if not response.buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=label[:BUTTON_TEXT], callback_data=f"b:{response.seq}:{i}")]
        for i, label in enumerate(response.buttons)])


def refused_html(exc: TelegramBadRequest) -> bool:
    message = exc.message.lower()
    return "can't parse entities" in message or "message is too long" in message


class Outbox:
    def __init__(self, channel: TelegramChannel) -> None:
        self.channel = channel
        self.bot = channel.bot
        self._typing: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Delivers, then waits for news of a response (or RESCAN); a failed delivery is tried again."""
        ids = {self.channel.conversation_id(chat): chat for chat in self.channel.allowed}
        runtime = self.channel.runtime

        def accept(event: Any) -> bool:
            return event.conversation_id in ids and event.type in ("conversation.response",
                                                                   "conversation.turn_started")

        with runtime.bus.subscribe(accept) as queue:
            while True:
                wait = RESCAN
                try:
                    for chat in sorted(self.channel.allowed):
                        await self.flush(chat)
                except (TelegramNetworkError, TelegramServerError) as exc:
                    log.warning("telegram: delivery paused (%s); trying again", exc.message)
                    wait = RETRY
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(queue.get(), wait)
                    if event.type == "conversation.turn_started" and event.conversation_id in ids:
                        self.typing(ids[event.conversation_id])

    async def flush(self, chat: int) -> None:
        """Sends what the chat has not been sent yet."""
        ch = self.channel
        cid = ch.conversation_id(chat)
        cursor = await ch.run(ch.store.cursor_sync, chat, cid)
        while True:
            found = await ch.runtime.conversations.responses(cid, since=cursor.sent_seq, limit=50)
            if not found:
                return
            for response in found:
                await self._send(chat, response, cursor.parts_sent(response.seq))
                cursor = await ch.run(ch.store.cursor_sync, chat, cid)

    async def _send(self, chat: int, response: Response, start: int) -> None:
        todo = parts(response)
        markup = keyboard(response)
        for index in range(start, len(todo)):
            last = index == len(todo) - 1
            await self._deliver(chat, todo[index], markup if last else None)
            await self.channel.run(self.channel.store.sent_part_sync, chat, response.seq, index + 1, last)
        if not todo[start:]:
            await self.channel.run(self.channel.store.sent_part_sync, chat, response.seq, len(todo), True)

    async def _deliver(self, chat: int, part: Part, markup: InlineKeyboardMarkup | None) -> None:
        """Sends one message. Telegram's refusals other than of the HTML (a blocked bot, a file too
        large) are logged and the message skipped: trying again would never succeed."""
        try:
            if part.file is not None:
                await self._document(chat, part.file, markup)
            elif part.piece is not None:
                await self.text(chat, part.piece, markup)
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            log.warning("telegram: chat %s refused a message: %s", chat, exc.message)

    async def text(self, chat: int, piece: render.Piece, markup: InlineKeyboardMarkup | None = None) -> None:
        """As HTML; as plain text when there is no HTML or Telegram cannot parse it."""
        if piece.html:
            try:
                await self.call(lambda: self.bot.send_message(chat, piece.html, parse_mode=ParseMode.HTML,
                                                              reply_markup=markup))
                return
            except TelegramBadRequest as exc:
                if not refused_html(exc):
                    raise
                log.info("telegram: HTML refused (%s); sending plain text", exc.message)
        await self.call(lambda: self.bot.send_message(chat, piece.plain, parse_mode=None, reply_markup=markup))

    async def _document(self, chat: int, path: str, markup: InlineKeyboardMarkup | None) -> None:
        """A response's file: in the workspace, not the server's, opened without following a link planted
        after the check (an agent writes the workspace)."""
        runtime = self.channel.runtime
        try:
            full = resolve_path(runtime.settings.workspace_path, path, server=runtime.services.server_files)
            f = os.fdopen(open_resolved(full, os.O_RDONLY | os.O_NONBLOCK), "rb")
        except (WorkspaceError, OSError):
            await self.text(chat, render.Piece("", f"(file not found: {path})"), markup)
            return
        with f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                await self.text(chat, render.Piece("", f"(file not found: {path})"), markup)
                return
            document = OpenedFile(f, full.name)
            await self.call(lambda: self.bot.send_document(chat, document, reply_markup=markup))

    async def call(self, send: Callable[[], Awaitable[Any]]) -> Any:
        """Telegram's flood control says how long to wait; then the same message goes again."""
        while True:
            try:
                return await send()
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)

    # -- typing ------------------------------------------------------------------------------------

    def typing(self, chat: int) -> None:
        """"typing…" in the chat while its main turn runs (or an event waits for it)."""
        running = self._typing.get(chat)
        if running is None or running.done():
            self._typing[chat] = self.channel.spawn(self._type(chat))

    async def _type(self, chat: int) -> None:
        convs = self.channel.runtime.conversations
        cid = self.channel.conversation_id(chat)
        while True:
            waiting = await convs.store.run(convs.store.next_work_sync, cid)
            if waiting is None and not any(s.main for s in await convs.sessions(cid)):
                return
            try:
                await self.bot.send_chat_action(chat, ChatAction.TYPING)
            except (TelegramNetworkError, TelegramServerError, TelegramBadRequest, TelegramForbiddenError) as exc:
                log.debug("telegram: no typing indicator: %s", exc.message)
            await asyncio.sleep(TYPING_EVERY)


class OpenedFile(InputFile):
    """A file already opened, sent from its start each time it is sent (after flood control, again)."""

    def __init__(self, file: IO[bytes], filename: str) -> None:
        super().__init__(filename=filename)
        self.file = file

    async def read(self, bot: Bot) -> AsyncGenerator[bytes, None]:
        self.file.seek(0)
        while chunk := await asyncio.to_thread(self.file.read, self.chunk_size):
            yield chunk
