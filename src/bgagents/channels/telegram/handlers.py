"""What each update of an allowed chat does: messages and files become conversation events, commands
control the conversation (as `bgagents chat` does), pressed buttons become `button-click` events.

An update that becomes an event names its `Source` (the update id), so it is stored once and the
channel's read offset moves in the same transaction.
"""

from __future__ import annotations

import html
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from ...conversation.orchestrator import Source
from ...conversation.schema import Session
from ...errors import BgAgentsError
from ...tools.private import open_resolved

if TYPE_CHECKING:
    from .channel import TelegramChannel

log = logging.getLogger("bgagents.telegram")

HELP = """<b>bgagents</b>: write to the main agent; long work goes to background agents whose answers come here.
/bg PROMPT: run PROMPT as a background agent
/sessions: the running sessions, with peek and kill buttons
/session NAME: one session in detail
/peek NAME: what NAME has done and has left
/kill NAME: stop a session (its result is dropped)
/background: push the running main turn into the background
/clear: start a fresh main session
/help: this help
Documents and photos you send are saved into the workspace and passed on with your message."""
MAX_SESSIONS = 30  # shown by /sessions (each has a row of buttons)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _seconds(value: float) -> str:
    seconds = max(0, int(value))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _progress(session: Session) -> str:
    p = session.progress
    parts = [f"{p.requests} req", f"{p.tool_calls} tools"]
    if p.todos.total:
        parts.append(f"todos {p.todos.done}/{p.todos.total}")
    return " · ".join(parts)


def format_sessions(sessions: list[Session]) -> str:
    if not sessions:
        return "No sessions running."
    lines = [f"{'▶' if s.main else '•'} <b>{html.escape(s.name)}</b> {_seconds(s.elapsed)} {s.status} · "
             f"{_progress(s)}" + (" [main]" if s.main else "") for s in sessions[:MAX_SESSIONS]]
    if len(sessions) > MAX_SESSIONS:
        lines.append(f"… and {len(sessions) - MAX_SESSIONS} more")
    return "\n".join(lines)


def format_session(s: Session) -> str:
    prompt = s.prompt if len(s.prompt) <= 300 else s.prompt[:299] + "…"
    lines = [f"<b>{html.escape(s.name)}</b>" + (" [main]" if s.main else ""), f"prompt: {html.escape(prompt)}",
             f"model: {html.escape(s.model)}", f"elapsed: {_seconds(s.elapsed)}", f"status: {s.status}",
             f"progress: {_progress(s)}"]
    if s.progress.last_message:
        lines.append(f"said: {html.escape(' '.join(str(s.progress.last_message).split())[:200])}")
    return "\n".join(lines)


def session_buttons(sessions: list[Session]) -> InlineKeyboardMarkup | None:
    rows = [[InlineKeyboardButton(text=f"peek {s.name}"[:64], callback_data=f"p:{s.task_id}"),
             InlineKeyboardButton(text=f"kill {s.name}"[:64], callback_data=f"k:{s.task_id}")]
            for s in sessions[:MAX_SESSIONS]]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def file_name(name: str | None, fallback: str) -> str:
    """A safe file name (no directories, no odd characters) for a file received."""
    cleaned = _UNSAFE.sub("_", Path(name or "").name).strip("._")[:100]
    return cleaned or fallback


