"""Task commands: launch, ls, show, output, logs, cancel, resume, send, fork, peek."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

import typer
from rich.text import Text

from . import render, waiting
from .app import TASKS, app
from .client import Client, ClientError
from .common import JsonOpt, call, console, emit, err, fail, print_list, write_raw


def parse_limits(values: list[str]) -> dict[str, float]:
    limits: dict[str, float] = {}
    for item in values:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            limits[key.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"'{item}' is not KEY=NUMBER", param_hint="--limit") from None
    return limits


@app.command(rich_help_panel=TASKS)
def launch(
    prompt: Annotated[str, typer.Argument(help="What the agent should do.")],
    name: Annotated[str | None, typer.Option(help="A short name, kept as given (default: from the prompt).")]
    = None,
    agent: Annotated[str | None, typer.Option(help="Agent profile (default: general; see bgagents agents).")]
    = None,
    model: Annotated[str | None, typer.Option(help="Model, e.g. openai:gpt-4o, demo.")] = None,
    fallback: Annotated[list[str] | None, typer.Option(help="Fallback model (repeatable).")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first within its queue.")] = 0,
    parent: Annotated[str | None, typer.Option(help="Parent task or session id.")] = None,
    limit: Annotated[list[str] | None, typer.Option(help="Budget KEY=VALUE (repeatable).")] = None,
    isolation: Annotated[str | None, typer.Option(help="worktree: work in its own git worktree of the "
                                                       "workspace.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result (the id goes to stderr first, "
                                                      "the result to stdout as written).")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Launch a background agent; prints its id."""
    body = {"prompt": prompt, "name": name, "agent": agent, "model": model, "priority": priority,
            "parent_id": parent, "fallback_models": fallback or None, "limits": parse_limits(limit or []) or None,
            "isolation": isolation}
    task = call(json_mode, lambda c: c.post("/tasks", {k: v for k, v in body.items() if v is not None}))
    if not wait:
        emit(task) if json_mode else console.print(task["id"])
        return
    if not json_mode:
        err.print(task["id"])  # first, so a person (or a script reading stderr) has it while it runs
    try:
        out = call(json_mode, lambda c: waiting.wait_output(c, task["id"], None, err.is_terminal and not json_mode))
    except KeyboardInterrupt:
        raise waiting.interrupted(task["id"]) from None
    if json_mode:
        emit(call(json_mode, lambda c: c.get(f"/tasks/{task['id']}")))
    else:
        waiting.print_output(out)


