"""How tasks, transcripts and events look to a person in the terminal.

Whatever comes from elsewhere (agent text, prompts, tool arguments, names) is a `Text`, never markup, so
`[x]` or `[bold]` in it is shown as written. Tables are data first (`Column`s and rows of `Text`): drawn
on a terminal, tab-separated lines when piped, so no column is cut to 80 characters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {
    "queued": "yellow", "running": "cyan", "waiting": "magenta",
    "completed": "green", "failed": "red", "cancelled": "dim",
}


@dataclass(frozen=True)
class Column:
    header: str
    options: dict[str, Any] = field(default_factory=dict)  # for Table.add_column: widths, overflow, justify


Cell = Text | str
Rows = list[list[Cell]]


def drawn(columns: list[Column], rows: Rows, title: str | None = None) -> Table:
    """The rows as a table for a terminal: a header and spaces between columns, no frame (as `docker ps`)."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True, expand=False)
    for column in columns:
        table.add_column(column.header, **column.options)
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
    return table


def plain(columns: list[Column], rows: Rows) -> str:
    """The rows as tab-separated lines with a header line, every cell whole (for `cut`, `awk`, a file)."""
    def cell(value: Cell) -> str:
        text = value.plain if isinstance(value, Text) else value
        return " ".join(text.replace("\t", " ").splitlines())

    lines: Rows = [[c.header for c in columns], *rows]
    return "".join("\t".join(cell(v) for v in line) + "\n" for line in lines)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def elapsed(task: dict[str, Any], now: float | None = None) -> str:
    start = task.get("started_at") or task.get("created_at")
    if not start:
        return "-"
    end = task.get("finished_at") or now or time.time()
    seconds = max(0, int(end - start))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(task: dict[str, Any]) -> str:
    p = task.get("progress") or {}
    todos = p.get("todos") or {}
    parts = [f"{p.get('requests', 0)} req", f"{p.get('tool_calls', 0)} tools"]
    if todos.get("total"):
        parts.append(f"todos {todos.get('done', 0)}/{todos['total']}")
    if p.get("last_tool_args"):
        parts.append(" ".join(str(p["last_tool_args"]).split())[:50])
    return " · ".join(parts)


def tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def usage_cell(usage: dict[str, Any] | None) -> str:
    """Tokens and cost of a task tree (the task and its descendants), e.g. '12.3k $0.0123 ×3' (×3: three tasks)."""
    if not usage:
        return ""
    text = tokens(usage.get("input_tokens", 0) + usage.get("output_tokens", 0))
    if usage.get("cost_usd") is not None:
        text += f" ${usage['cost_usd']:.4f}"
    if usage.get("tasks", 1) > 1:
        text += f" ×{usage['tasks']}"
    return text


def task_rows(tasks: list[dict[str, Any]], *, show_model: bool = True,
              show_usage: bool = False) -> tuple[list[Column], Rows]:
    columns = [Column("ID", {"no_wrap": True, "min_width": 15}),
               Column("NAME", {"no_wrap": True, "min_width": 12, "max_width": 22, "overflow": "ellipsis"}),
               Column("STATUS", {"no_wrap": True, "min_width": 9})]
    if show_model:
        columns.append(Column("MODEL", {"no_wrap": True, "min_width": 6, "max_width": 22, "overflow": "ellipsis"}))
    columns.append(Column("ELAPSED", {"no_wrap": True, "justify": "right", "min_width": 7}))
    if show_usage:
        columns.append(Column("TOKENS", {"no_wrap": True, "min_width": 6}))  # the task and its descendants
    columns.append(Column("PROGRESS", {"no_wrap": True, "overflow": "ellipsis", "min_width": 10, "max_width": 60}))
    now = time.time()
    rows: Rows = []
    for t in tasks:
        model: list[Cell] = [t["model"]] if show_model else []
        usage: list[Cell] = [usage_cell(t.get("subtree"))] if show_usage else []
        rows.append([t["id"], t["name"], status_text(t["status"]), *model, elapsed(t, now), *usage,
                     progress_line(t)])
    return columns, rows


def tasks_table(tasks: list[dict[str, Any]], title: str | None = None, *, show_model: bool = True,
                show_usage: bool = False) -> Table:
    return drawn(*task_rows(tasks, show_model=show_model, show_usage=show_usage), title=title)


def task_fields(task: dict[str, Any], diff_stat: str | None = None) -> list[tuple[str, Text]]:
    """What `show` says of a task, each value as written (an isolated task's branch, its state and changes too)."""
    p = task.get("progress") or {}
    rows: list[tuple[str, Cell]] = [
        ("id", task["id"]), ("status", status_text(task["status"])), ("name", task["name"]),
        ("agent", task["agent"]), ("model", task["model"]), ("prompt", task["prompt"]), ("elapsed", elapsed(task)),
        ("progress", progress_line(task)),
        ("tokens", f"{p.get('input_tokens', 0)} in / {p.get('output_tokens', 0)} out"),
    ]
    if task.get("parent_id"):
        rows.append(("parent", task["parent_id"]))
    worktree = task.get("worktree")
    if worktree:
        rows += [("branch", worktree["branch"]), ("worktree", f"{worktree['state']} at {worktree['path']}")]
        rows.append(("changes", diff_stat.rstrip("\n") if diff_stat else "none"))
    if p.get("last_message"):
        rows.append(("last message", p["last_message"]))
    if p.get("note"):
        rows.append(("note", p["note"]))
    if task.get("end_reason"):
        rows.append(("end reason", task["end_reason"]))
    if task.get("error"):
        rows.append(("error", Text(task["error"], style="red")))
    result = task.get("result") or {}
    if result.get("text"):
        rows.append(("result", result["text"]))
    if result.get("data") is not None:
        rows.append(("data", json.dumps(result["data"], indent=2, ensure_ascii=False)))
    return [(key, value if isinstance(value, Text) else Text(value)) for key, value in rows]


