"""The MCP server: other agents (Claude Code, Cursor, OpenCode, …) run bgagents' background agents as tools.

`tools.py` defines the five tools over a `Backend` (`backends.py`): the runtime in this process, or a running
server over HTTP. `bgagents mcp` serves them on stdio (`stdio.py`); `serve` mounts them at `/mcp` (`http.py`).
"""

from .tools import build_server

__all__ = ["build_server"]
