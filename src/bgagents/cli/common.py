"""What every command shares: the consoles, `--json`, one clear line per failure, JSON output, and text
that comes from elsewhere (an agent's answer, a diff) written exactly as it is.

The consoles read no markup (`[x]` in a name or an answer stays `[x]`; our own styles are `Text` styles or
an explicit `markup=True`) and, when not on a terminal, wrap nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..settings import Settings
from ..settings_check import config_warnings, describe
from . import render
from .client import Client, ClientError

console = Console(highlight=False, markup=False, emoji=False, soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=not sys.stderr.isatty())

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
T = TypeVar("T")


def model_hint(message: str) -> str:
    """One sentence after a model error: the server's environment decides, not the client's (and the
    keyless demo, unless the error named it already)."""
    demo = "" if "needs no key" in message else "; BGAGENTS_MODEL=demo there needs no key"
    return f"(Keys and BGAGENTS_MODEL are read where `bgagents serve` runs, not here{demo}; `bgagents demo` " \
           "tries it all without one.)"


def fail(message: str, code: str = "error", json_mode: bool = False, exit_code: int = 1) -> NoReturn:
    if code in ("unknown_model", "no_model"):
        message = f"{message.rstrip('.')}. {model_hint(message)}"
    if json_mode:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        err.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(exit_code)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True, soft_wrap=True)


def load_settings(json_mode: bool = False) -> Settings:
    """The settings, or one line saying which is wrong and where; keys of config.toml that nothing reads
    are warned about (on stderr), naming the file and the key."""
    try:
        settings = Settings()
    except Exception as exc:  # a broken config file or environment variable
        fail(describe(exc), "bad_settings", json_mode)
    for line in config_warnings(settings.home):
        warn(line)
    return settings


def call(json_mode: bool, fn: Callable[[Client], T]) -> T:
    """Runs `fn` against the server, turning every failure into one clear line."""
    settings = load_settings(json_mode)
    try:
        client = Client.from_settings(settings)
    except ClientError as exc:  # e.g. BGAGENTS_URL without its scheme
        fail(exc.message, exc.code, json_mode)
    try:
        return fn(client)
    except ClientError as exc:
        fail(exc.message, exc.code, json_mode)


def emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def write_raw(text: str, stream: TextIO | None = None) -> None:
    """`text` byte for byte (UTF-8 when not on a terminal): no markup, no wrapping. On a terminal a last
    line without its newline gets one, so the shell's prompt starts on a line of its own."""
    stream = stream or sys.stdout
    tty = stream.isatty()
    if tty and text and not text.endswith("\n"):
        text += "\n"
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a stream replaced by a test harness
        stream.write(text)
    else:
        buffer.write(text.encode((stream.encoding or "utf-8") if tty else "utf-8", errors="replace"))
        buffer.flush()


def print_rows(columns: list[render.Column], rows: render.Rows, title: str | None = None) -> None:
    """A table on a terminal; tab-separated lines, every column whole, when piped."""
    if console.is_terminal:
        console.print(render.drawn(columns, rows, title=title))
    else:
        write_raw(render.plain(columns, rows))


def print_list(json_mode: bool, items: list[dict[str, Any]], empty: str,
               table: Callable[[list[dict[str, Any]]], tuple[list[render.Column], render.Rows]]) -> None:
    """What a listing command prints: the items as JSON, `empty` when there are none, else their table."""
    if json_mode:
        emit(items)
    elif not items:
        console.print(empty)
    else:
        print_rows(*table(items))