def task_panel(task: dict[str, Any], diff_stat: str | None = None) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in task_fields(task, diff_stat):
        if key != "id":
            grid.add_row(key, value)
    recent = (task.get("progress") or {}).get("recent") or []
    body: Any = grid if not recent else Group(grid, Text("\nrecent: " + " | ".join(recent), style="dim"))
    return Panel(body, title=Text(task["id"]), expand=False)


def task_lines(task: dict[str, Any], diff_stat: str | None = None) -> str:
    """`show` when piped: one `key: value` per field, values whole and unwrapped."""
    return "".join(f"{key}: {value.plain}\n" for key, value in task_fields(task, diff_stat))


def transcript_line(entry: dict[str, Any]) -> Text:
    role = entry["role"]
    styles = {"user": "bold green", "assistant": "bold cyan", "tool_call": "yellow", "tool_result": "dim",
              "system": "magenta", "retry": "red"}
    label = role if not entry.get("tool_name") else f"{role} {entry['tool_name']}"
    content = entry["content"]
    if role == "tool_result" and len(content) > 800:
        content = content[:800] + f"… ({len(content)} chars)"
    text = Text(f"[{entry['index']}] ", style="dim")
    text.append(f"{label}: ", style=styles.get(role, ""))
    text.append(content)
    return text


def event_line(event: dict[str, Any]) -> Text | None:
    """One line for a live event, or None for events not worth a line."""
    data = event.get("data") or {}
    kind = event["type"]
    stamp = time.strftime("%H:%M:%S", time.localtime(event["time"]))
    text = Text(f"{stamp} ", style="dim")
    if kind == "task.tool_call":
        text.append(f"→ {data.get('args') or data.get('tool')}", style="yellow")
    elif kind == "task.tool_result":
        text.append(f"  {'ok' if data.get('ok') else 'error: ' + str(data.get('error'))}",
                    style="dim" if data.get("ok") else "red")
    elif kind == "task.progress" and data.get("kind") == "response":
        msg = (data.get("progress") or {}).get("last_message")
        if not msg:
            return None
        text.append(" ".join(msg.split()), style="cyan")
    elif kind in ("task.completed", "task.failed", "task.cancelled"):
        text.append(kind.split(".")[1], style=STATUS_STYLE.get(kind.split(".")[1], ""))
        if data.get("error"):
            text.append(f": {data['error']}", style="red")
    elif kind == "task.waiting":
        approval = data.get("approval") or {}
        text.append(f"waiting for approval {approval.get('id')}: {approval.get('tool')} — {approval.get('reason')}",
                    style="magenta")
    elif kind in ("task.approved", "task.denied"):
        text.append(f"{kind.split('.')[1]}: {data.get('tool')}", style="magenta")
    elif kind == "task.model_switched":
        text.append(f"switched model {data.get('from')} → {data.get('to')}: {data.get('error')}", style="yellow")
    elif kind in ("task.running", "task.queued", "task.resumed", "task.steered", "task.recovered",
                  "task.interrupted", "task.children_done"):
        text.append(kind.split(".")[1], style="bold")
        if data.get("message"):
            text.append(f": {data['message']}")
    else:
        return None
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def approval_call(approval: dict[str, Any]) -> str:
    """The call a person decides on, short: a command, a path, or the arguments."""
    args = approval.get("args") or {}
    return str(args.get("command") or args.get("path") or json.dumps(args, ensure_ascii=False))


def approval_rows(items: list[dict[str, Any]]) -> tuple[list[Column], Rows]:
    columns = [Column(name, {"overflow": "fold"}) for name in ("ID", "TASK", "TOOL", "CALL", "STATUS", "WHY")]
    return columns, [[a["id"], a["task_id"], a["tool"], approval_call(a)[:80], a["status"], a["reason"]]
                     for a in items]


def usage_rows(rows: list[dict[str, Any]], by: str) -> tuple[list[Column], Rows]:
    columns = [Column(name, {"no_wrap": True, "justify": "left" if name == by.upper() else "right"})
               for name in (by.upper(), "TASKS", "REQUESTS", "TOOL CALLS", "TOKENS IN", "TOKENS OUT", "COST")]
    total: dict[str, Any] = {"tasks": 0, "requests": 0, "tool_calls": 0, "input_tokens": 0, "output_tokens": 0,
                             "cost_usd": None}
    out: Rows = []
    for row in [*rows, None]:
        if row is None:
            if len(rows) < 2:
                break
            row, label = total, "total"
        else:
            label = row["key"]
            for key in ("tasks", "requests", "tool_calls", "input_tokens", "output_tokens"):
                total[key] += row[key]
            if row["cost_usd"] is not None:
                total["cost_usd"] = (total["cost_usd"] or 0.0) + row["cost_usd"]
        cost = "unknown" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
        out.append([label, str(row["tasks"]), str(row["requests"]), str(row["tool_calls"]),
                    tokens(row["input_tokens"]), tokens(row["output_tokens"]), cost])
    return columns, out
