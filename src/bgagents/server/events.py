"""Server-Sent Events: stored events after `since` (or `Last-Event-ID`), then live ones, until the server stops
(a last `server.stopping` event, without an id, then the stream ends)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ..errors import InvalidInput
from ..runtime import Runtime
from .bodies import MAX_INT
from .openapi import errors
from .stopping import Stopping

router = APIRouter(tags=["events"])


async def start_after(
    request: Request,
    task: str | None = None,
    since: Annotated[int, Query(ge=0, le=MAX_INT, description="Replay events after this sequence number")] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> int:
    """Checks the request before the stream opens, so bad input is a JSON error, not a broken stream."""
    start = since
    if last_event_id:
        if not re.fullmatch(r"[0-9]{1,10}", last_event_id.strip()) or int(last_event_id) > MAX_INT:
            raise InvalidInput("Last-Event-ID must be an event sequence number")
        start = max(start, int(last_event_id))
    if task is not None:
        rt: Runtime = request.app.state.runtime
        await rt.get(task)
    return start


@router.get("/events", response_class=EventSourceResponse, responses=errors(404))
async def events(
    request: Request,
    start: Annotated[int, Depends(start_after)],
    task: str | None = None,
    conversation: str | None = None,
) -> AsyncIterable[ServerSentEvent]:
    rt: Runtime = request.app.state.runtime
    stopping: Stopping = request.app.state.stopping
    async for event in stopping.until(rt.events(since=start, task_id=task, conversation_id=conversation)):
        if await request.is_disconnected():
            return
        yield ServerSentEvent(data=event.model_dump(mode="json"), event=event.type, id=str(event.seq))
    if stopping.is_set():
        yield ServerSentEvent(data=STOPPING, event="server.stopping")


STOPPING = {"type": "server.stopping", "message": "the bgagents server is stopping"}
