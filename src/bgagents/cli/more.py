"""More commands: the chat, the dashboard, usage, and the agent profiles."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated, Any

import typer

from . import render
from .app import MORE, START, app
from .common import JsonOpt, call, emit, err, fail, print_list, print_rows, write_raw
from .render import Column


@app.command(rich_help_panel=MORE)
def chat(
    conversation: Annotated[str, typer.Option("--conversation", "-c", help="Conversation id.")] = "default",
    message: Annotated[str | None, typer.Option("--message", "-m", help="Send one message, print the answer, "
                                                "exit.")] = None,
    wait: Annotated[float, typer.Option(help="With --message: seconds to wait in all, for the answer and the "
                                        "results of background agents it started.")] = 60.0,
    history: Annotated[int, typer.Option(help="Show the last N answers first.")] = 0,
    json_mode: JsonOpt = False,
) -> None:
    """Talk to the main agent; long work goes to background agents whose answers arrive as you type."""
    from . import chat as chat_mod

    if message is not None:
        def show(response: dict[str, Any]) -> None:
            if not json_mode:
                write_raw(chat_mod.format_response(response) + "\n")

        found, busy = call(json_mode, lambda c: chat_mod.one_message(c, conversation, message, wait, show))
        if json_mode:
            emit(found)
        elif not found:
            fail(f"no answer within {wait:g} s (it will still arrive: bgagents chat -c {conversation} --history 1)",
                 "timeout")
        elif busy:
            err.print(f"(background agents are still at work after {wait:g} s; their results arrive in "
                      f"bgagents chat -c {conversation})")
        return
    if json_mode:
        fail("--json needs --message (the interactive chat is for people)", "invalid_input", json_mode)
    client = call(False, lambda c: c)
    call(False, lambda c: c.get(f"/conversations/{conversation}/responses", limit=1))  # a clear error first
    poller = client.with_timeout(chat_mod.POLL_WAIT + 15)
    asyncio.run(chat_mod.interactive(chat_mod.Chat(client, poller, conversation), history))


def graphical_browser() -> bool:
    """Whether a browser can show the dashboard here: one named in $BROWSER, a desktop session, or macOS and
    Windows. Not a text browser in this terminal (the dashboard needs JavaScript), as Python's `webbrowser`
    would pick over SSH."""
    return bool(os.environ.get("BROWSER") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or sys.platform in ("darwin", "win32"))


@app.command("open", rich_help_panel=START)
def open_dashboard(
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the address.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Open the dashboard in a browser, logged in (prints its address too, and says when no browser opened)."""
    import webbrowser

    from .client import dashboard_url

    client = call(json_mode, lambda c: c)
    call(json_mode, lambda c: c.get("/stats"))  # a clear error when no server answers or the token is wrong
    if not client.token:
        fail("no token: set BGAGENTS_TOKEN or start the server once to create $BGAGENTS_HOME/token", "no_token",
             json_mode)
    url = dashboard_url(client.url, client.token)
    opened = not no_browser and graphical_browser() and webbrowser.open(url)
    if json_mode:
        emit({"url": url, "opened": opened})
        return
    print(url)
    if not no_browser and not opened:
        err.print("no browser was opened (none found here): open the address above in one"
                  + ("" if graphical_browser() else ", e.g. on your own machine through `ssh -L PORT:127.0.0.1:PORT`"))


@app.command(rich_help_panel=MORE)
def usage(
    by: Annotated[str, typer.Option(help="Group by model, agent or day.")] = "model",
    since: Annotated[str | None, typer.Option(help="Only tasks created since: 7d, 12h, a date, Unix seconds.")]
    = None,
    json_mode: JsonOpt = False,
) -> None:
    """Tokens, requests, tool calls and cost, per model, agent or day."""
    start = parse_since(since)
    print_list(json_mode, call(json_mode, lambda c: c.get("/usage", by=by, since=start)),
               "no tasks" + (" in that time" if since else ""), lambda rows: render.usage_rows(rows, by))


def parse_since(value: str | None) -> float | None:
    """'7d', '12h', '30m', an ISO date or time, or Unix seconds → Unix seconds."""
    if value is None:
        return None
    import datetime as dt
    import time as time_module

    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
            return time_module.time() - float(value[:-1]) * units[value[-1]]
        if value.replace(".", "", 1).isdigit():
            return float(value)
        parsed = dt.datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a duration (7d, 12h), a date (2026-11-01) or Unix seconds",
                                 param_hint="--since") from None


@app.command(rich_help_panel=MORE)
def agents(json_mode: JsonOpt = False) -> None:
    """The agent profiles the server knows (read again when their files change), and where each is defined."""
    found = call(json_mode, lambda c: c.get("/agents"))
    if json_mode:
        emit(found)
        return
    columns = [Column("NAME", {"no_wrap": True}), Column("MODEL", {"no_wrap": True}),
               Column("DEFINED IN", {"overflow": "fold"}), Column("DESCRIPTION", {"overflow": "fold"})]
    good = [a for a in found if not a.get("error")]
    print_rows(columns, [[a["name"], a.get("model") or "(default)",
                          "built-in" if a["source"] == "builtin" else a["source"], a.get("description") or ""]
                         for a in good])
    for broken in (a for a in found if a.get("error")):
        err.print(f"not usable: {broken['error']}", style="red")
