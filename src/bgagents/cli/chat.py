"""`bgagents chat`: a conversation with the main agent in the terminal.

Answers, including those of background agents, are printed above the input line while you type
(prompt_toolkit's `patch_stdout`), from a long poll of the conversation's responses.
"""

from __future__ import annotations

import asyncio
import html
import shutil
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import HTML
from prompt_toolkit.patch_stdout import patch_stdout

from .client import Client, ClientError

POLL_WAIT = 25  # seconds one long poll of /responses may wait
SETTLE = 3.0  # seconds without a running session before `--message` stops listening for results
HELP = """\
Type a message and press Enter. Answers from background agents appear here when they are ready.
  /bg PROMPT       run PROMPT as a background agent
  /sessions        the running sessions (▶ is the main one)
  /session NAME    one session: your prompt, model, elapsed, status, progress
  /peek NAME       ask a small model what NAME has done and has left
  /kill NAME       stop a session (its result is dropped)
  /background      push the running main turn into the background
  /clear           start a fresh main session
  /help, /quit     this help; leave (or Ctrl-D)
  1, 2, …          tap the numbered button of the last answer"""
COMMANDS = {"bg": True, "sessions": False, "session": True, "peek": True, "kill": True, "background": False,
            "clear": False, "help": False, "quit": False, "exit": False}  # command -> needs an argument


@dataclass
class Action:
    kind: str  # message, button, command, usage, unknown, none
    arg: str = ""
    command: str = ""


def parse_line(line: str, buttons: list[str]) -> Action:
    """What a typed line asks for: a message, a button tap (its number) or a /command."""
    text = line.strip()
    if not text:
        return Action("none")
    if text.isdigit() and 1 <= int(text) <= len(buttons):
        return Action("button", buttons[int(text) - 1])
    if not text.startswith("/"):
        return Action("message", text)
    name, _, rest = text[1:].partition(" ")
    name, rest = name.lower(), rest.strip()
    if name not in COMMANDS:
        return Action("unknown", command=name)
    if COMMANDS[name] and not rest:
        return Action("usage", command=name)
    return Action("command", rest, command="quit" if name == "exit" else name)


def _seconds(value: float) -> str:
    seconds = max(0, int(value))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _progress(session: dict[str, Any]) -> str:
    p = session.get("progress") or {}
    parts = [f"{p.get('requests', 0)} req", f"{p.get('tool_calls', 0)} tools"]
    todos = p.get("todos") or {}
    if todos.get("total"):
        parts.append(f"todos {todos.get('done', 0)}/{todos['total']}")
    return " · ".join(parts)


def format_response(response: dict[str, Any]) -> str:
    """An answer as lines of plain text: message, files, then buttons numbered for tapping."""
    lines = [response.get("message") or "[No output]"]
    lines += [f"  file: {path}" for path in response.get("files") or []]
    buttons = response.get("buttons") or []
    if buttons:
        lines.append("  " + "  ".join(f"[{i}] {label}" for i, label in enumerate(buttons, 1)))
    return "\n".join(lines)


def format_sessions(sessions: list[dict[str, Any]]) -> str:
    if not sessions:
        return "no sessions running"
    rows = []
    for s in sessions:
        mark = "▶" if s["main"] else "-"
        rows.append(f"{mark} {s['name'][:28]:<28} {_seconds(s['elapsed']):>6} {s['status']:<8} {_progress(s)}"
                    + ("  [main]" if s["main"] else ""))
    return "\n".join(rows)


def format_session(s: dict[str, Any]) -> str:
    prompt = s["prompt"] if len(s["prompt"]) <= 300 else s["prompt"][:299] + "…"
    p = s.get("progress") or {}
    lines = [f"{s['name']}" + (" [main]" if s["main"] else ""), f"  prompt:   {prompt}", f"  model:    {s['model']}",
             f"  elapsed:  {_seconds(s['elapsed'])}", f"  status:   {s['status']}", f"  progress: {_progress(s)}"]
    if p.get("last_tool_args"):
        lines.append(f"  last:     {p['last_tool_args']}")
    if p.get("last_message"):
        lines.append(f"  said:     {' '.join(str(p['last_message']).split())[:200]}")
    return "\n".join(lines)


def _wrap(text: str) -> str:
    """Wrapped at words to the terminal (at most 100 columns), keeping the text's own line breaks."""
    width = min(100, shutil.get_terminal_size((80, 24)).columns) - 1
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  " if line.startswith("  ") else "",
                                    break_long_words=True, break_on_hyphens=False) or line
                     for line in text.splitlines())


def _say(text: str, style: str = "") -> None:
    escaped = html.escape(_wrap(text))
    print_formatted_text(HTML(f"<{style}>{escaped}</{style}>" if style else escaped))


