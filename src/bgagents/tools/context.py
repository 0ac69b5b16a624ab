"""What the built-in tools get from the runtime: the task, its workspace and its todo list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel

from .private import ServerFiles
from .sandbox import Sandbox
from .workspace import resolve_path


class Todo(BaseModel):
    content: str
    status: Literal["pending", "in_progress", "completed", "cancelled"] = "pending"
    id: str | None = None


class TodoStore(Protocol):
    async def load_todos(self, task_id: str) -> list[Todo]: ...

    async def save_todos(self, task_id: str, todos: list[Todo]) -> None: ...


class Spawner(Protocol):
    """What the background_* tools need from the runtime to run an agent's own background tasks."""

    async def spawn(self, parent_id: str, key: str, prompt: str, description: str, agent: str | None,
                    model: str | None) -> str: ...

    async def child_output(self, parent_id: str, task_id: str, block: bool, timeout: float) -> str: ...

    async def cancel_children(self, parent_id: str, task_id: str | None, all_: bool) -> str: ...

    async def list_children(self, parent_id: str) -> str: ...


@dataclass
class ToolContext:
    task_id: str
    workspace: Path
    outputs_dir: Path
    todos: TodoStore
    spawner: Spawner | None = None
    bash_timeout: float = 120.0
    max_output_chars: int = 30_000
    sandbox: Sandbox | None = None  # None: bash runs without one
    server_files: ServerFiles | None = None  # refused to every file tool, whatever the layout

    def path(self, path: str, *, own_outputs: bool = False) -> Path:
        """`path` resolved inside the workspace, never one of the server's files; with `own_outputs`, also
        one of this task's cut tool outputs (kept beside the server's files, named after the task)."""
        if own_outputs:
            found = resolve_path(self.workspace, path, extra_roots=[self.outputs_dir])
            if found.parent == self.outputs_dir.resolve() and found.name.startswith(f"{self.task_id}-"):
                return found
        return resolve_path(self.workspace, path, server=self.server_files)
