"""Waiting for a task's result (`launch --wait`, `output --wait`) and printing it exactly as written.

While it waits it says what it waits for: a live status line on a terminal (stderr, gone at the end), and
once per approval the tool call the task waits on and the commands that decide it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import typer
from rich.text import Text

from . import render
from .client import Client
from .common import err, write_raw

POLL = 1.0  # seconds between status updates on a terminal (the server answers at once when the task ends)
POLL_PIPED = 5.0  # when no one watches a status line: only approvals to notice


def approval_lines(client: Client, task_id: str, told: set[str] | None = None) -> list[str]:
    """What a person needs to decide each approval `task_id` waits on (those not yet in `told`)."""
    pending: list[dict[str, Any]] = client.get("/approvals", status="pending")
    lines = []
    for a in pending:
        if a["task_id"] != task_id or (told is not None and a["id"] in told):
            continue
        if told is not None:
            told.add(a["id"])
        why = f" ({a['reason']})" if a.get("reason") else ""
        lines.append(f"{task_id} waits for your approval of {a['tool']}: {render.approval_call(a)[:200]}{why}. "
                     f"Decide: bgagents approve {a['id']}   or   bgagents deny {a['id']} --reason WHY")
    return lines


def _status(out: dict[str, Any], started: float) -> Text:
    seconds = int(time.monotonic() - started)
    line = Text(f"{out['id']} ", style="dim")
    line.append(render.status_text(out["status"]))
    line.append(f" · waited {seconds // 60}m{seconds % 60:02d}s · {render.progress_line(out)}")
    line.truncate(max(10, err.width - 3), overflow="ellipsis")  # one line beside the spinner, never two
    return line


def wait_output(client: Client, task_id: str, timeout: float | None, live: bool) -> dict[str, Any]:
    """The task's output once it ends, or when `timeout` seconds have passed (`timed_out` then set)."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    told: set[str] = set()
    poll = POLL if live else POLL_PIPED
    shown: AbstractContextManager[Any] = err.status("waiting…", spinner="dots") if live else nullcontext()
    with shown as status:
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            out: dict[str, Any] = client.get(f"/tasks/{task_id}/output", wait="true", timeout=left)
            if out["finished"]:
                return out
            if out["status"] == "waiting":
                for line in approval_lines(client, task_id, told):
                    err.print(Text(line, style="magenta"))
            if status is not None:
                status.update(_status(out, started))
            if deadline is not None and time.monotonic() >= deadline:
                return {**out, "timed_out": True}


def print_output(out: dict[str, Any], approvals: Callable[[], list[str]] = list) -> None:
    """A result exactly as the agent wrote it (data as JSON); a failure as one line (exit 1); a task still
    going as its status and progress (exit 2 when a wait timed out), with what it waits for."""
    if out["finished"]:
        result = out.get("result") or {}
        if out["status"] == "completed":
            if result.get("data") is not None:
                write_raw(json.dumps(result["data"], indent=2, ensure_ascii=False) + "\n")
            elif result.get("text") is not None:
                write_raw(result["text"])
            return
        error = Text(out["status"], style="red")
        error.append(f": {out.get('error') or ''} ({out.get('end_reason')})", style="")
        err.print(error)
        raise typer.Exit(1)
    note = " (timed out waiting)" if out.get("timed_out") else ""
    err.print(f"{out['status']}{note}: {render.progress_line(out)}")
    if out["status"] == "waiting":
        for line in approvals():
            err.print(Text(line, style="magenta"))
    raise typer.Exit(2 if out.get("timed_out") else 0)


def interrupted(task_id: str) -> typer.Exit:
    """Ctrl-C while waiting stops the wait, not the task."""
    err.print(f"stopped waiting; {task_id} goes on (bgagents output {task_id} --wait, or bgagents cancel {task_id})")
    return typer.Exit(130)