@dataclass
class Chat:
    """One terminal conversation; every server call runs in a thread so typing never blocks."""

    client: Client
    poller: Client  # its own connection for the long poll
    cid: str
    since: int = 0
    buttons: list[str] = field(default_factory=list)

    def base(self) -> str:
        return f"/conversations/{self.cid}"

    def delivered(self) -> list[dict[str, Any]]:
        """Every answer so far (paged), to start after the latest or show the last few."""
        out: list[dict[str, Any]] = []
        while True:
            page: list[dict[str, Any]] = self.client.get(f"{self.base()}/responses",
                                                         since=out[-1]["seq"] if out else 0, limit=1000)
            out += page
            if len(page) < 1000:
                return out

    def show(self, response: dict[str, Any]) -> None:
        self.since = max(self.since, response["seq"])
        self.buttons = list(response.get("buttons") or [])
        _say(format_response(response), "ansigreen")

    async def follow(self) -> None:
        """Prints each new answer as it arrives; a lost server is reported once, then retried."""
        lost = False
        while True:
            try:
                found = await self.poller.get_async(f"{self.base()}/responses", since=self.since, wait=POLL_WAIT)
            except ClientError as exc:
                if not lost:
                    _say(f"! {exc.message} (retrying)", "ansired")
                lost = True
                await asyncio.sleep(2)
                continue
            if lost:
                _say("connected again", "ansigray")
                lost = False
            for response in found:
                self.show(response)

    async def call(self, method: Callable[..., Any], path: str, *args: Any) -> Any:
        return await asyncio.to_thread(method, self.base() + path, *args)

    async def run(self, action: Action) -> bool:
        """Does what the line asked; False means leave."""
        if action.kind == "message":
            event = await self.call(self.client.post, "/messages", {"text": action.arg})
            _say(f"  · sent as '{event['name']}'", "ansigray")
        elif action.kind == "button":
            await self.call(self.client.post, "/buttons", {"label": action.arg})
            _say(f"  · tapped '{action.arg}'", "ansigray")
        elif action.kind == "unknown":
            _say(f"unknown command /{action.command}; /help lists them", "ansiyellow")
        elif action.kind == "usage":
            _say(f"/{action.command} needs {'a prompt' if action.command == 'bg' else 'a session name'}; "
                 "/help lists the commands", "ansiyellow")
        elif action.kind == "command":
            return await self.command(action.command, action.arg)
        return True

    async def command(self, name: str, arg: str) -> bool:
        if name == "quit":
            return False
        if name == "help":
            _say(HELP)
        elif name == "bg":
            await self.call(self.client.post, "/background-agents", {"prompt": arg})
            _say("  · asked the main agent to run it in the background (/sessions shows it)", "ansigray")
        elif name == "sessions":
            sessions = await self.call(self.client.get, "/sessions")
            _say(format_sessions(sessions))
            if sessions:
                _say("  · /session NAME, /peek NAME or /kill NAME for one of them", "ansigray")
        elif name == "session":
            _say(format_session(await self.call(self.client.get, f"/sessions/{arg}")))
        elif name == "peek":
            _say(f"  · peeking at {arg}…", "ansigray")
            peeked = await self.call(self.client.post, f"/sessions/{arg}/peek")
            _say(f"[{peeked['name']}] {peeked['text']}", "ansicyan")
        elif name == "kill":
            killed = await self.call(self.client.post, f"/sessions/{arg}/kill")
            _say(f"killed {killed['name']}; its result will not be delivered")
        elif name == "background":
            moved = await self.call(self.client.post, "/background")
            _say(f"'{moved['name']}' goes on in the background; its answer comes here when done")
        elif name == "clear":
            await self.call(self.client.post, "/clear")
            _say("cleared: the next message starts a fresh main session")
        return True


async def interactive(chat: Chat, history: int) -> None:
    earlier = await asyncio.to_thread(chat.delivered)
    chat.since = earlier[-1]["seq"] if earlier else 0
    for response in earlier[-history:] if history else []:
        chat.show(response)
    _say(f"bgagents chat · conversation '{chat.cid}' · /help for commands, Ctrl-D to leave", "ansigray")
    session: PromptSession[str] = PromptSession()
    with patch_stdout(raw=True):
        follower = asyncio.create_task(chat.follow())
        try:
            while True:
                try:
                    line = await session.prompt_async("you> ")
                except (EOFError, KeyboardInterrupt):
                    break
                try:
                    if not await chat.run(parse_line(line, chat.buttons)):
                        break
                except ClientError as exc:
                    _say(f"! {exc.message}", "ansired")
        finally:  # the long poll is stopped, not waited for: leaving is immediate
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await chat.poller.aclose()


def one_message(client: Client, cid: str, text: str, wait: float,
                show: Callable[[dict[str, Any]], None] = lambda r: None) -> tuple[list[dict[str, Any]], bool]:
    """Sends one message; returns the answers that arrive within `wait` seconds in all, and whether
    background work was still going when the wait ran out.

    After the answer it keeps listening while the conversation has sessions running (background agents
    the answer started are listed before it is delivered), until none has run for SETTLE seconds: a
    finished agent's result reaches the person through one more main turn."""
    chat = Chat(client, client, cid)
    earlier = chat.delivered()
    since = earlier[-1]["seq"] if earlier else 0
    client.post(f"{chat.base()}/messages", {"text": text})
    deadline = time.monotonic() + wait
    answers: list[dict[str, Any]] = []

    def poll(seconds: float) -> bool:
        nonlocal since
        found: list[dict[str, Any]] = client.get(f"{chat.base()}/responses", since=since,
                                                 wait=max(0.0, min(POLL_WAIT, seconds)))
        for response in found:
            since = max(since, response["seq"])
            answers.append(response)
            show(response)
        return bool(found)

    while not answers and not poll(deadline - time.monotonic()) and time.monotonic() < deadline:
        pass
    busy = bool(answers) and bool(client.get(f"{chat.base()}/sessions"))
    idle_since: float | None = None
    while busy and (remaining := deadline - time.monotonic()) > 0:
        if poll(min(1.0, remaining)) or client.get(f"{chat.base()}/sessions"):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= SETTLE:
            busy = False
    return answers, busy
