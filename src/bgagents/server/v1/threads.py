"""`/v1/sessions/{id}/threads`: a single-agent session has no thread of its own to list (callable agents,
whose threads would be child tasks, are not served yet)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...errors import NotFound
from .common import managed, page

router = APIRouter(prefix="/sessions/{session_id}/threads", tags=["managed agents"])


@router.get("")
async def list_threads(session_id: str, request: Request) -> dict[str, Any]:
    await managed(request).session_row(session_id)
    return page([], None)


@router.api_route("/{thread_id}{rest:path}", methods=["GET", "POST"])
async def thread(session_id: str, thread_id: str, request: Request) -> dict[str, Any]:
    await managed(request).session_row(session_id)
    raise NotFound(f"no thread '{thread_id}' in session '{session_id}': bgagents serves single-agent sessions "
                   "(multiagent threads are not served yet)")
