"""What a person decides: approvals of tool calls, and what becomes of an isolated task's changes."""

from __future__ import annotations

from typing import Annotated

import typer

from . import render
from .app import DECIDE, app
from .common import JsonOpt, call, console, emit, err, print_list, write_raw


@app.command(rich_help_panel=DECIDE)
def approvals(
    all_: Annotated[bool, typer.Option("--all", help="Include decided ones.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Tool calls waiting for your decision."""
    print_list(json_mode, call(json_mode, lambda c: c.get("/approvals", status="all" if all_ else "pending")),
               "no approvals waiting" if not all_ else "no approvals", render.approval_rows)


def _decide(approval_id: str, decision: str, reason: str | None, json_mode: bool) -> None:
    item = call(json_mode, lambda c: c.post(f"/approvals/{approval_id}", {"decision": decision, "reason": reason}))
    emit(item) if json_mode else console.print(f"{item['id']} {item['status']} ({item['tool']} of {item['task_id']})")


@app.command(rich_help_panel=DECIDE)
def approve(approval_id: str, reason: Annotated[str | None, typer.Option(help="Why.")] = None,
            json_mode: JsonOpt = False) -> None:
    """Approve a waiting tool call; the task goes on at once."""
    _decide(approval_id, "approve", reason, json_mode)


@app.command(rich_help_panel=DECIDE)
def deny(approval_id: str, reason: Annotated[str | None, typer.Option(help="Why (the agent sees it).")] = None,
         json_mode: JsonOpt = False) -> None:
    """Deny a waiting tool call; the agent is told and goes on without it."""
    _decide(approval_id, "deny", reason, json_mode)


@app.command(rich_help_panel=DECIDE)
def diff(task_id: str, stat: Annotated[bool, typer.Option("--stat", help="Only the summary.")] = False,
         json_mode: JsonOpt = False) -> None:
    """An isolated task's changes against where its branch started; piped, only the patch (for `git apply`)."""
    changes = call(json_mode, lambda c: c.get(f"/tasks/{task_id}/diff"))
    if json_mode:
        emit(changes)
        return
    header = f"{changes['branch']} ({changes['state']}, from {changes['base'][:10]})"
    summary = changes["stat"].rstrip("\n") + "\n" if changes["stat"] else ""
    if console.is_terminal:
        console.print(header, style="bold")
        write_raw(summary or "no changes\n")
        if not stat and changes["patch"]:
            write_raw("\n" + changes["patch"])
    else:  # the patch (or the stat) alone on stdout, byte for byte, for `git apply`; what it is on stderr
        err.print(header + ("" if summary else ": no changes"))
        write_raw(summary if stat else changes["patch"])


@app.command(rich_help_panel=DECIDE)
def merge(task_id: str, json_mode: JsonOpt = False) -> None:
    """Merge an ended isolated task's branch into the workspace (a conflict names the files; nothing merged)."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/merge"))
    emit(task) if json_mode else console.print(f"merged {task['worktree']['branch']} into the workspace; "
                                               "its worktree is removed")


@app.command(rich_help_panel=DECIDE)
def discard(task_id: str, json_mode: JsonOpt = False) -> None:
    """Throw an isolated task's changes away (its worktree and branch)."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/discard"))
    emit(task) if json_mode else console.print(f"discarded {task['worktree']['branch']}")