class Handlers:
    """The routes of updates from allowed chats (aiogram's router and filters)."""

    def __init__(self, channel: TelegramChannel) -> None:
        self.channel = channel
        self.conversations = channel.runtime.conversations
        self.router = Router(name="bgagents")
        message = self.router.message
        message.register(self.help, Command("start", "help"))
        message.register(self.bg, Command("bg"))
        message.register(self.sessions, Command("sessions"))
        message.register(self.session, Command("session"))
        message.register(self.peek_command, Command("peek"))
        message.register(self.kill_command, Command("kill"))
        message.register(self.clear, Command("clear"))
        message.register(self.background, Command("background"))
        message.register(self.unknown, F.text.startswith("/"))
        message.register(self.message)
        self.router.callback_query.register(self.pressed)

    def source(self, update: Update) -> Source:
        store = self.channel.store
        return Source(f"telegram:{store.bot_id}:{update.update_id}",
                      lambda conn: store.record_offset(conn, update.update_id))

    @staticmethod
    async def reply(message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        await message.answer(text, parse_mode=ParseMode.HTML, reply_markup=markup)

    # -- messages ----------------------------------------------------------------------------------

    async def message(self, message: Message, event_update: Update) -> None:
        files = await self.save_files(message)
        if files is None:
            return
        text = message.text or message.caption or ""
        if not text.strip() and not files:
            await self.reply(message, "I read text, documents and photos (and other files); this one I cannot.")
            return
        await self.conversations.message(self.channel.conversation_id(message.chat.id), text, files,
                                         source=self.source(event_update))
        self.channel.outbox.typing(message.chat.id)

    async def save_files(self, message: Message) -> list[str] | None:
        """Downloads the message's files into workspace/telegram/CHAT/; their workspace paths, or None
        when one could not be had (the person is told why)."""
        found: list[tuple[str, str]] = []  # (file_id, name)
        if message.document:
            found.append((message.document.file_id, file_name(message.document.file_name, "document")))
        if message.photo:
            photo = message.photo[-1]  # the largest size
            found.append((photo.file_id, f"photo-{photo.file_unique_id}.jpg"))
        for kind in (message.audio, message.voice, message.video, message.video_note, message.animation):
            if kind is not None:
                name = getattr(kind, "file_name", None)
                found.append((kind.file_id, file_name(name, f"{type(kind).__name__.lower()}-{kind.file_unique_id}")))
        folder = Path("telegram") / str(message.chat.id)
        paths = []
        for file_id, name in found:
            relative = folder / f"{message.message_id}-{name}"
            try:  # an agent writes the workspace: a link it planted on the way is refused, never followed
                fd = open_resolved(self.channel.runtime.settings.workspace_path / relative,
                                   os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, parents=True)
            except OSError as exc:
                await self.reply(message, f"I could not save {html.escape(name)} in the workspace "
                                 f"({html.escape(exc.strerror or str(exc))}).")
                return None
            with os.fdopen(fd, "wb") as target:
                try:
                    await self.channel.bot.download(file_id, destination=target)
                except TelegramBadRequest as exc:
                    await self.reply(message, f"I could not fetch {html.escape(name)}: {html.escape(exc.message)}. "
                                     "(The Bot API gives bots files up to 20 MB; a self-hosted telegram-bot-api "
                                     "server, set as [telegram] api_url, up to 2000 MB.)")
                    return None
            paths.append(relative.as_posix())
        return paths

    # -- commands ----------------------------------------------------------------------------------

    async def help(self, message: Message) -> None:
        await self.reply(message, HELP)

    async def unknown(self, message: Message) -> None:
        command = (message.text or "").split()[0]
        await self.reply(message, f"Unknown command {html.escape(command)}; /help lists them.")

    async def bg(self, message: Message, command: CommandObject, event_update: Update) -> None:
        if not (command.args or "").strip():
            await self.reply(message, "/bg needs a prompt: <code>/bg research the history of tea</code>")
            return
        await self.conversations.background_command(self.channel.conversation_id(message.chat.id), command.args or "",
                                                    source=self.source(event_update))
        self.channel.outbox.typing(message.chat.id)

    async def sessions(self, message: Message) -> None:
        found = await self.conversations.sessions(self.channel.conversation_id(message.chat.id))
        await self.reply(message, format_sessions(found), session_buttons(found))

    async def session(self, message: Message, command: CommandObject) -> None:
        if await self._needs_name(message, command):
            return
        found = await self.conversations.session(self.channel.conversation_id(message.chat.id), command.args or "")
        await self.reply(message, format_session(found), session_buttons([found]))

    async def peek_command(self, message: Message, command: CommandObject) -> None:
        if not await self._needs_name(message, command):
            session = await self.conversations.session(self.channel.conversation_id(message.chat.id),
                                                       command.args or "")
            self.channel.spawn(self.peek(message.chat.id, session.task_id))

    async def kill_command(self, message: Message, command: CommandObject) -> None:
        if not await self._needs_name(message, command):
            await self.kill(message.chat.id, command.args or "")

    async def _needs_name(self, message: Message, command: CommandObject) -> bool:
        if (command.args or "").strip():
            return False
        await self.reply(message, f"/{command.command} needs a session name; /sessions lists them.")
        return True

    async def clear(self, message: Message) -> None:
        await self.conversations.clear(self.channel.conversation_id(message.chat.id))
        await self.reply(message, "Cleared: the next message starts a fresh main session.")

    async def background(self, message: Message) -> None:
        moved = await self.conversations.background(self.channel.conversation_id(message.chat.id))
        await self.reply(message, f"<b>{html.escape(moved.name)}</b> goes on in the background; its answer comes "
                                  "here when done.")

    # -- buttons -----------------------------------------------------------------------------------

    async def pressed(self, query: CallbackQuery, event_update: Update) -> None:
        """A pressed button: always answered (the client stops its spinner), then acted on."""
        chat = query.message.chat.id if query.message else query.from_user.id
        kind, _, rest = (query.data or "").partition(":")
        try:
            if kind == "b":
                await self._button(query, chat, rest, event_update)
            elif kind == "p":
                await query.answer("peeking…")
                self.channel.spawn(self.peek(chat, rest))
            elif kind == "k":
                await query.answer()
                await self.kill(chat, rest)
            else:
                await query.answer("this button no longer works")
        except BgAgentsError as exc:
            await query.answer(exc.message[:200])

    async def _button(self, query: CallbackQuery, chat: int, ref: str, update: Update) -> None:
        seq, _, index = ref.partition(":")
        cid = self.channel.conversation_id(chat)
        found = await self.conversations.responses(cid, since=int(seq) - 1, limit=1) if seq.isdigit() else []
        labels = found[0].buttons if found and found[0].seq == int(seq) else []
        if not index.isdigit() or int(index) >= len(labels):
            await query.answer("this button no longer works")
            return
        label = labels[int(index)]
        await self.conversations.button(cid, label, source=self.source(update))
        await query.answer(f"✓ {label}"[:200])
        self.channel.outbox.typing(chat)

    async def peek(self, chat: int, ref: str) -> None:
        """Takes a while (a small model reads the session), so it runs beside the updates."""
        try:
            peeked = await self.conversations.peek(self.channel.conversation_id(chat), ref)
            text = f"<b>{html.escape(peeked.name)}</b>: {html.escape(peeked.text)}"
        except BgAgentsError as exc:
            text = html.escape(exc.message)
        except TimeoutError:
            text = "The peek took too long; try again."
        try:
            await self.channel.bot.send_message(chat, text, parse_mode=ParseMode.HTML)
        except TelegramAPIError as exc:  # it runs on its own: nobody else would hear of it
            log.warning("telegram: chat %s: a peek could not be sent: %s", chat, exc.message)

    async def kill(self, chat: int, ref: str) -> None:
        killed = await self.conversations.kill(self.channel.conversation_id(chat), ref)
        await self.channel.bot.send_message(chat, f"Killed <b>{html.escape(killed.name)}</b>; its result will not "
                                                  "be delivered.", parse_mode=ParseMode.HTML)
