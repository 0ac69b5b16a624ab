"""`bgagents`: launch and watch background agents from the terminal. Every command takes `--json`."""

from __future__ import annotations

import asyncio
import json
import sys
from functools import partial
from typing import Annotated, Any

import typer
from rich.text import Text

from ..settings import Settings
from . import render, schedules
from .client import Client
from .common import JsonOpt, call, console, emit, err, fail

app = typer.Typer(name="bgagents", help="Durable background LLM agents.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8321).")] = None,
    workers: Annotated[int, typer.Option(help="Processes running tasks, this one included (PostgreSQL only).")] = 1,
    parent_fd: Annotated[int | None, typer.Option(hidden=True, help="Set by `bgagents demo`: stop when this pipe "
                                                                    "from the demo process closes.")] = None,
) -> None:
    """Run the API and the task workers, until SIGTERM or Ctrl-C."""
    from .serve import ServeError, run_server

    try:
        settings = Settings()
    except Exception as exc:
        fail(f"bad settings: {exc}", "bad_settings")
    try:
        run_server(settings, host or settings.server.host, port or settings.server.port, workers, parent_fd)
    except ServeError as exc:
        fail(str(exc), "cannot_serve")


@app.command()
def worker(
    parent_fd: Annotated[int | None, typer.Option(hidden=True, help="Set by `serve --workers`: stop when this "
                                                                    "pipe from the serve process closes.")] = None,
) -> None:
    """Run tasks without the API (beside a server on the same PostgreSQL database), until SIGTERM or Ctrl-C."""
    from .serve import ServeError, run_worker

    try:
        settings = Settings()
    except Exception as exc:
        fail(f"bad settings: {exc}", "bad_settings")
    try:
        run_worker(settings, parent_fd)
    except ServeError as exc:
        fail(str(exc), "cannot_serve")


