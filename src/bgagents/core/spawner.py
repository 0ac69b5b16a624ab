"""The runtime side of the background_* tools: children launched, read and cancelled for their parent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import NotFound
from .schema import Task

if TYPE_CHECKING:
    from .runtime import Runtime


def _line(task: Task) -> str:
    p = task.progress
    todos = f", todos {p.todos.done}/{p.todos.total}" if p.todos.total else ""
    return f"- {task.id} ({task.name}): {task.status}, {p.requests} requests, {p.tool_calls} tool calls{todos}"


class RuntimeSpawner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def spawn(self, parent_id: str, key: str, prompt: str, description: str, agent: str | None,
                    model: str | None) -> str:
        """Launches a child; the same parent and key give the same child, so a replayed call starts none."""
        parent = await self.runtime.get(parent_id)
        spawn_key = f"{parent_id}:{parent.turn}:{key}"
        existing = await self.runtime.store.task_by_spawn_key(spawn_key)
        if existing is not None:
            return existing.id
        task = await self.runtime.launch(prompt, description=description, agent=agent, model=model or parent.model,
                                         parent_id=parent_id, _spawn_key=spawn_key)
        return task.id

    async def _child(self, parent_id: str, task_id: str) -> Task:
        task = await self.runtime.get(task_id)
        if task.parent_id != parent_id:
            raise NotFound(f"{task_id} is not one of your background tasks")
        return task

    async def child_output(self, parent_id: str, task_id: str, block: bool, timeout: float) -> str:
        await self._child(parent_id, task_id)
        out = await self.runtime.output(task_id, wait=block, timeout=timeout)
        if out.status == "completed" and out.result:
            return f"{task_id} completed:\n{out.result.text if out.result.text is not None else out.result.data}"
        if out.finished:
            return f"{task_id} {out.status} ({out.end_reason}): {out.error}"
        waited = " (still running after the timeout)" if out.timed_out else ""
        return f"{task_id} is {out.status}{waited}; last activity: {out.progress.last_tool_args or '-'}"

    async def cancel_children(self, parent_id: str, task_id: str | None, all_: bool) -> str:
        if all_:
            cancelled = await self.runtime.cancel_all(parent_id=parent_id)
            return f"cancelled {len(cancelled)} task(s)"
        assert task_id is not None
        await self._child(parent_id, task_id)
        task = await self.runtime.cancel(task_id)
        return f"{task.id} {task.status}"

    async def list_children(self, parent_id: str) -> str:
        children = await self.runtime.list(parent_id=parent_id)
        return "\n".join(_line(t) for t in reversed(children)) or "no background tasks"
