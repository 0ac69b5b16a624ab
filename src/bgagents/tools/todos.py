"""`todowrite` / `todoread`: the agent's plan, which also drives the task's progress (done / total)."""

from __future__ import annotations

from pydantic_ai import RunContext

from .context import Todo, ToolContext


def _summary(todos: list[Todo]) -> str:
    counts = {s: sum(t.status == s for t in todos) for s in ("completed", "in_progress", "pending", "cancelled")}
    parts = [f"{counts['completed']} done", f"{counts['in_progress']} in progress", f"{counts['pending']} pending"]
    if counts["cancelled"]:
        parts.append(f"{counts['cancelled']} cancelled")
    return f"{len(todos)} todos: " + ", ".join(parts)


async def todowrite(ctx: RunContext[ToolContext], todos: list[Todo]) -> str:
    """Replace your todo list. Use it to plan multi-step work and mark items as you go.

    Args:
        todos: The whole list, in order; each has `content` and `status`
            (pending, in_progress, completed or cancelled). Keep one item in_progress at a time.
    """
    await ctx.deps.todos.save_todos(ctx.deps.task_id, todos)
    return _summary(todos)


async def todoread(ctx: RunContext[ToolContext]) -> str:
    """Read your current todo list."""
    todos = await ctx.deps.todos.load_todos(ctx.deps.task_id)
    if not todos:
        return "no todos yet"
    lines = [f"- [{t.status}] {t.content}" for t in todos]
    return _summary(todos) + "\n" + "\n".join(lines)