@app.command()
def launch(
    prompt: Annotated[str, typer.Argument(help="What the agent should do.")],
    name: Annotated[str | None, typer.Option(help="A short name (default: from the prompt).")] = None,
    agent: Annotated[str | None, typer.Option(help="Agent profile (default: general).")] = None,
    model: Annotated[str | None, typer.Option(help="Model, e.g. openai:gpt-4o, demo.")] = None,
    fallback: Annotated[list[str] | None, typer.Option(help="Fallback model (repeatable).")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first within its queue.")] = 0,
    parent: Annotated[str | None, typer.Option(help="Parent task or session id.")] = None,
    limit: Annotated[list[str] | None, typer.Option(help="Budget KEY=VALUE (repeatable).")] = None,
    isolation: Annotated[str | None, typer.Option(help="worktree: work in its own git worktree of the "
                                                       "workspace.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Launch a background agent; prints its id."""
    body = {"prompt": prompt, "name": name, "agent": agent, "model": model, "priority": priority,
            "parent_id": parent, "fallback_models": fallback or None, "limits": parse_limits(limit or []) or None,
            "isolation": isolation}
    task = call(json_mode, lambda c: c.post("/tasks", {k: v for k, v in body.items() if v is not None}))
    if wait:
        out = call(json_mode, lambda c: c.get(f"/tasks/{task['id']}/output", wait="true", timeout=3600))
        if json_mode:
            emit(call(json_mode, lambda c: c.get(f"/tasks/{task['id']}")))
            return
        _print_output(out)
        return
    if json_mode:
        emit(task)
    else:
        console.print(task["id"])


@app.command("ls")
def list_tasks(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include finished tasks.")] = False,
    status: Annotated[str | None, typer.Option(help="Only these statuses (comma-separated).")] = None,
    parent: Annotated[str | None, typer.Option(help="Only children of this task.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    json_mode: JsonOpt = False,
) -> None:
    """List tasks (active ones, unless --all or --status)."""
    wanted = status or (None if all_ else "queued,running,waiting")
    tasks = call(json_mode, lambda c: c.get("/tasks", status=wanted, parent=parent, limit=limit))
    if json_mode:
        emit(tasks)
    elif not tasks:
        console.print("no tasks" + ("" if all_ or status else " running (use --all to see finished ones)"))
    else:
        console.print(render.tasks_table(tasks, show_usage=True))


@app.command()
def show(task_id: str, json_mode: JsonOpt = False) -> None:
    """Show one task: status, progress, result."""
    task = call(json_mode, lambda c: c.get(f"/tasks/{task_id}"))
    if json_mode:
        emit(task)
    else:
        console.print(render.task_panel(task))


def _print_output(out: dict[str, Any]) -> None:
    if out["finished"]:
        result = out.get("result") or {}
        if out["status"] == "completed":
            if result.get("data") is not None:
                console.print_json(json.dumps(result["data"]))
            console.print(result.get("text") or "")
        else:
            err.print(f"[red]{out['status']}[/red]: {out.get('error') or ''} ({out.get('end_reason')})",
                      markup=True)
            raise typer.Exit(1)
    else:
        note = " (timed out waiting)" if out.get("timed_out") else ""
        console.print(f"{out['status']}{note}: {render.progress_line(out)}")
        raise typer.Exit(2 if out.get("timed_out") else 0)


@app.command()
def output(
    task_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the task ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 60.0,
    json_mode: JsonOpt = False,
) -> None:
    """The task's result, or its status and progress while it runs."""
    params: dict[str, Any] = {"wait": "true" if wait else None, "timeout": timeout}
    out = call(json_mode, lambda c: c.get(f"/tasks/{task_id}/output", **params))
    if json_mode:
        emit(out)
    else:
        _print_output(out)


def _transcript_page(task_id: str, since: int, tool_results: bool, client: Client) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = client.get(f"/tasks/{task_id}/transcript", since=since, limit=200,
                                            tool_results=str(tool_results).lower())
    return page


@app.command()
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


@app.command()
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
        if json_mode:
            emit(tasks)
        else:
            console.print(f"cancelled {len(tasks)} task(s)")
        return
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/cancel"))
    if json_mode:
        emit(task)
    else:
        console.print(f"{task['id']} {task['status']}")


@app.command()
def resume(task_id: str, prompt: str, json_mode: JsonOpt = False) -> None:
    """Give a finished task a follow-up turn on its own session."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/resume", {"prompt": prompt}))
    emit(task) if json_mode else console.print(f"{task['id']} {task['status']} (turn {task['turn']})")


@app.command()
def send(task_id: str, message: str, json_mode: JsonOpt = False) -> None:
    """Steer a running task: the message reaches the agent before its next model request."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/messages", {"message": message}))
    emit(task) if json_mode else console.print(f"sent to {task['id']} ({task['status']})")


@app.command()
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


@app.command()
def approvals(
    all_: Annotated[bool, typer.Option("--all", help="Include decided ones.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Tool calls waiting for your decision."""
    items = call(json_mode, lambda c: c.get("/approvals", status="all" if all_ else "pending"))
    if json_mode:
        emit(items)
    elif not items:
        console.print("no approvals waiting" if not all_ else "no approvals")
    else:
        console.print(render.approvals_table(items))


def _decide(approval_id: str, decision: str, reason: str | None, json_mode: bool) -> None:
    item = call(json_mode, lambda c: c.post(f"/approvals/{approval_id}", {"decision": decision, "reason": reason}))
    emit(item) if json_mode else console.print(f"{item['id']} {item['status']} ({item['tool']} of {item['task_id']})")


@app.command()
def approve(approval_id: str, reason: Annotated[str | None, typer.Option(help="Why.")] = None,
            json_mode: JsonOpt = False) -> None:
    """Approve a waiting tool call; the task goes on at once."""
    _decide(approval_id, "approve", reason, json_mode)


@app.command()
def deny(approval_id: str, reason: Annotated[str | None, typer.Option(help="Why (the agent sees it).")] = None,
         json_mode: JsonOpt = False) -> None:
    """Deny a waiting tool call; the agent is told and goes on without it."""
    _decide(approval_id, "deny", reason, json_mode)


@app.command()
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
                console.print(chat_mod.format_response(response), markup=False)

        found, busy = call(json_mode, lambda c: chat_mod.one_message(c, conversation, message, wait, show))
        if json_mode:
            emit(found)
        elif not found:
            fail(f"no answer within {wait:g} s (it will still arrive: bgagents chat -c {conversation} --history 1)",
                 "timeout")
        elif busy:
            err.print(f"(background agents are still at work after {wait:g} s; their results arrive in "
                      f"bgagents chat -c {conversation})", markup=False)
        return
    if json_mode:
        fail("--json needs --message (the interactive chat is for people)", "invalid_input", json_mode)
    client = call(False, lambda c: c)
    call(False, lambda c: c.get(f"/conversations/{conversation}/responses", limit=1))  # a clear error first
    poller = client.with_timeout(chat_mod.POLL_WAIT + 15)
    asyncio.run(chat_mod.interactive(chat_mod.Chat(client, poller, conversation), history))


@app.command()
def peek(task_id: str, json_mode: JsonOpt = False) -> None:
    """Ask a small model what a running task has done and has left, in a few sentences."""
    peeked = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/peek"))
    if json_mode:
        emit(peeked)
    else:
        console.print(Text.assemble((peeked["name"], "bold"), ": ", peeked["text"]), soft_wrap=True)


@app.command("open")
def open_dashboard(
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the address.")] = False,
) -> None:
    """Open the dashboard in a browser, logged in (prints its address too)."""
    import webbrowser

    from .client import dashboard_url

    client = call(False, lambda c: c)
    call(False, lambda c: c.get("/stats"))  # a clear error when no server answers or the token is wrong
    if not client.token:
        fail("no token: set BGAGENTS_TOKEN or start the server once to create $BGAGENTS_HOME/token", "no_token")
    url = dashboard_url(client.url, client.token)
    console.print(url, soft_wrap=True, highlight=False)
    if not no_browser:
        webbrowser.open(url)


@app.command()
def diff(task_id: str, stat: Annotated[bool, typer.Option("--stat", help="Only the summary.")] = False,
         json_mode: JsonOpt = False) -> None:
    """An isolated task's changes against where its branch started."""
    changes = call(json_mode, lambda c: c.get(f"/tasks/{task_id}/diff"))
    if json_mode:
        emit(changes)
        return
    console.print(f"[bold]{changes['branch']}[/bold] ({changes['state']}, from {changes['base'][:10]})",
                  markup=True)
    console.print(Text(changes["stat"] or "no changes"))
    if not stat and changes["patch"]:
        console.print(Text(changes["patch"]))


@app.command()
def merge(task_id: str, json_mode: JsonOpt = False) -> None:
    """Merge an ended isolated task's branch into the workspace (a conflict names the files; nothing merged)."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/merge"))
    if json_mode:
        emit(task)
    else:
        console.print(f"merged {task['worktree']['branch']} into the workspace; its worktree is removed")


@app.command()
def discard(task_id: str, json_mode: JsonOpt = False) -> None:
    """Throw an isolated task's changes away (its worktree and branch)."""
    task = call(json_mode, lambda c: c.post(f"/tasks/{task_id}/discard"))
    if json_mode:
        emit(task)
    else:
        console.print(f"discarded {task['worktree']['branch']}")


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


@app.command()
def usage(
    by: Annotated[str, typer.Option(help="Group by model, agent or day.")] = "model",
    since: Annotated[str | None, typer.Option(help="Only tasks created since: 7d, 12h, a date, Unix seconds.")]
    = None,
    json_mode: JsonOpt = False,
) -> None:
    """Tokens, requests, tool calls and cost, per model, agent or day."""
    start = parse_since(since)
    rows = call(json_mode, lambda c: c.get("/usage", by=by, since=start))
    if json_mode:
        emit(rows)
        return
    if not rows:
        console.print("no tasks" + (" in that time" if since else ""))
        return
    table = render.usage_table(rows, by)
    console.print(table)


webhooks_app = typer.Typer(help="Webhooks: a signed POST when tasks end (Standard Webhooks).", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    url: str,
    event: Annotated[list[str] | None, typer.Option(help="An event type (repeatable; default all): task.completed, "
                                                         "task.failed, task.cancelled, task.waiting, "
                                                         "conversation.response.")] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    json_mode: JsonOpt = False,
) -> None:
    """Subscribe a URL; prints its secret once (the receiver verifies signatures with it)."""
    made = call(json_mode, lambda c: c.post("/webhooks", {"url": url, "events": event or None,
                                                          "description": description}))
    if json_mode:
        emit(made)
        return
    console.print(f"webhook {made['id']} → {made['url']} ({', '.join(made['events'])})")
    console.print("secret (shown once; keep it with the receiver):")
    print(made["secret"])


@webhooks_app.command("ls")
def webhooks_ls(json_mode: JsonOpt = False) -> None:
    """The subscriptions."""
    subs = call(json_mode, lambda c: c.get("/webhooks"))
    if json_mode:
        emit(subs)
        return
    if not subs:
        console.print("no webhooks (add one with 'bgagents webhooks add URL')")
    for sub in subs:
        scope = f" task {sub['task_id']}" if sub.get("task_id") else ""
        console.print(f"{sub['id']}  {sub['url']}  {', '.join(sub['events'])}  [{sub['source']}{scope}]",
                      markup=False)


@webhooks_app.command("rm")
def webhooks_rm(webhook_id: str, json_mode: JsonOpt = False) -> None:
    """Remove a subscription (its pending deliveries are dropped)."""
    gone = call(json_mode, lambda c: c.request("DELETE", f"/webhooks/{webhook_id}"))
    emit(gone) if json_mode else console.print(f"removed {webhook_id}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(webhook_id: str, limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
                        json_mode: JsonOpt = False) -> None:
    """The newest deliveries of a subscription, with every try."""
    rows = call(json_mode, lambda c: c.get(f"/webhooks/{webhook_id}/deliveries", limit=limit))
    if json_mode:
        emit(rows)
        return
    if not rows:
        console.print("no deliveries yet")
    for d in rows:
        tries = ", ".join(str(t["status_code"] or t["error"]) for t in d["log"]) or "not tried yet"
        console.print(f"{d['id']}  {d['type']}  {d['status']}  tries: {tries}", markup=False)


@webhooks_app.command("secret")
def webhooks_secret(json_mode: JsonOpt = False) -> None:
    """The secret that signs per-launch webhooks (`webhook` on POST /tasks)."""
    found = call(json_mode, lambda c: c.get("/webhooks/launch-secret"))
    emit(found) if json_mode else print(found["secret"])


@app.command()
def mcp(
    mode: Annotated[str, typer.Option(help="auto: the server at BGAGENTS_URL if one answers, else a runtime in "
                                           "this process; server: only the server; local: only this process.")]
    = "auto",
) -> None:
    """Serve the background-agent tools over MCP on stdio (for Claude Code, Cursor, OpenCode, …)."""
    from ..errors import BgAgentsError
    from ..mcp.stdio import serve_stdio

    if mode not in ("auto", "server", "local"):
        raise typer.BadParameter(f"'{mode}' is not one of auto, server, local", param_hint="--mode")
    try:
        settings = Settings()
    except Exception as exc:
        fail(f"bad settings: {exc}", "bad_settings")
    try:
        asyncio.run(serve_stdio(settings, mode))  # type: ignore[arg-type]
    except BgAgentsError as exc:
        fail(exc.message, exc.code)
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the server up after the agents finish.")] = False,
    agents: Annotated[int, typer.Option(help="How many demo agents to launch.", min=1, max=20)] = 3,
    port: Annotated[int | None, typer.Option(help="Port for the demo server (default: a free one).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Try bgagents without a key: a server on a temporary home, a few demo agents, live progress."""
    from .demo import run_demo

    sys.exit(run_demo(keep=keep, agents=agents, port=port, json_mode=json_mode))


app.add_typer(schedules.app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
