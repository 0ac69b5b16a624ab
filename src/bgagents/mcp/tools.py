"""The five MCP tools, on any `Backend`: launch, read (blocking with progress), steer, cancel and list."""

from __future__ import annotations

import time
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from .. import __version__
from ..core.schema import Output, Task
from ..errors import BgAgentsError
from .backends import Backend

INSTRUCTIONS = (
    "bgagents runs LLM agents in the background, durably. Start one with background_task (it returns an id at "
    "once), do other work, then read its result with background_output (block=true waits, reporting progress). "
    "background_send steers a running agent; background_cancel stops one (or all); background_list shows them."
)
PROGRESS_EVERY = 1.0  # seconds between progress reports while background_output blocks


def _summary(task: Task) -> dict[str, Any]:
    p = task.progress
    return {"id": task.id, "name": task.name, "status": task.status, "model": task.model, "agent": task.agent,
            "requests": p.requests, "tool_calls": p.tool_calls, "last_tool": p.last_tool,
            "todos": f"{p.todos.done}/{p.todos.total}" if p.todos.total else None}


def _progress_line(out: Output) -> str:
    p = out.progress
    parts = [out.status, f"{p.requests} requests", f"{p.tool_calls} tool calls"]
    if p.last_tool:
        parts.append(f"last tool {p.last_tool}" + (f" {p.last_tool_args}" if p.last_tool_args else ""))
    if p.todos.total:
        parts.append(f"todos {p.todos.done}/{p.todos.total}")
    return ", ".join(parts)


def _output(out: Output) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": out.id, "status": out.status, "finished": out.finished}
    if out.finished:
        answer["result"] = out.result.text if out.result and out.result.data is None else (
            out.result.data if out.result else None)
        if out.error:
            answer["error"] = out.error
            answer["end_reason"] = out.end_reason
    else:
        answer["progress"] = _progress_line(out)
        if out.progress.last_message:
            answer["last_message"] = out.progress.last_message
        answer["timed_out"] = out.timed_out
    return answer


async def _call(coro: Any) -> Any:
    """Runs a backend call, turning bgagents' own errors into tool errors the calling agent can read."""
    try:
        return await coro
    except BgAgentsError as exc:
        raise ToolError(exc.message) from None


def build_server(backend: Backend) -> MCPServer:
    """An MCP server whose tools act on `backend`."""
    server: MCPServer = MCPServer("bgagents", version=__version__, instructions=INSTRUCTIONS)

    @server.tool()
    async def background_task(
        prompt: Annotated[str, Field(min_length=1, description="Everything the agent needs to know to do the task.")],
        name: Annotated[str | None, Field(description="A short name (default: made from the prompt).")] = None,
        agent: Annotated[str | None, Field(description="Agent profile, e.g. general or explore.")] = None,
        model: Annotated[str | None, Field(description="Model string, e.g. openai:gpt-4o (default: the "
                                                       "server's).")] = None,
    ) -> dict[str, Any]:
        """Start a background agent on a task; returns its id at once (read the result with background_output)."""
        if not prompt.strip():
            raise ToolError("prompt is empty: say what the agent should do")
        task: Task = await _call(backend.launch(prompt, name, agent, model))
        return {"id": task.id, "name": task.name, "status": task.status, "model": task.model}

    @server.tool()
    async def background_output(
        ctx: Context,
        id: Annotated[str, Field(min_length=1, description="The id background_task returned.")],
        block: Annotated[bool, Field(description="Wait until the task ends (up to `timeout`).")] = False,
        timeout: Annotated[float, Field(ge=0, le=3600, description="Seconds to wait at most when blocking.")] = 60,
    ) -> dict[str, Any]:
        """The result of a background task, or its status and progress while it runs."""
        out: Output = await _call(backend.output(id, False, 0))
        deadline = time.monotonic() + timeout
        last = ""
        while block and not out.finished:
            line = _progress_line(out)
            if line != last:
                await ctx.report_progress(out.progress.requests + out.progress.tool_calls, None, line)
                last = line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out = out.model_copy(update={"timed_out": True})
                break
            out = await _call(backend.output(id, True, min(PROGRESS_EVERY, remaining)))
        return _output(out)

    @server.tool()
    async def background_send(
        id: Annotated[str, Field(min_length=1, description="A running task's id.")],
        message: Annotated[str, Field(min_length=1, description="What to tell it.")],
    ) -> dict[str, Any]:
        """Steer a running background task: the message reaches it before its next model request."""
        if not message.strip():
            raise ToolError("message is empty")
        task: Task = await _call(backend.send(id, message))
        return {"id": task.id, "status": task.status, "delivered": "before its next model request"}

    @server.tool()
    async def background_cancel(
        id: Annotated[str | None, Field(description="The task to cancel.")] = None,
        all: Annotated[bool, Field(description="Cancel every queued or running task instead.")] = False,
    ) -> dict[str, Any]:
        """Cancel one background task, or all of them (all=true)."""
        if all and id:
            raise ToolError("give either id or all=true, not both")
        if all:
            tasks: list[Task] = await _call(backend.cancel_all())
            return {"cancelled": [t.id for t in tasks]}
        if not id:
            raise ToolError("give the id of the task to cancel, or all=true")
        task: Task = await _call(backend.cancel(id))
        return {"cancelled": [task.id], "status": task.status}

    @server.tool()
    async def background_list(
        status: Annotated[str | None, Field(description="Only these statuses, comma-separated: queued, running, "
                                                        "waiting, completed, failed, cancelled.")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="At most this many, newest first.")] = 50,
    ) -> dict[str, Any]:
        """The background tasks, newest first, with status and progress."""
        tasks: list[Task] = await _call(backend.list(status, limit))
        return {"tasks": [_summary(t) for t in tasks]}

    return server
