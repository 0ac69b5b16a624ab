"""Routes for webhook subscriptions and their delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import Field

from ..webhooks import Webhooks
from ..webhooks.store import Delivery, Subscription
from .bodies import Body
from .openapi import errors

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookBody(Body):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] | None = Field(None, description="Event types; default: all of task.completed, task.failed, "
                                                         "task.cancelled, task.waiting, conversation.response")
    description: str = Field("", max_length=500)


class NewWebhook(Subscription):
    secret: str = Field(description="Signs every delivery (Standard Webhooks); shown only now")


def webhooks(request: Request) -> Webhooks:
    hooks: Webhooks = request.app.state.webhooks
    return hooks


@router.post("", status_code=201)
async def create(body: WebhookBody, request: Request) -> NewWebhook:
    sub, secret = await webhooks(request).subscribe(body.url, body.events, body.description)
    return NewWebhook(**sub.model_dump(), secret=secret)


@router.get("")
async def list_webhooks(request: Request) -> list[Subscription]:
    return await webhooks(request).subscriptions()


@router.get("/launch-secret")
async def launch_secret(request: Request) -> dict[str, str]:
    """The secret that signs per-launch webhooks (`webhook` on POST /tasks)."""
    return {"secret": webhooks(request).launch_secret()}


@router.get("/{webhook_id}", responses=errors(404))
async def get_webhook(webhook_id: str, request: Request) -> Subscription:
    return await webhooks(request).get(webhook_id)


@router.delete("/{webhook_id}", responses=errors(404))
async def delete(webhook_id: str, request: Request) -> dict[str, str]:
    await webhooks(request).delete(webhook_id)
    return {"deleted": webhook_id}


@router.get("/{webhook_id}/deliveries", responses=errors(404))
async def deliveries(webhook_id: str, request: Request,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Delivery]:
    """The newest deliveries with every try: status code, error, duration."""
    return await webhooks(request).deliveries(webhook_id, limit)
