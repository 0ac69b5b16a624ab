"""The Managed Agents API's objects (agents, environments, sessions) on bgagents' own: a feature on top of
the core, not a second runtime. The HTTP routes that speak the API are in `bgagents.server.v1`."""

from __future__ import annotations

from .service import Managed

__all__ = ["Managed"]
