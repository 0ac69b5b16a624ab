"""JSON the page needs beyond the public API: a page of the task tree (with what its waiting tasks wait for),
the approvals with their tasks' names, and where the event stream is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ...core.schema import Task
from ...errors import NotFound
from ...runtime import Runtime

# Behind RequireToken (auth.PROTECTED); the page's own, so not in the public OpenAPI document.
router = APIRouter(prefix="/dashboard/api", include_in_schema=False)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@router.get("/tasks")
async def task_page(
    request: Request,
    status: Annotated[str | None, Query(description="Comma-separated statuses")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the id, name, prompt, agent or model")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """A page of tasks, newest first. Unfiltered, the page holds top-level tasks and `children` their
    descendants (to nest under them); filtered, it is a flat list of every match."""
    rt = runtime(request)
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    query = (q or "").strip()
    flat = bool(statuses or query)
    tasks, total = await rt.find(statuses, query, top_level=not flat, offset=offset, limit=limit)
    children = [] if flat else await rt.descendants([t.id for t in tasks])
    # each row also shows what its whole tree of agents cost (the task and every descendant)
    tasks, children = (await rt.with_subtree(tasks)), (await rt.with_subtree(children) if children else [])
    return {"tasks": tasks, "children": children, "total": total, "offset": offset, "limit": limit,
            "nested": not flat, "waiting": await waiting_on(rt, [*tasks, *children])}


async def waiting_on(rt: Runtime, tasks: list[Task]) -> dict[str, list[dict[str, str]]]:
    """The pending approvals of the waiting tasks among `tasks`: `{task_id: [{id, tool}]}`, so a row says
    what it waits for."""
    waiting = {t.id for t in tasks if t.status == "waiting"}
    found: dict[str, list[dict[str, str]]] = {}
    if waiting:
        for approval in await rt.approvals("pending"):
            if approval.task_id in waiting:
                found.setdefault(approval.task_id, []).append({"id": approval.id, "tool": approval.tool})
    return found


@router.get("/approvals")
async def approvals(
    request: Request,
    status: Annotated[str, Query(description="pending, approved, denied, cancelled or all")] = "pending",
) -> dict[str, Any]:
    """The approvals, and `tasks`: `{task_id: {name, status, agent}}` of the tasks they belong to."""
    rt = runtime(request)
    found = await rt.approvals(None if status == "all" else status)
    tasks: dict[str, dict[str, str]] = {}
    for task_id in dict.fromkeys(a.task_id for a in found):
        try:
            task = await rt.get(task_id)
        except NotFound:  # removed by retention meanwhile
            continue
        tasks[task_id] = {"name": task.name, "status": task.status, "agent": task.agent}
    return {"approvals": found, "tasks": tasks}


@router.get("/state")
async def state(request: Request) -> dict[str, Any]:
    """Where to start following the event stream, and the pending approvals count."""
    rt = runtime(request)
    return {"last_event_seq": await rt.last_event_seq(), "approvals": len(await rt.approvals("pending")),
            "agents": sorted(rt.profiles()), "model": rt.settings.model}
