"""The webhook route: Telegram posts each update to `/telegram/webhook` with the secret token header.

A wrong or missing secret is 401; a body that is not an update is 400; an update that failed is
503, so Telegram delivers it again (a redelivered update that already made its event is ignored).
"""

from __future__ import annotations

import secrets

from aiogram.types import Update
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ...server.auth import Unauthorized
from ...server.errors import error_body
from .channel import WEBHOOK_PATH, TelegramChannel

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_router(channel: TelegramChannel) -> APIRouter:
    router = APIRouter()

    @router.post(WEBHOOK_PATH, include_in_schema=False)
    async def webhook(request: Request) -> JSONResponse:
        given = request.headers.get(SECRET_HEADER, "")
        if not secrets.compare_digest(given.encode(), channel.secret.encode()):
            raise Unauthorized(f"missing or wrong {SECRET_HEADER}")
        try:
            update = Update.model_validate(await request.json(), context={"bot": channel.bot})
        except (ValueError, ValidationError):
            return JSONResponse(error_body("invalid_update", "the body is not a Telegram update"), status_code=400)
        if not await channel.handle(update):
            return JSONResponse(error_body("update_failed", "the update could not be handled now; send it again"),
                                status_code=503)
        return JSONResponse({"ok": True})

    return router
