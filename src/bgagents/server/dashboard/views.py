"""JSON the page needs beyond the public API: a page of the task tree, and where the event stream is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

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
            "nested": not flat}


@router.get("/state")
async def state(request: Request) -> dict[str, Any]:
    """Where to start following the event stream, and the pending approvals count."""
    rt = runtime(request)
    return {"last_event_seq": await rt.last_event_seq(), "approvals": len(await rt.approvals("pending")),
            "agents": sorted(rt.profiles()), "model": rt.settings.model}
