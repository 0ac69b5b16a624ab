"""`/v1/agents`: create, retrieve (a version), update (a new version), list, versions, archive."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from .common import Archived, Gte, Limit, Lte, PageToken, managed, page, stamp

router = APIRouter(prefix="/agents", tags=["managed agents"])
Json = Annotated[dict[str, Any], Body()]


@router.post("")
async def create(body: Json, request: Request) -> dict[str, Any]:
    return await managed(request).create_agent(body)


@router.get("")
async def list_agents(request: Request, limit: Limit = None,
                      page_token: Annotated[PageToken, Query(alias="page")] = None,
                      include_archived: Archived = False, gte: Gte = None, lte: Lte = None) -> dict[str, Any]:
    data, more = await managed(request).agents(page=page_token, limit=limit, archived=include_archived,
                                               since=stamp(gte), until=stamp(lte))
    return page(data, more)


@router.get("/{agent_id}")
async def retrieve(agent_id: str, request: Request, version: Annotated[int | None, Query()] = None) -> dict[str, Any]:
    return await managed(request).agent(agent_id, version)


@router.post("/{agent_id}")
async def update(agent_id: str, body: Json, request: Request) -> dict[str, Any]:
    return await managed(request).update_agent(agent_id, body)


@router.get("/{agent_id}/versions")
async def versions(agent_id: str, request: Request, limit: Limit = None,
                   page_token: Annotated[PageToken, Query(alias="page")] = None) -> dict[str, Any]:
    data, more = await managed(request).agent_versions(agent_id, page=page_token, limit=limit)
    return page(data, more)


@router.post("/{agent_id}/archive")
async def archive(agent_id: str, request: Request) -> dict[str, Any]:
    return await managed(request).archive_agent(agent_id)
