"""`bgagents webhooks add | ls | rm | deliveries | secret`: webhook subscriptions over the HTTP API."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from .app import MORE, app
from .common import JsonOpt, call, console, emit, print_list
from .render import Cell, Column

webhooks_app = typer.Typer(help="Webhooks: a signed POST when tasks end (Standard Webhooks).", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks", rich_help_panel=MORE)


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
    columns = [Column("ID", {"no_wrap": True}), Column("URL", {"overflow": "fold"}), Column("EVENTS"),
               Column("SOURCE")]
    print_list(json_mode, call(json_mode, lambda c: c.get("/webhooks")),
               "no webhooks (add one with 'bgagents webhooks add URL')",
               lambda subs: (columns, [[s["id"], s["url"], ", ".join(s["events"]),
                                        s["source"] + (f" (task {s['task_id']})" if s.get("task_id") else "")]
                                       for s in subs]))


@webhooks_app.command("rm")
def webhooks_rm(webhook_id: str, json_mode: JsonOpt = False) -> None:
    """Remove a subscription (its pending deliveries are dropped)."""
    gone = call(json_mode, lambda c: c.request("DELETE", f"/webhooks/{webhook_id}"))
    emit(gone) if json_mode else console.print(f"removed {webhook_id}")


def _try(attempt: dict[str, Any]) -> str:
    return f"HTTP {attempt['status_code']}" if attempt["status_code"] else f"error: {attempt['error']}"


def delivery_row(d: dict[str, Any]) -> list[Cell]:
    """A delivery: each try's HTTP status (or why no answer came), and when a pending one is tried next."""
    tries = "; ".join(_try(t) for t in d["log"]) or "not tried yet"
    if d["status"] == "pending":
        tries += time.strftime(" (next try %H:%M:%S)", time.localtime(d["next_at"]))
    return [d["id"], d["type"], d["status"], tries]


@webhooks_app.command("deliveries")
def webhooks_deliveries(webhook_id: str, limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
                        json_mode: JsonOpt = False) -> None:
    """The newest deliveries of a subscription, with the HTTP status of every try."""
    columns = [Column("ID", {"no_wrap": True}), Column("EVENT", {"no_wrap": True}), Column("STATUS", {"no_wrap": True}),
               Column("TRIES (HTTP STATUS)", {"overflow": "fold"})]
    print_list(json_mode, call(json_mode, lambda c: c.get(f"/webhooks/{webhook_id}/deliveries", limit=limit)),
               "no deliveries yet", lambda rows: (columns, [delivery_row(d) for d in rows]))


@webhooks_app.command("secret")
def webhooks_secret(json_mode: JsonOpt = False) -> None:
    """The secret that signs per-launch webhooks (`webhook` on POST /tasks)."""
    found = call(json_mode, lambda c: c.get("/webhooks/launch-secret"))
    emit(found) if json_mode else print(found["secret"])
