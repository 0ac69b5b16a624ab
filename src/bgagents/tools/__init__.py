"""The built-in tools of native agents; their names are part of the interface."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from pydantic_ai.toolsets import FunctionToolset

from .background import background_cancel, background_list, background_output, background_task
from .context import Spawner, Todo, TodoStore, ToolContext
from .files import edit, glob, grep, read, write
from .sandbox import Sandbox, SandboxUnavailable
from .shell import bash
from .todos import todoread, todowrite
from .workspace import WorkspaceError, resolve_path

TOOLS: dict[str, Any] = {
    "bash": bash, "read": read, "write": write, "edit": edit, "glob": glob, "grep": grep,
    "todowrite": todowrite, "todoread": todoread,
    "background_task": background_task, "background_output": background_output,
    "background_cancel": background_cancel, "background_list": background_list,
}
BUILTIN_TOOL_NAMES: tuple[str, ...] = tuple(TOOLS)
READ_ONLY_TOOL_NAMES: tuple[str, ...] = ("read", "glob", "grep", "todoread")
BACKGROUND_TOOL_NAMES: tuple[str, ...] = ("background_task", "background_output", "background_cancel",
                                          "background_list")


def build_toolset(names: Iterable[str]) -> FunctionToolset[ToolContext]:
    """The toolset of these tools; built once per combination (schemas are costly to derive)."""
    names = tuple(names)
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tools: {', '.join(unknown)}; built-in tools: {', '.join(TOOLS)}")
    return _toolset(names)


@functools.cache
def _toolset(names: tuple[str, ...]) -> FunctionToolset[ToolContext]:
    return FunctionToolset([TOOLS[n] for n in names], max_retries=3)


def summarize_args(tool_name: str, args: dict[str, Any]) -> str:
    """A one-line form of a call for progress displays, e.g. `bash: ls -la`."""
    key = {"bash": "command", "read": "path", "write": "path", "edit": "path", "glob": "pattern",
           "grep": "pattern", "background_task": "prompt", "background_output": "task_id",
           # Claude Code's tools (the claude-code runner)
           "Bash": "command", "Read": "file_path", "Write": "file_path", "Edit": "file_path",
           "NotebookEdit": "notebook_path", "Glob": "pattern", "Grep": "pattern", "WebFetch": "url",
           "WebSearch": "query", "Agent": "description", "Task": "description", "TaskCreate": "subject"}.get(tool_name)
    if tool_name == "TaskUpdate":
        detail = " ".join(str(args[k]) for k in ("taskId", "status", "subject") if k in args)
    elif key and key in args:
        detail = str(args[key])
    elif tool_name in ("todowrite", "TodoWrite") and isinstance(args.get("todos"), list):
        detail = f"{len(args['todos'])} todos"
    else:
        detail = ", ".join(f"{k}={v}" for k, v in args.items())
    line = f"{tool_name}: {' '.join(detail.split())}" if detail else tool_name
    return line if len(line) <= 120 else line[:119] + "…"


__all__ = [
    "BACKGROUND_TOOL_NAMES", "BUILTIN_TOOL_NAMES", "READ_ONLY_TOOL_NAMES", "Sandbox", "SandboxUnavailable",
    "Spawner", "Todo", "TodoStore",
    "ToolContext", "WorkspaceError",
    "build_toolset", "resolve_path", "summarize_args",
]
