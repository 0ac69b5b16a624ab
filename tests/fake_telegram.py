"""A fake Telegram Bot API server: an aiohttp app on a free port, in a thread of its own.

It implements what the channel uses (getMe, getUpdates with offset and timeout, sendMessage,
sendDocument, sendChatAction, answerCallbackQuery, getFile and file downloads, setWebhook,
deleteWebhook), keeps updates the test injects until a getUpdates offset confirms them (as Telegram
does), and records what the bot sent. sendMessage parses HTML the way Telegram does and answers a
malformed one with Telegram's own 400 texts; it enforces the 4096-character limit.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import free_port

LIMIT = 4096
TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span", "tg-spoiler",
        "tg-emoji", "blockquote"}
JSON_FIELDS = {"reply_markup", "allowed_updates", "entities", "caption_entities", "link_preview_options"}
_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")


class EntityError(Exception):
    pass


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _attributes(tag: str, body: str, offset: int) -> dict[str, str]:
    attrs: dict[str, str] = {}
    i = 0
    while i < len(body):
        if body[i].isspace():
            i += 1
            continue
        name = _NAME.match(body, i)
        if name is None:
            raise EntityError(f"Expected equal sign in declaration of an attribute of the tag at byte offset {offset}")
        i = name.end()
        if i >= len(body) or body[i] != "=":
            if body[i:i + 1].isspace() or i >= len(body):
                attrs[name.group().lower()] = ""
                continue
            raise EntityError(f"Expected equal sign in declaration of an attribute of the tag at byte offset {offset}")
        i += 1
        if i < len(body) and body[i] in "\"'":
            end = body.find(body[i], i + 1)
            if end < 0:
                raise EntityError(f"Unclosed start tag at byte offset {offset}")
            value, i = body[i + 1:end], end + 1
        else:
            match = re.compile(r"[^\s]*").match(body, i)
            assert match is not None
            value, i = match.group(), match.end()
        attrs[name.group().lower()] = html.unescape(value)
    if tag == "span" and attrs.get("class") != "tg-spoiler":
        raise EntityError(f"Tag \"span\" must have class \"tg-spoiler\" at byte offset {offset}")
    return attrs


def parse_html(text: str) -> str:
    """The visible text of Telegram-flavoured HTML; EntityError with Telegram's wording when malformed."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        offset = len(text[:i].encode())
        if char == "<":
            end = text.find(">", i)
            if end < 0:
                raise EntityError(f"Unclosed start tag at byte offset {offset}")
            inner = text[i + 1:end]
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not stack:
                    raise EntityError(f"Unexpected end tag at byte offset {offset}")
                if name != stack[-1]:
                    raise EntityError(f"Unmatched end tag at byte offset {offset}, expected \"</{stack[-1]}>\", "
                                      f"found \"</{name}>\"")
                stack.pop()
            else:
                match = _NAME.match(inner)
                name = match.group().lower() if match else ""
                if name not in TAGS:
                    raise EntityError(f"Unsupported start tag \"{name}\" at byte offset {offset}")
                _attributes(name, inner[len(name):], offset)
                stack.append(name)
            i = end + 1
        elif char == "&":
            match = _ENTITY.match(text, i)
            if match:
                out.append(html.unescape(match.group()))
                i = match.end()
            else:
                out.append(char)
                i += 1
        else:
            out.append(char)
            i += 1
    if stack:
        raise EntityError(f"Can't find end tag corresponding to start tag \"{stack[-1]}\"")
    return "".join(out)


@dataclass
class Sent:
    """One message the bot sent."""

    method: str
    chat_id: int
    message_id: int
    text: str | None = None  # as Telegram shows it (entities parsed)
    raw: str | None = None  # as the bot sent it
    parse_mode: str | None = None
    buttons: list[list[dict[str, Any]]] = field(default_factory=list)
    file_name: str | None = None
    file_bytes: bytes | None = None


