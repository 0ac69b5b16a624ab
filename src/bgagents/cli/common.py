"""What every command shares: the consoles, `--json`, one clear line per failure, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..settings import Settings
from .client import Client, ClientError

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
T = TypeVar("T")


MODEL_HINT = ("Model keys and BGAGENTS_MODEL are read where `bgagents serve` runs, not where this command "
              "runs. To try bgagents without a key: `bgagents demo`, or start the server with "
              "BGAGENTS_MODEL=demo.")


def fail(message: str, code: str = "error", json_mode: bool = False, exit_code: int = 1) -> NoReturn:
    if code in ("unknown_model", "no_model"):  # the server's environment decides, not the client's
        message = f"{message.rstrip('.')}. {MODEL_HINT}"
    if json_mode:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        err.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(exit_code)


def call(json_mode: bool, fn: Callable[[Client], T]) -> T:
    """Runs `fn` against the server, turning every failure into one clear line."""
    try:
        client = Client.from_settings(Settings())
    except ClientError as exc:  # e.g. BGAGENTS_URL without its scheme
        fail(exc.message, exc.code, json_mode)
    except Exception as exc:  # a broken config file or environment variable
        fail(f"bad settings: {exc}", "bad_settings", json_mode)
    try:
        return fn(client)
    except ClientError as exc:
        fail(exc.message, exc.code, json_mode)


def emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
