"""What the /v1 routes share: the Managed extension of the app's runtime, a page as the SDK reads it, and
the query parameters of lists (the SDK sends arrays as `name[]` and ranges as `name[gte]`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request

from ...managed import Managed
from ...runtime import Runtime


def managed(request: Request) -> Managed:
    rt: Runtime = request.app.state.runtime
    return rt.managed


def page(data: list[dict[str, Any]], next_page: str | None) -> dict[str, Any]:
    return {"data": data, "next_page": next_page, "prev_page": None}


def stamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


Limit = Annotated[int | None, Query(ge=1, le=1000)]
PageToken = Annotated[str | None, Query(max_length=200)]
Archived = Annotated[bool, Query()]
Gte = Annotated[datetime | None, Query(alias="created_at[gte]")]
Lte = Annotated[datetime | None, Query(alias="created_at[lte]")]
Gt = Annotated[datetime | None, Query(alias="created_at[gt]")]
Lt = Annotated[datetime | None, Query(alias="created_at[lt]")]
Order = Annotated[str | None, Query(pattern="^(asc|desc)$")]
