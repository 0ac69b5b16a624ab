"""The HTTP API (FastAPI): a thin layer over `bgagents.Runtime`."""

from .app import create_app

__all__ = ["create_app"]
