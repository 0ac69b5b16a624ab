"""`bgagents schedule add | ls | rm | pause | resume | run-now`: schedules over the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from .common import JsonOpt, call, console, emit, print_list
from .render import Cell, Column, Rows

app = typer.Typer(name="schedule", help="Cron and one-shot schedules that start tasks or wake a conversation.",
                  no_args_is_help=True)


def _when(ts: float | None, zone: str) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC if zone == "UTC" else ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def _state(s: dict[str, Any]) -> str:
    return "paused" if s["paused"] else "done" if s["done"] else "active"


def _last(s: dict[str, Any]) -> str:
    run = s.get("last_run")
    if not run:
        return "-"
    what = (run.get("error") and f"error: {run['error']}") or run.get("task_id") or f"event {run.get('event')}"
    late = " (late)" if run.get("missed_by") else ""
    return f"{_when(run['fired_at'], s['timezone'])}{late} {what}"


def schedule_rows(schedules: list[dict[str, Any]], terminal: bool, wide: bool) -> tuple[list[Column], Rows]:
    """Names and next runs are never cut; the last run is shown on a wide terminal, piped (a column of its own
    for where each is defined, too) and in --json."""
    names = [s["name"] + ("" if s["source"] == "api" or not terminal else f" [{s['source']}]") for s in schedules]
    columns = [Column("NAME", {"no_wrap": True, "min_width": max(len(n) for n in names)}),
               Column("WHEN", {"no_wrap": True, "overflow": "ellipsis", "max_width": 16}),
               Column("NEXT", {"no_wrap": True, "min_width": 20}), Column("STATE", {"no_wrap": True, "min_width": 6}),
               Column("TARGET", {"no_wrap": True, "overflow": "ellipsis", "max_width": 24})]
    if wide or not terminal:
        columns.append(Column("LAST", {"overflow": "ellipsis", "max_width": 48}))
    if not terminal:
        columns.append(Column("SOURCE"))
    rows: Rows = []
    for name, s in zip(names, schedules, strict=True):
        target = (f"conversation {s['conversation']}" if s.get("conversation") else
                  f"task {s.get('model') or ''}".strip())
        row: list[Cell] = [name, s.get("cron") or "once", _when(s.get("next_run_at"), s["timezone"]), _state(s),
                           target]
        rows.append(row + ([_last(s)] if wide or not terminal else []) + ([] if terminal else [s["source"]]))
    return columns, rows


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A unique name, e.g. morning-inbox.")],
    prompt: Annotated[str, typer.Argument(help="The task's prompt (or the conversation event's text).")],
    cron: Annotated[str | None, typer.Option(help="Cron expression, e.g. '0 8 * * *'.")] = None,
    at: Annotated[str | None, typer.Option(help="One-shot time, ISO 8601, e.g. 2026-12-01T09:00.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone, e.g. Europe/Berlin.")] = None,
    conversation: Annotated[str | None, typer.Option(help="Wake this conversation instead of starting a task.")]
    = None,
    agent: Annotated[str | None, typer.Option(help="Agent profile of the task.")] = None,
    model: Annotated[str | None, typer.Option(help="Model of the task.")] = None,
    catch_up: Annotated[str | None, typer.Option(help="Missed cron runs: none, once or all.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Add it paused.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Add a schedule: --cron for a repeating one, --at for a one-shot."""
    body = {"name": name, "prompt": prompt, "cron": cron, "at": at, "timezone": tz, "conversation": conversation,
            "agent": agent, "model": model, "catch_up": catch_up, "paused": paused or None}
    made = call(json_mode, lambda c: c.post("/schedules", {k: v for k, v in body.items() if v is not None}))
    if json_mode:
        emit(made)
    else:
        console.print(f"{made['name']}: next run {_when(made.get('next_run_at'), made['timezone'])}")


@app.command("ls")
def list_schedules(json_mode: JsonOpt = False) -> None:
    """List schedules with their next and last run."""
    print_list(json_mode, call(json_mode, lambda c: c.get("/schedules")),
               "no schedules (add one with 'bgagents schedule add', or in $BGAGENTS_HOME/schedules.toml)",
               lambda found: schedule_rows(found, console.is_terminal, wide=console.width >= 120))


def _act(method: str, path: str, json_mode: bool) -> dict[str, Any]:
    result: dict[str, Any] = call(json_mode, lambda c: c.request(method, path, json={} if method == "POST" else None))
    if json_mode:
        emit(result)
    return result


@app.command("rm")
def remove(name: str, json_mode: JsonOpt = False) -> None:
    """Remove a schedule."""
    _act("DELETE", f"/schedules/{name}", json_mode)
    if not json_mode:
        console.print(f"removed {name}")


@app.command("pause")
def pause(name: str, json_mode: JsonOpt = False) -> None:
    """Pause a schedule (its runs are skipped until resumed)."""
    _act("POST", f"/schedules/{name}/pause", json_mode)
    if not json_mode:
        console.print(f"paused {name}")


@app.command("resume")
def resume(name: str, json_mode: JsonOpt = False) -> None:
    """Resume a paused schedule (runs skipped meanwhile do not catch up)."""
    s = _act("POST", f"/schedules/{name}/resume", json_mode)
    if not json_mode:
        console.print(f"resumed {name}: next run {_when(s.get('next_run_at'), s['timezone'])}")


@app.command("run-now")
def run_now(name: str, json_mode: JsonOpt = False) -> None:
    """Run a schedule once now (also when paused)."""
    run = _act("POST", f"/schedules/{name}/run-now", json_mode)
    if not json_mode:
        console.print(f"started {run.get('task_id') or 'event ' + str(run.get('event'))}")
