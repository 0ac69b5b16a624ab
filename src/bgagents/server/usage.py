"""`GET /usage`: tokens, requests, tool calls and cost per model, agent or day."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from ..core.runtime import Runtime
from ..core.usage import UsageGroup

router = APIRouter(tags=["usage"])


@router.get("/usage")
async def usage(
    request: Request,
    by: Literal["model", "agent", "day"] = "model",
    since: Annotated[float | None, Query(ge=0, le=1e11, description="Unix time; tasks created since")] = None,
) -> list[UsageGroup]:
    """Totals of the tasks created since `since` (default: all), largest cost first (by day: in date order)."""
    rt: Runtime = request.app.state.runtime
    return await rt.usage(by, since)
