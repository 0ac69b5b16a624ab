"""`/v1/sessions/{id}/events`: send user events, list the session's events in pages, and stream them (SSE).

The stream carries the events stored from the moment it opens (open it, then send); each SSE `id:` is
the event's cursor, so a client that reconnects with `Last-Event-ID` gets every event after it, once.
A client that only has event ids lists the events and skips those it has seen."""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ...managed import events as session_events
from ..stopping import Stopping
from .common import Gt, Gte, Limit, Lt, Lte, Order, PageToken, managed, page

router = APIRouter(prefix="/sessions/{session_id}", tags=["managed agents"])
Types = Annotated[list[str] | None, Query(alias="types[]")]


@router.post("/events")
async def send(session_id: str, request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    return {"data": await session_events.send(managed(request), session_id, body.get("events"))}


@router.get("/events")
async def list_events(session_id: str, request: Request, limit: Limit = None,
                      page_token: Annotated[PageToken, Query(alias="page")] = None, order: Order = None,
                      types: Types = None, gt: Gt = None, gte: Gte = None, lt: Lt = None,
                      lte: Lte = None) -> dict[str, Any]:
    def keep(event: dict[str, Any]) -> bool:
        at = datetime.fromisoformat(str(event["processed_at"]).replace("Z", "+00:00"))
        return ((not types or event["type"] in types) and (gt is None or at > gt) and (gte is None or at >= gte)
                and (lt is None or at < lt) and (lte is None or at <= lte))

    data, more = await session_events.list_events(managed(request), session_id, page=page_token, limit=limit,
                                                  descending=order == "desc", keep=keep)
    return page(data, more)


async def _start(session_id: str, request: Request,
                 last_event_id: Annotated[str | None, Header()] = None) -> tuple[Any, int, Any]:
    """Checked before the stream opens (a bad request is a JSON error), and where it starts: fixed now."""
    return await session_events.stream_start(managed(request), session_id, last_event_id)


@router.get("/events/stream", response_class=EventSourceResponse)
async def stream(request: Request, start: Annotated[tuple[Any, int, Any], Depends(_start)]) -> AsyncIterable[
        ServerSentEvent]:
    row, since, after = start
    stopping: Stopping = request.app.state.stopping
    async for cursor, event in stopping.until(session_events.follow(managed(request), row, since, after)):
        if await request.is_disconnected():
            break
        yield ServerSentEvent(data=event, event=event["type"], id=cursor)
    if stopping.is_set():  # the SDK raises it: the client reconnects once the server is back
        yield ServerSentEvent(data=STOPPING, event="error")


STOPPING = {"type": "error", "error": {"type": "overloaded_error", "message": (
    "the bgagents server is stopping: once it is back, open the stream again and list the events after the "
    "last one seen")}}
