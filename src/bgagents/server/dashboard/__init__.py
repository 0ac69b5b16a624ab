"""The web dashboard at `/`: a page that logs in with the server's token, then follows every agent live.

The page (templates/, static/app.js) is a small Preact + htm app with no build step: it reads the JSON
API with the session cookie and follows `/api/v1/events`. Every file it needs ships in the wheel.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import login, views

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Adds the page, its login and its views to `app`."""
    app.include_router(login.router)
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


__all__ = ["install"]
