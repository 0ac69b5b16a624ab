"""The Telegram channel against the project's fake Bot API server (tests/fake_telegram.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import FunctionModel

from bgagents import Runtime, Settings
from bgagents.channels.telegram import WEBHOOK_PATH, TelegramChannel
from bgagents.channels.telegram.render import LIMIT, length, split
from bgagents.channels.telegram.store import offsets
from bgagents.channels.telegram.webhook import SECRET_HEADER, webhook_router
from bgagents.conversation import tables
from bgagents.server import create_app
from bgagents.settings import ConversationSettings, TelegramSettings
from tests.conftest import ServerProcess, make_settings
from tests.fake_telegram import FakeTelegram, parse_html
from tests.test_conversation import Brain, Handler, echo, send

CHAT = 4242
CID = f"telegram-{CHAT}"
STRANGER = 777


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram().start()
    yield server
    server.stop()


def tg_settings(tmp_path: Path, fake: FakeTelegram, **telegram: Any) -> Settings:
    return make_settings(tmp_path, model="demo", telegram=TelegramSettings(
        token=fake.token, allowed_chats=[CHAT], api_url=fake.url, poll_timeout=1, **telegram))


@asynccontextmanager
async def bot(settings: Settings, handler: Handler | None = None) -> AsyncIterator[tuple[Runtime, TelegramChannel,
                                                                                        Brain | None]]:
    """A runtime (the demo model, or a scripted Brain) with the channel attached as its extension."""
    brain = Brain(handler) if handler is not None else None
    if brain is not None:
        settings = settings.model_copy(update={"model": "brain",
                                               "conversation": ConversationSettings(wait_threshold=5.0)})
    channel = TelegramChannel(settings.telegram)
    rt = Runtime(settings, extensions=[channel])
    if brain is not None:
        rt.register_model("brain", FunctionModel(brain, model_name="brain"))
    async with rt:
        await asyncio.wait_for(channel.ready.wait(), 30)
        yield rt, channel, brain


async def events(rt: Runtime, cid: str = CID) -> list[Any]:
    """The conversation's stored events (read in the store's thread: the loop never waits on the disk)."""
    def read() -> list[Any]:
        with rt.db_engine.connect() as conn:
            return list(conn.execute(sa.select(tables.conv_events).where(tables.conv_events.c.conversation_id == cid)
                                     .order_by(tables.conv_events.c.seq)))

    return await asyncio.to_thread(read)


def answers(fake: FakeTelegram, containing: str) -> list[str]:
    return [t for t in fake.texts(CHAT) if containing in t]


async def test_message_in_answer_out_with_typing_and_the_offset_stored_with_the_event(
        tmp_path: Path, fake: FakeTelegram) -> None:
    async with bot(tg_settings(tmp_path, fake)) as (rt, channel, _):
        update_id = fake.message(CHAT, "hello there")
        await fake.wait_for(lambda: answers(fake, "You said 'hello there'"))
        assert [c["action"] for c in fake.called("sendChatAction")][:1] == ["typing"]
        [event] = (await events(rt))
        assert event.type == "user-message" and event.data["text"] == "hello there"
        assert event.source == f"telegram:{fake.bot_id}:{update_id}"
        assert await channel.run(channel.store.offset_sync) == update_id
        sent = fake.messages(CHAT, "sendMessage")[0]
        assert sent.parse_mode == "HTML" and not fake.refusals


async def test_buttons_become_an_inline_keyboard_and_a_press_a_button_click(tmp_path: Path,
                                                                           fake: FakeTelegram) -> None:
    async with bot(tg_settings(tmp_path, fake)) as (rt, _, _):
        fake.message(CHAT, "shall we?")
        [asked] = await fake.wait_for(lambda: [m for m in fake.messages(CHAT) if m.buttons])
        assert [row[0]["text"] for row in asked.buttons] == ["Yes", "No", "Later"]
        fake.press(CHAT, asked.buttons[1][0]["callback_data"])
        await fake.wait_for(lambda: answers(fake, "You chose 'No'"))
        assert [e.data.get("button") for e in (await events(rt)) if e.type == "button-click"] == ["No"]
        assert fake.called("answerCallbackQuery")  # the client's spinner stops
        fake.press(CHAT, "b:999:0")  # a button of a response that does not exist
        await fake.wait_for(lambda: len(fake.called("answerCallbackQuery")) == 2)
        assert fake.called("answerCallbackQuery")[1]["text"] == "this button no longer works"


async def test_files_in_are_saved_into_the_workspace_and_files_out_sent_as_documents(
        tmp_path: Path, fake: FakeTelegram) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        paths = [f.get("path") for f in event.iter("file")]
        if paths:
            return send(f"got {event.findtext('text')}", files=[*paths, "missing.txt"])
        return echo(event, messages)

    settings = tg_settings(tmp_path, fake)
    async with bot(settings, handler) as (rt, _, brain):
        fake.message(CHAT, document=("notes v1.txt", b"line one\n"), caption="read this")
        [doc] = await fake.wait_for(lambda: fake.messages(CHAT, "sendDocument"))
        fake.message(CHAT, photo=b"\xff\xd8jpeg-bytes")
        await fake.wait_for(lambda: len(fake.messages(CHAT, "sendDocument")) == 2)
    workspace = settings.workspace_path
    first, second = [e.data["files"] for e in (await events(rt))]
    assert first[0].startswith(f"telegram/{CHAT}/") and first[0].endswith("-notes_v1.txt")
    assert (workspace / first[0]).read_bytes() == b"line one\n"
    assert second[0].startswith(f"telegram/{CHAT}/") and second[0].endswith(".jpg")
    assert (workspace / second[0]).read_bytes() == b"\xff\xd8jpeg-bytes"
    assert doc.file_bytes == b"line one\n" and doc.file_name and doc.file_name.endswith("notes_v1.txt")
    assert "got read this" in fake.texts(CHAT)
    assert "(file not found: missing.txt)" in fake.texts(CHAT)  # said, not silently dropped
    assert brain is not None and [e.findtext("text") for e in brain.events("user-message")] == ["read this", None]


async def test_a_long_answer_is_split_at_paragraphs_under_the_limit(tmp_path: Path, fake: FakeTelegram) -> None:
    paragraphs = [f"Part {i}: " + " ".join(f"word{j}" for j in range(450)) for i in range(4)]
    long = "\n\n".join(paragraphs)

    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        return send(long, buttons=["More"])

    async with bot(tg_settings(tmp_path, fake), handler) as _:
        fake.message(CHAT, "tell me everything")
        await fake.wait_for(lambda: [m for m in fake.messages(CHAT) if m.buttons])
    sent = fake.messages(CHAT, "sendMessage")
    assert len(long) > LIMIT and len(sent) > 1 and not fake.refusals
    assert all(length(m.text or "") <= LIMIT for m in sent)
    assert "\n\n".join(m.text or "" for m in sent) == long  # cut between paragraphs only
    assert [bool(m.buttons) for m in sent] == [False] * (len(sent) - 1) + [True]  # the keyboard goes last


async def test_an_answer_cut_by_a_telegram_outage_goes_on_from_its_next_message(tmp_path: Path,
                                                                                 fake: FakeTelegram) -> None:
    paragraphs = [f"Part {i}: " + "tea " * 900 for i in range(3)]

    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        return send("\n\n".join(paragraphs), files=["tea.txt"])

    settings = tg_settings(tmp_path, fake)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "tea.txt").write_text("tea")
    fake.fail_once("sendMessage", lambda params: "Part 1" in params.get("text", ""))
    fake.fail_once("sendDocument", lambda params: True)
    async with bot(settings, handler) as _:
        fake.message(CHAT, "tell me")
        await fake.wait_for(lambda: fake.messages(CHAT, "sendDocument"))
        await asyncio.sleep(0.5)
    assert [m.text.split(":")[0] for m in fake.messages(CHAT, "sendMessage") if m.text] == ["Part 0", "Part 1",
                                                                                           "Part 2"]
    assert len(fake.messages(CHAT, "sendDocument")) == 1
    assert [status for _, status in fake.refusals] == ["Bad Gateway", "Bad Gateway"]


async def test_markdown_telegram_refuses_goes_out_as_plain_text(tmp_path: Path, fake: FakeTelegram) -> None:
    tangled = "**bold _and** italic_ [x](http://a.b/\"q)"

    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        return send(tangled if event.findtext("text") == "tangled" else "**fine** and `code < 1`")

    async with bot(tg_settings(tmp_path, fake), handler) as _:
        fake.message(CHAT, "tangled")
        await fake.wait_for(lambda: tangled in fake.texts(CHAT))
        fake.message(CHAT, "plain")
        await fake.wait_for(lambda: "fine and code < 1" in fake.texts(CHAT))
    [(method, refusal)] = fake.refusals
    assert method == "sendMessage" and refusal.startswith("Bad Request: can't parse entities")
    plain, html = fake.messages(CHAT, "sendMessage")
    assert plain.parse_mode is None and plain.text == tangled
    assert html.parse_mode == "HTML" and html.raw == "<b>fine</b> and <code>code &lt; 1</code>"


async def test_a_chat_not_allowed_gets_one_refusal_and_nothing_is_stored_or_logged(
        tmp_path: Path, fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "my-bank-pin-8841"
    async with bot(tg_settings(tmp_path, fake)) as (rt, channel, _):
        fake.message(STRANGER, f"hello {secret}")
        fake.message(STRANGER, document=(f"{secret}.txt", secret.encode()), caption=secret)
        last = fake.press(STRANGER, f"b:1:{secret}")
        fake.message(CHAT, "hello there")  # the allowed chat goes on
        await fake.wait_for(lambda: answers(fake, "You said"))
        assert await channel.run(channel.store.offset_sync) == last + 1
    async with bot(tg_settings(tmp_path, fake)) as (rt, channel, _):  # after a restart too: refused once, ever
        fake.message(STRANGER, secret)
        fake.message(CHAT, "hello again")
        await fake.wait_for(lambda: answers(fake, "You said 'hello again'"))
    [refusal] = fake.messages(STRANGER)
    assert "not one it talks to" in (refusal.text or "") and str(STRANGER) in (refusal.text or "")
    assert [c["callback_query_id"] for c in fake.called("answerCallbackQuery")]  # its spinner stopped too
    assert not (await events(rt, f"telegram-{STRANGER}"))
    assert not list((tmp_path / "ws").rglob(f"*{secret}*")) and not (tmp_path / "ws" / "telegram" / str(STRANGER)) \
        .exists()
    with sqlite3.connect(tmp_path / "home" / "bgagents.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert secret not in dump
    assert secret not in caplog.text and str(STRANGER) in caplog.text  # its id is logged, for the owner


async def test_bg_sessions_with_peek_and_kill_buttons_clear_and_background(tmp_path: Path,
                                                                          fake: FakeTelegram) -> None:
    release = asyncio.Event()

    async def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        kind = event.get("type")
        if kind == "user-message" and "background agent" in (event.findtext("instructions") or ""):
            return send("on it", background_agents=[{"name": "tea history", "prompt": event.findtext("text")}])
        if kind == "background-agent-start":
            await release.wait()
            return send("tea is old")
        if kind == "peek":
            return "reading about tea, half done"
        return echo(event, messages)

    async with bot(tg_settings(tmp_path, fake), handler) as (rt, _, _):
        fake.message(CHAT, "/bg")
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if t.startswith("/bg needs a prompt")])
        fake.message(CHAT, "/bg research the history of tea")
        await fake.wait_for(lambda: "on it" in fake.texts(CHAT))
        assert (await events(rt))[-1].data["text"] == "research the history of tea"

        async def listed() -> Any:
            fake.message(CHAT, "/sessions")
            return await fake.wait_for(lambda: [m for m in fake.messages(CHAT) if m.buttons])

        [listing] = await listed()
        assert "tea-history" in (listing.text or "")
        peek, kill = listing.buttons[0]
        assert peek["text"] == "peek tea-history" and kill["text"] == "kill tea-history"
        fake.press(CHAT, peek["callback_data"])
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if "half done" in t])
        fake.press(CHAT, kill["callback_data"])
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if t.startswith("Killed tea-history")])
        assert await rt.conversations.sessions(CID) == []
        release.set()

        fake.message(CHAT, "/background")
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if "has no main turn running" in t])
        fake.message(CHAT, "/peek nobody")
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if "no running session 'nobody'" in t])
        fake.message(CHAT, "/clear")
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if t.startswith("Cleared")])
        conversation = await rt.conversations.store.run(rt.conversations.store.conversation_sync, CID)
        assert conversation is not None and conversation.main_task_id is None
        fake.message(CHAT, "/frobnicate")
        fake.message(CHAT, "/help")
        await fake.wait_for(lambda: [t for t in fake.texts(CHAT) if t.startswith("bgagents: write")])
        assert [t for t in fake.texts(CHAT) if t.startswith("Unknown command /frobnicate")]
    assert "tea is old" not in " ".join(fake.texts(CHAT))  # a killed session's result is dropped


async def test_updates_pending_across_a_restart_are_each_handled_once(tmp_path: Path, fake: FakeTelegram) -> None:
    settings = tg_settings(tmp_path, fake)
    async with bot(settings) as (rt, _, _):
        fake.message(CHAT, "one")
        await fake.wait_for(lambda: answers(fake, "'one'"))
    for text in ("two", "three", "four"):  # while the server is down
        fake.message(CHAT, text)
    fake.unconfirm()  # and Telegram offers "one" again too: the stored offset skips it
    async with bot(settings) as (rt, channel, _):
        await fake.wait_for(lambda: answers(fake, "'four'"))
        await asyncio.sleep(0.5)  # anything taken twice would show by now
        assert [e.data["text"] for e in (await events(rt))] == ["one", "two", "three", "four"]
        await asyncio.to_thread(_forget_offsets, rt)  # with no offset at all, the events' source keys hold
    fake.unconfirm()
    async with bot(settings) as (rt, channel, _):
        await fake.wait_for(lambda: fake.pending() == 0)  # taken again, and confirmed
        assert await channel.run(channel.store.offset_sync) == 4
        await asyncio.sleep(0.5)
        assert [e.data["text"] for e in (await events(rt))] == ["one", "two", "three", "four"]
    for text in ("one", "two", "three", "four"):
        assert len(answers(fake, f"You said '{text}'")) == 1


def _forget_offsets(rt: Runtime) -> None:
    with rt.db_engine.begin() as conn:
        conn.execute(offsets.delete())


async def test_webhook_mode_checks_the_secret_and_ignores_a_redelivered_update(tmp_path: Path,
                                                                              fake: FakeTelegram) -> None:
    settings = tg_settings(tmp_path, fake, webhook_url="https://bot.example.org/telegram/webhook")
    async with bot(settings) as (rt, channel, _):
        assert fake.webhook["url"] == "https://bot.example.org/telegram/webhook"
        assert fake.webhook["secret_token"] == channel.secret and str(fake.webhook["max_connections"]) == "1"
        app = create_app(rt, "api-token", manage_runtime=False)
        app.include_router(webhook_router(channel))
        update = {"update_id": 9001, "message": {"message_id": 5, "date": 1, "text": "via webhook",
                                                 "chat": {"id": CHAT, "type": "private"}}}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            wrong = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: "guess"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
            bad = await client.post(WEBHOOK_PATH, content=b"{not json", headers={SECRET_HEADER: channel.secret})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_update"
            for _ in range(2):  # Telegram delivers again when it saw no answer
                ok = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: channel.secret})
                assert ok.status_code == 200
        await fake.wait_for(lambda: answers(fake, "via webhook"))
        await asyncio.sleep(0.3)
        assert [e.data["text"] for e in (await events(rt))] == ["via webhook"]
        assert len(answers(fake, "via webhook")) == 1
        assert not fake.called("getUpdates")


def test_split_at_paragraphs_then_lines_then_anywhere_with_code_blocks_kept_whole() -> None:
    assert split("a\n\nb", limit=5) == ["a\n\nb"]
    assert split("aaa\n\nbbb\n\nccc", limit=8) == ["aaa\n\nbbb", "ccc"]
    assert split("aaa\nbbb\nccc", limit=8) == ["aaa\nbbb", "ccc"]
    assert split("abcdefghij", limit=4) == ["abcd", "efgh", "ij"]
    assert split("😀" * 5, limit=4) == ["😀😀", "😀😀", "😀"]  # Telegram counts UTF-16 units
    code = "```py\n" + "\n".join(f"x{i}" for i in range(6)) + "\n```"
    first, *rest = split(code, limit=12)
    assert first.startswith("```py\n") and first.endswith("\n```")
    assert all(p.startswith("```py\n") for p in rest) and rest[-1].endswith("```")


def test_the_fake_server_parses_html_as_telegram_does() -> None:
    assert parse_html("<b>a</b> &lt;b&gt; <a href=\"x\">y</a>") == "a <b> y"
    for bad, says in [("<b>a", "Can't find end tag corresponding to start tag \"b\""),
                      ("<b><i>a</b></i>", "Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\""),
                      ("<foo>a</foo>", "Unsupported start tag \"foo\" at byte offset 0")]:
        with pytest.raises(Exception, match=says):
            parse_html(bad)


def test_allowed_chats_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGAGENTS_TELEGRAM__TOKEN", "1:abc")
    monkeypatch.setenv("BGAGENTS_TELEGRAM__ALLOWED_CHATS", "12, -100345")
    settings = Settings()
    assert settings.telegram.allowed_chats == [12, -100345]
    assert "abc" not in repr(settings)  # the token is a secret


def _serve_env(fake: FakeTelegram) -> dict[str, str]:
    return {"BGAGENTS_MODEL": "demo", "BGAGENTS_TELEGRAM__TOKEN": fake.token, "BGAGENTS_TELEGRAM__API_URL": fake.url,
            "BGAGENTS_TELEGRAM__ALLOWED_CHATS": str(CHAT), "BGAGENTS_TELEGRAM__POLL_TIMEOUT": "1"}


@pytest.mark.timeout(400)
async def test_kill_9_of_serve_with_updates_pending_handles_each_once(
        fake: FakeTelegram, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(**_serve_env(fake))
    server.start(timeout=150)  # a loaded machine takes long to import
    fake.message(CHAT, "alpha")
    await fake.wait_for(lambda: answers(fake, "'alpha'"))
    fake.message(CHAT, "beta")
    database = server.home / "bgagents.db"

    def stored(text: str) -> bool:
        with sqlite3.connect(database) as conn:
            return bool(conn.execute("select 1 from bg_conv_events where data like ?", (f"%{text}%",)).fetchall())

    await fake.wait_for(lambda: stored("beta"))
    server.kill9()  # right after beta was stored: its answer may or may not be out
    fake.message(CHAT, "gamma")
    fake.message(CHAT, "/sessions")
    server.start(timeout=150)
    # /sessions answers with the sessions still running (beta's recovered turn may be) or that none is
    await fake.wait_for(lambda: answers(fake, "'gamma'") and [t for t in fake.texts(CHAT)
                                                              if "sessions" in t or t.startswith("▶ ")])
    await asyncio.sleep(1.0)  # anything taken or sent twice would show by now
    server.stop()
    for text in ("alpha", "beta", "gamma"):
        assert len(answers(fake, f"You said '{text}'")) == 1, fake.texts(CHAT)
    with sqlite3.connect(database) as conn:
        rows = conn.execute("select source from bg_conv_events where conversation_id = ?", (CID,)).fetchall()
        offset = conn.execute(sa.select(offsets.c.update_id).compile().string).fetchone()
    assert len(rows) == 3 and len({r[0] for r in rows}) == 3
    assert offset is not None and offset[0] == max(int(r[0].rsplit(":", 1)[1]) for r in rows) + 1


async def test_files_never_follow_a_link_a_task_planted(tmp_path: Path, fake: FakeTelegram) -> None:
    """A task writes the workspace (here one holding the server's home, as a workspace of ~ does): a link it
    planted never makes an upload of the person land outside it, nor a response send the server's token."""
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        return send("here it is", files=["leak.txt"])

    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    home = workspace / ".bgagents"
    settings = tg_settings(tmp_path, fake).model_copy(update={"home": home})
    home.mkdir(parents=True)
    (home / "token").write_text("the-server-token")
    outside.mkdir()
    (workspace / "leak.txt").symlink_to(home / "token")
    (workspace / "telegram").symlink_to(outside)  # where uploads are saved
    async with bot(settings, handler):
        fake.message(CHAT, document=("notes.txt", b"from the person"), caption="keep this")
        await fake.wait_for(lambda: answers(fake, "could not save notes.txt"))
        fake.message(CHAT, "send me the file")
        await fake.wait_for(lambda: answers(fake, "(file not found: leak.txt)"))
    assert list(outside.iterdir()) == []
    assert not any(b"the-server-token" in (m.file_bytes or b"") for m in fake.messages(CHAT, "sendDocument"))
