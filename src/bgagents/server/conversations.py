"""Routes for conversations (SPEC 4): events in, responses out, sessions, history.

A conversation id is any slug; a conversation is created by its first event. `default` is the CLI's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from ..conversation.orchestrator import Conversations, jsonl
from ..conversation.schema import EventRecord, Peek, Response, Session
from .bodies import MAX_INT, BackgroundAgentBody, ButtonBody, ChatMessageBody
from .openapi import errors
from .stopping import Stopping

router = APIRouter(prefix="/conversations/{cid}", tags=["conversations"])


def conversations(request: Request) -> Conversations:
    convs: Conversations = request.app.state.runtime.conversations
    return convs


@router.post("/messages", status_code=202)
async def message(cid: str, body: ChatMessageBody, request: Request) -> EventRecord:
    """Queues a message from the person; its answer arrives on /responses and the event stream."""
    return await conversations(request).message(cid, body.text, body.files)


@router.post("/buttons", status_code=202)
async def button(cid: str, body: ButtonBody, request: Request) -> EventRecord:
    return await conversations(request).button(cid, body.label)


@router.post("/background-agents", status_code=202)
async def background_agent(cid: str, body: BackgroundAgentBody, request: Request) -> EventRecord:
    """Asks the main agent to run this prompt as a background agent (the CLI's `/bg`)."""
    return await conversations(request).background_command(cid, body.prompt, body.name)


@router.get("/responses", responses=errors(503))
async def responses(
    cid: str,
    request: Request,
    since: Annotated[int, Query(ge=0, le=MAX_INT, description="Only responses after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, le=300, description="Seconds to wait for a first new response")] = 0,
) -> list[Response]:
    """The delivered responses, oldest first (silent ones are only in the history)."""
    convs = conversations(request)
    if wait:
        stopping: Stopping = request.app.state.stopping
        return (await stopping.first(convs.wait_for_response(cid, since, wait)))[:limit]
    return await convs.responses(cid, since, limit)


@router.get("/sessions")
async def sessions(cid: str, request: Request) -> list[Session]:
    return await conversations(request).sessions(cid)


@router.get("/sessions/{sid}", responses=errors(404))
async def session(cid: str, sid: str, request: Request) -> Session:
    """One running session, by task id or name: the person's own prompt, model, elapsed, status, progress."""
    return await conversations(request).session(cid, sid)


@router.post("/sessions/{sid}/peek", responses=errors(404, 409))
async def peek(cid: str, sid: str, request: Request) -> Peek:
    return await conversations(request).peek(cid, sid)


@router.post("/sessions/{sid}/kill", responses=errors(404))
async def kill(cid: str, sid: str, request: Request) -> Session:
    """Stops the session; its result is dropped, even if it arrives later."""
    return await conversations(request).kill(cid, sid)


@router.post("/clear")
async def clear(cid: str, request: Request) -> dict[str, bool]:
    await conversations(request).clear(cid)
    return {"cleared": True}


@router.post("/background", responses=errors(409))
async def background(cid: str, request: Request) -> Session:
    """Pushes the running main turn into the background; it reports back when done."""
    return await conversations(request).background(cid)


class JSONLines(PlainTextResponse):
    media_type = "application/x-ndjson"


@router.get("/history", response_class=JSONLines)
async def history(cid: str, request: Request) -> JSONLines:
    """Every event in and response out, as JSON Lines."""
    lines = await conversations(request).history(cid)
    return JSONLines(jsonl(lines))
