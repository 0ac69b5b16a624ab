"""`/v1/environments`: create, retrieve, update, list, archive, delete. An environment is the network
setting of its sessions' sandbox (the workspace is the server's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from .common import Archived, Limit, PageToken, managed, page

router = APIRouter(prefix="/environments", tags=["managed agents"])
Json = Annotated[dict[str, Any], Body()]


@router.post("")
async def create(body: Json, request: Request) -> dict[str, Any]:
    return await managed(request).create_environment(body)


@router.get("")
async def list_environments(request: Request, limit: Limit = None,
                            page_token: Annotated[PageToken, Query(alias="page")] = None,
                            include_archived: Archived = False) -> dict[str, Any]:
    data, more = await managed(request).environments(page=page_token, limit=limit, archived=include_archived)
    return page(data, more)


@router.get("/{environment_id}")
async def retrieve(environment_id: str, request: Request) -> dict[str, Any]:
    return await managed(request).environment(environment_id)


@router.post("/{environment_id}")
async def update(environment_id: str, body: Json, request: Request) -> dict[str, Any]:
    return await managed(request).update_environment(environment_id, body)


@router.post("/{environment_id}/archive")
async def archive(environment_id: str, request: Request) -> dict[str, Any]:
    return await managed(request).archive_environment(environment_id)


@router.delete("/{environment_id}")
async def delete(environment_id: str, request: Request) -> dict[str, Any]:
    return await managed(request).delete_environment(environment_id)
