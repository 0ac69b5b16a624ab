"""Routes for approvals: the tool calls waiting for a person's decision."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from ..core.schema import Approval
from ..runtime import Runtime
from .bodies import DecisionBody
from .openapi import errors

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get("")
async def list_approvals(
    request: Request,
    status: Annotated[Literal["pending", "approved", "denied", "cancelled", "all"], Query()] = "pending",
) -> list[Approval]:
    rt: Runtime = request.app.state.runtime
    return await rt.approvals(None if status == "all" else status)


@router.post("/{approval_id}", responses=errors(404, 409))
async def decide(approval_id: str, body: DecisionBody, request: Request) -> Approval:
    rt: Runtime = request.app.state.runtime
    return await rt.decide(approval_id, body.decision, body.reason)