class FakeTelegram:
    def __init__(self, token: str = "123456789:TEST-token_abc") -> None:
        self.token = token
        self.bot_id = int(token.split(":")[0])
        self.port = free_port()
        self.lock = threading.Lock()
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self.history: list[dict[str, Any]] = []  # every update injected
        self.sent: list[Sent] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every API call, its parameters
        self.refusals: list[tuple[str, str]] = []  # (method, description) of every 400 answered
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)
        self.webhook: dict[str, Any] = {}
        self.failures: list[tuple[str, Any]] = []  # (method, predicate of the params): answered once with a 502
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/bot{token}/{method}", self._api)
            app.router.add_get("/file/bot{token}/{path:.+}", self._file)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-telegram", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the fake Telegram server did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- what a test injects -----------------------------------------------------------------------

    def _chat(self, chat_id: int) -> dict[str, Any]:
        return {"id": chat_id, "type": "private" if chat_id > 0 else "group", "first_name": "Person"}

    def _push(self, update: dict[str, Any]) -> int:
        with self.lock:
            update_id = next(self._ids)
            self.updates.append({"update_id": update_id, **update})
            self.history.append(self.updates[-1])
            return update_id

    def fail_once(self, method: str, check: Any) -> None:
        """The next call of `method` whose parameters pass `check` is answered 502 (Telegram's outages)."""
        with self.lock:
            self.failures.append((method, check))

    def unconfirm(self) -> None:
        """Every update is offered again, as after a bot that crashed before confirming what it took."""
        with self.lock:
            self.updates = list(self.history)

    def _message(self, chat_id: int, **fields: Any) -> dict[str, Any]:
        return {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self._chat(chat_id),
                "from": {"id": abs(chat_id), "is_bot": False, "first_name": "Person"}, **fields}

    def add_file(self, name: str, content: bytes) -> str:
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = (f"documents/{file_id}-{name}", content)
            return file_id

    def message(self, chat_id: int, text: str | None = None, *, document: tuple[str, bytes] | None = None,
                photo: bytes | None = None, caption: str | None = None) -> int:
        """A person writes (text, or a document or photo with a caption); returns the update id."""
        fields: dict[str, Any] = {}
        if text is not None:
            fields["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                fields["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if document is not None:
            file_id = self.add_file(*document)
            fields["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": document[0],
                                  "file_size": len(document[1])}
        if photo is not None:
            file_id = self.add_file("photo.jpg", photo)
            fields["photo"] = [{"file_id": file_id + "-small", "file_unique_id": f"s{file_id}", "width": 90,
                                "height": 90},
                               {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 800, "height": 600}]
        if caption is not None:
            fields["caption"] = caption
        return self._push({"message": self._message(chat_id, **fields)})

    def press(self, chat_id: int, data: str) -> int:
        """A person presses an inline button whose callback data is `data`."""
        query = {"id": f"cb{next(self._ids)}", "from": {"id": abs(chat_id), "is_bot": False, "first_name": "Person"},
                 "chat_instance": "ci", "data": data,
                 "message": {"message_id": 1, "date": int(time.time()), "chat": self._chat(chat_id),
                             "text": "earlier"}}
        return self._push({"callback_query": query})

    # -- what a test reads -------------------------------------------------------------------------

    def messages(self, chat_id: int | None = None, method: str | None = None) -> list[Sent]:
        with self.lock:
            return [s for s in self.sent if (chat_id is None or s.chat_id == chat_id)
                    and (method is None or s.method == method)]

    def texts(self, chat_id: int) -> list[str]:
        return [s.text or "" for s in self.messages(chat_id, "sendMessage")]

    def called(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [params for name, params in self.calls if name == method]

    def pending(self) -> int:
        with self.lock:
            return len(self.updates)

    async def wait_for(self, check: Any, timeout: float = 60.0) -> Any:
        """Waits until `check()` is truthy (polling), returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; the bot sent: {[(s.method, s.text) for s in self.sent]}")
            await asyncio.sleep(0.05)

    # -- the API -----------------------------------------------------------------------------------

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    def _error(self, method: str, status: int, description: str) -> web.Response:
        with self.lock:
            self.refusals.append((method, description))
        return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files[key] = (value.filename, value.file.read())
                else:
                    params[key] = value
        for key, value in list(params.items()):  # aiogram sends files as "attach://PART"
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                files[key] = files.pop(value[9:])
                del params[key]
        for key in JSON_FIELDS & params.keys():  # aiogram sends these JSON-encoded in its form data
            if isinstance(params[key], str):
                params[key] = json.loads(params[key])
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(method, 401, "Unauthorized")
        params, files = await self._params(request)
        with self.lock:
            self.calls.append((method, params))
        with self.lock:
            failing = next(((m, check) for m, check in self.failures if m == method and check(params)), None)
            if failing is not None:
                self.failures.remove(failing)
        if failing is not None:
            return self._error(method, 502, "Bad Gateway")
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return self._error(method, 404, "Not Found: method not found")
        result: web.Response = await handler(params, files)
        return result

    async def _m_getme(self, params: dict[str, Any], files: Any) -> web.Response:
        return self._ok({"id": self.bot_id, "is_bot": True, "first_name": "Fake", "username": "fake_bgagents_bot"})

    async def _m_getupdates(self, params: dict[str, Any], files: Any) -> web.Response:
        offset = int(params["offset"]) if params.get("offset") not in (None, "") else None
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self.lock:
            if self.webhook.get("url"):
                return self._error("getUpdates", 409, "Conflict: can't use getUpdates method while webhook "
                                                      "is active; use deleteWebhook to delete the webhook first")
            if offset is not None:  # confirmed: forgotten, as Telegram does
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
        while True:
            with self.lock:
                found = [u for u in self.updates if offset is None or u["update_id"] >= offset][:100]
            if found or time.monotonic() >= deadline:
                return self._ok(found)
            await asyncio.sleep(0.02)

    def _sent(self, method: str, params: dict[str, Any], **fields: Any) -> tuple[Sent, dict[str, Any]]:
        markup = params.get("reply_markup") or {}
        sent = Sent(method=method, chat_id=int(params["chat_id"]), message_id=next(self._message_ids),
                    parse_mode=params.get("parse_mode"), buttons=markup.get("inline_keyboard", []), **fields)
        with self.lock:
            self.sent.append(sent)
        message = {"message_id": sent.message_id, "date": int(time.time()), "chat": self._chat(sent.chat_id),
                   "from": {"id": self.bot_id, "is_bot": True, "first_name": "Fake"}}
        return sent, message

    async def _m_sendmessage(self, params: dict[str, Any], files: Any) -> web.Response:
        raw = str(params.get("text") or "")
        text = raw
        if params.get("parse_mode") == "HTML":
            try:
                text = parse_html(raw)
            except EntityError as exc:
                return self._error("sendMessage", 400, f"Bad Request: can't parse entities: {exc}")
        if not text.strip():
            return self._error("sendMessage", 400, "Bad Request: message text is empty")
        if _utf16(text) > LIMIT:
            return self._error("sendMessage", 400, "Bad Request: message is too long")
        _, message = self._sent("sendMessage", params, text=text, raw=raw)
        return self._ok({**message, "text": text})

    async def _m_senddocument(self, params: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> web.Response:
        if "document" not in files:
            return self._error("sendDocument", 400, "Bad Request: there is no document in the request")
        name, content = files["document"]
        file_id = self.add_file(name, content)
        _, message = self._sent("sendDocument", params, file_name=name, file_bytes=content,
                                text=params.get("caption"))
        return self._ok({**message, "document": {"file_id": file_id, "file_unique_id": f"u{file_id}",
                                                 "file_name": name}})

    async def _m_sendchataction(self, params: dict[str, Any], files: Any) -> web.Response:
        return self._ok(True)

    async def _m_answercallbackquery(self, params: dict[str, Any], files: Any) -> web.Response:
        return self._ok(True)

    async def _m_getfile(self, params: dict[str, Any], files: Any) -> web.Response:
        file_id = str(params.get("file_id"))
        with self.lock:
            found = self.files.get(file_id)
        if found is None:
            return self._error("getFile", 400, "Bad Request: invalid file_id")
        path, content = found
        return self._ok({"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(content),
                         "file_path": path})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        with self.lock:
            found = [content for p, content in self.files.values() if p == path]
        return web.Response(body=found[0]) if found else web.Response(status=404)

    async def _m_setwebhook(self, params: dict[str, Any], files: Any) -> web.Response:
        with self.lock:
            self.webhook = dict(params)
        return self._ok(True)

    async def _m_deletewebhook(self, params: dict[str, Any], files: Any) -> web.Response:
        with self.lock:
            self.webhook = {}
        return self._ok(True)


def main() -> None:
    """Try the bot by hand: `python -m tests.fake_telegram [CHAT_ID]` serves the fake API; type a line to
    send it from that chat, `!press DATA` to press a button, `!file PATH [caption]` to send a document."""
    import sys
    from pathlib import Path

    chat = int(sys.argv[1]) if len(sys.argv) > 1 else 4242
    fake = FakeTelegram().start()
    print(f"fake Telegram at {fake.url}, token {fake.token}, you are chat {chat}", flush=True)
    shown = 0

    def show() -> None:
        nonlocal shown
        while True:
            time.sleep(0.2)
            for sent in fake.messages()[shown:]:
                keyboard = " ".join(f"[{b['text']} -> {b['callback_data']}]" for row in sent.buttons for b in row)
                body = sent.text if sent.method == "sendMessage" else f"<{sent.file_name}> {sent.text or ''}"
                print(f"bot -> {sent.chat_id} ({sent.method}, {sent.parse_mode or 'plain'}): {body} {keyboard}",
                      flush=True)
                shown += 1

    threading.Thread(target=show, daemon=True).start()
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("!press "):
            fake.press(chat, line.removeprefix("!press ").strip())
        elif line.startswith("!file "):
            path, _, caption = line.removeprefix("!file ").strip().partition(" ")
            fake.message(chat, document=(Path(path).name, Path(path).read_bytes()), caption=caption or None)
        elif line.startswith("!from "):  # !from CHAT TEXT: a message from another chat
            other, _, text = line.removeprefix("!from ").partition(" ")
            fake.message(int(other), text)
        elif line:
            fake.message(chat, line)


if __name__ == "__main__":
    main()
