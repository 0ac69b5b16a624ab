"""The `bgagents` command: the Typer app every command module adds itself to, `--version` and `-h`."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__

START, TASKS, DECIDE, MORE = "Start", "Tasks", "Approvals and isolated tasks", "More"
ORDER = ["demo", "serve", "worker", "open", "doctor", "mcp", "launch", "ls", "show", "output", "logs", "cancel",
         "resume", "send", "fork", "peek", "approvals", "approve", "deny", "diff", "merge", "discard", "chat",
         "agents", "usage"]  # then the command groups: schedule, webhooks

app = typer.Typer(name="bgagents", no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_enable=False)


def in_order() -> None:
    """The commands in the order a person meets them (`-h` shows their panels in this order), whatever order
    their modules were imported in."""
    def place(command: typer.models.CommandInfo) -> int:
        name = command.name or (command.callback.__name__ if command.callback else "")
        return ORDER.index(name) if name in ORDER else len(ORDER)

    app.registered_commands.sort(key=place)


def _version(value: bool) -> None:
    if value:
        print(f"bgagents {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Durable background LLM agents: launch them, watch them, steer them, from here or a browser."""
