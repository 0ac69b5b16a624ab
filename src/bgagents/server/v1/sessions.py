"""`/v1/sessions`: create (with its initial events), retrieve, update, list, archive, delete. A session is a
bgagents task and the chain of its turns (see bgagents.managed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from ...managed import tables
from ...managed.events import create_session
from .common import Archived, Gt, Gte, Limit, Lt, Lte, Order, PageToken, managed, page, stamp

router = APIRouter(prefix="/sessions", tags=["managed agents"])
Json = Annotated[dict[str, Any], Body()]
Statuses = Annotated[list[str] | None, Query(alias="statuses[]")]


@router.post("")
async def create(body: Json, request: Request) -> dict[str, Any]:
    return await create_session(managed(request), body)


@router.get("")
async def list_sessions(request: Request, limit: Limit = None,
                        page_token: Annotated[PageToken, Query(alias="page")] = None,
                        include_archived: Archived = False, order: Order = None, agent_id: str | None = None,
                        agent_version: int | None = None, statuses: Statuses = None, gt: Gt = None, gte: Gte = None,
                        lt: Lt = None, lte: Lte = None) -> dict[str, Any]:
    created = tables.sessions.c.created_at
    bounds = [created > stamp(gt) if gt else None, created >= stamp(gte) if gte else None,
              created < stamp(lt) if lt else None, created <= stamp(lte) if lte else None]
    data, more = await managed(request).sessions(
        page=page_token, limit=limit, descending=order != "asc", archived=include_archived, agent_id=agent_id,
        agent_version=agent_version, statuses=statuses or [], created=[b for b in bounds if b is not None])
    return page(data, more)


@router.get("/{session_id}")
async def retrieve(session_id: str, request: Request) -> dict[str, Any]:
    m = managed(request)
    return await m.render_session(await m.session_row(session_id))


@router.post("/{session_id}")
async def update(session_id: str, body: Json, request: Request) -> dict[str, Any]:
    return await managed(request).update_session(session_id, body)


@router.post("/{session_id}/archive")
async def archive(session_id: str, request: Request) -> dict[str, Any]:
    return await managed(request).archive_session(session_id)


@router.delete("/{session_id}")
async def delete(session_id: str, request: Request) -> dict[str, Any]:
    return await managed(request).delete_session(session_id)
