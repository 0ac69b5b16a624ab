"""`background_task`, `background_output`, `background_cancel`, `background_list`: agents that launch agents."""

from __future__ import annotations

from pydantic_ai import ModelRetry, RunContext

from ..errors import BgAgentsError
from .context import Spawner, ToolContext


def _spawner(ctx: RunContext[ToolContext]) -> Spawner:
    if ctx.deps.spawner is None:
        raise ModelRetry("background tasks are not available here")
    return ctx.deps.spawner


async def background_task(ctx: RunContext[ToolContext], prompt: str, description: str = "",
                          agent: str | None = None, model: str | None = None) -> str:
    """Start a background agent on a task of its own; returns its id at once. You are told when it ends.

    Args:
        prompt: Everything the agent needs to know to do the task.
        description: A few words on what it is for.
        agent: Agent profile (default: general; `explore` is read-only).
        model: Model to use (default: yours or the profile's).
    """
    key = ctx.tool_call_id or ""
    try:
        child = await _spawner(ctx).spawn(ctx.deps.task_id, key, prompt, description, agent, model)
    except BgAgentsError as exc:
        raise ModelRetry(exc.message) from None
    return f"started background task {child}; you will be told when it ends (or call background_output)"


async def background_output(ctx: RunContext[ToolContext], task_id: str, block: bool = False,
                            timeout: float = 60) -> str:
    """The result of one of your background tasks, or its status and progress while it runs.

    Args:
        task_id: The id background_task returned.
        block: Wait until it ends (up to `timeout` seconds).
        timeout: Seconds to wait at most when blocking.
    """
    try:
        return await _spawner(ctx).child_output(ctx.deps.task_id, task_id, block, max(0.0, min(timeout, 3600)))
    except BgAgentsError as exc:
        raise ModelRetry(exc.message) from None


async def background_cancel(ctx: RunContext[ToolContext], task_id: str | None = None, all: bool = False) -> str:
    """Cancel one of your background tasks, or all of them.

    Args:
        task_id: The task to cancel.
        all: Cancel every background task you started (and theirs).
    """
    if not task_id and not all:
        raise ModelRetry("give task_id, or all=true")
    try:
        return await _spawner(ctx).cancel_children(ctx.deps.task_id, task_id, all)
    except BgAgentsError as exc:
        raise ModelRetry(exc.message) from None


async def background_list(ctx: RunContext[ToolContext]) -> str:
    """List the background tasks you started, with status and progress."""
    return await _spawner(ctx).list_children(ctx.deps.task_id)