@app.command("ls", rich_help_panel=TASKS)
def list_tasks(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include finished tasks.")] = False,
    status: Annotated[str | None, typer.Option(help="Only these statuses (comma-separated).")] = None,
    parent: Annotated[str | None, typer.Option(help="Only children of this task.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    json_mode: JsonOpt = False,
) -> None:
    """List tasks (active ones, unless --all or --status); tab-separated when piped."""
    wanted = status or (None if all_ else "queued,running,waiting")
    print_list(json_mode, call(json_mode, lambda c: c.get("/tasks", status=wanted, parent=parent, limit=limit)),
               "no tasks" + ("" if all_ or status else " running (use --all to see finished ones)"),
               lambda tasks: render.task_rows(tasks, show_usage=True))


def _diff_stat(client: Client, task: dict[str, Any]) -> str | None:
    """An isolated task's changes so far: from its result once ended, else from its worktree."""
    stat: str | None = (task.get("result") or {}).get("diff_stat")
    if stat is None and (task.get("worktree") or {}).get("state") == "active":
        try:
            stat = client.get(f"/tasks/{task['id']}/diff")["stat"]
        except ClientError:  # its worktree is gone meanwhile: show says what the task row says
            return None
    return stat


@app.command(rich_help_panel=TASKS)
def show(task_id: str, json_mode: JsonOpt = False) -> None:
    """One task: status, progress, result; an isolated task's branch and changes.

    Piped, one `key: value` line per field, nothing cut or wrapped."""
    task = call(json_mode, lambda c: c.get(f"/tasks/{task_id}"))
    if json_mode:
        emit(task)
        return
    stat = call(json_mode, partial(_diff_stat, task=task)) if task.get("worktree") else None
    if console.is_terminal:
        console.print(render.task_panel(task, stat))
    else:
        write_raw(render.task_lines(task, stat))


@app.command(rich_help_panel=TASKS)
def output(
    task_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the task ends (says what it waits for).")]
    = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 60.0,
    json_mode: JsonOpt = False,
) -> None:
    """The task's result exactly as written, or its status and progress while it runs.

    `bgagents output ID > result.md` saves the result byte for byte."""
    try:
        if wait and not json_mode:
            out = call(json_mode, lambda c: waiting.wait_output(c, task_id, timeout, err.is_terminal))
        else:
            params: dict[str, Any] = {"wait": "true" if wait else None, "timeout": timeout}
            out = call(json_mode, lambda c: c.get(f"/tasks/{task_id}/output", **params))
    except KeyboardInterrupt:
        raise waiting.interrupted(task_id) from None
    if json_mode:
        emit(out)
    else:
        waiting.print_output(out, lambda: call(False, lambda c: waiting.approval_lines(c, task_id)))


def _transcript_page(task_id: str, since: int, tool_results: bool, client: Client) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = client.get(f"/tasks/{task_id}/transcript", since=since, limit=200,
                                            tool_results=str(tool_results).lower())
    return page


@app.command(rich_help_panel=TASKS)
def logs(
    task_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following live events.")] = False,
    tool_results: Annotated[bool, typer.Option(help="Show tool results.")] = True,
    json_mode: JsonOpt = False,
) -> None:
    """The task's transcript; with -f, then its live progress until it ends."""
    entries: list[dict[str, Any]] = []
    since = 0
    while True:
        page: list[dict[str, Any]] = call(json_mode, partial(_transcript_page, task_id, since, tool_results))
        entries.extend(page)
        if not page:
            break
        since = page[-1]["index"] + 1
    for entry in entries:
        if json_mode:
            print(json.dumps({"kind": "transcript", **entry}))
        else:
            console.print(render.transcript_line(entry))
    if not follow:
        return
    task = call(json_mode, lambda c: c.get(f"/tasks/{task_id}"))
    if task["status"] in ("completed", "failed", "cancelled"):
        if not json_mode:
            console.print(render.status_text(task["status"]))
        return

    def follow_events(client: Client) -> None:
        for event in client.events(task=task_id):
            if json_mode:
                print(json.dumps({"kind": "event", **event}), flush=True)
            else:
                line = render.event_line(event)
                if line is not None:
                    console.print(line)
            if event["type"] in ("task.completed", "task.failed", "task.cancelled"):
                return

    try:
        call(json_mode, follow_events)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command(rich_help_panel=TASKS)
def cancel(
    task_id: Annotated[str | None, typer.Argument(help="The task to cancel.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Cancel every queued or running task.")] = False,
    parent: Annotated[str | None, typer.Option(help="With --all: only descendants of this task.")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Cancel a task (or --all)."""
    if all_ == (task_id is not None):
        fail("give a task id, or --all", "invalid_input", json_mode, exit_code=2)
    if all_:
        tasks = call(json_mode, lambda c: c.post("/tasks/cancel", {"all": True, "parent_id": parent}))
        emit(tasks) if json_mode else console.print(f"cancelled {len(tasks)} task(s)")
        return
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/cancel"))
    emit(task) if json_mode else console.print(f"{task['id']} {task['status']}")


@app.command(rich_help_panel=TASKS)
def resume(task_id: str, prompt: str, json_mode: JsonOpt = False) -> None:
    """Give a finished task a follow-up turn on its own session."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/resume", {"prompt": prompt}))
    emit(task) if json_mode else console.print(f"{task['id']} {task['status']} (turn {task['turn']})")


@app.command(rich_help_panel=TASKS)
def send(task_id: str, message: str, json_mode: JsonOpt = False) -> None:
    """Steer a running task: the message reaches the agent before its next model request."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/messages", {"message": message}))
    emit(task) if json_mode else console.print(f"sent to {task['id']} ({task['status']})")


@app.command(rich_help_panel=TASKS)
def fork(
    task_id: str,
    prompt: str,
    at: Annotated[int | None, typer.Option(help="Copy only the first N transcript messages.")] = None,
    model: Annotated[str | None, typer.Option(help="Run the fork on another model.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the new task.")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Start a new task on a copy of a task's session; prints the new id."""
    body = {k: v for k, v in {"prompt": prompt, "at": at, "model": model, "name": name}.items() if v is not None}
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/fork", body))
    emit(task) if json_mode else console.print(task["id"])


@app.command(rich_help_panel=TASKS)
def peek(task_id: str, json_mode: JsonOpt = False) -> None:
    """Ask a small model what a running task has done and has left, in a few sentences."""
    peeked = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/peek"))
    if json_mode:
        emit(peeked)
    else:
        console.print(Text.assemble((peeked["name"], "bold"), ": ", peeked["text"]))
