"""File tools: `read`, `write`, `edit`, `glob`, `grep`, all confined to the workspace."""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec

from pydantic_ai import ModelRetry, RunContext

from .context import ToolContext
from .workspace import read_bytes, relative, write_bytes

MAX_LINE = 2000
MAX_MATCHES = 200
P = ParamSpec("P")


def _os_errors_to_model(tool: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
    """An OS error (a name too long, no permission, a full disk) is a tool error the model reads and can
    act on, rather than the end of the task."""

    @functools.wraps(tool)
    async def run(*args: P.args, **kwargs: P.kwargs) -> str:
        try:
            return await tool(*args, **kwargs)
        except OSError as exc:
            raise ModelRetry(f"{tool.__name__} failed: {exc.strerror or exc}") from None

    return run


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


@_os_errors_to_model
async def read(ctx: RunContext[ToolContext], path: str, offset: int = 0, limit: int = 2000) -> str:
    """Read a text file, with line numbers.

    Args:
        path: File path, relative to the workspace.
        offset: The first line to show (0-based).
        limit: How many lines to show at most.
    """
    target = ctx.deps.path(path, own_outputs=True)
    if not target.exists():
        raise ModelRetry(f"file '{path}' does not exist")
    if target.is_dir():
        raise ModelRetry(f"'{path}' is a directory; use glob to list it")
    data = read_bytes(target)
    if _is_binary(data):
        raise ModelRetry(f"'{path}' is a binary file")
    lines = data.decode("utf-8", errors="replace").splitlines()
    offset, limit = max(0, offset), max(1, limit)
    shown = lines[offset: offset + limit]
    out = [f"{offset + i + 1:6}\t{line[:MAX_LINE]}" for i, line in enumerate(shown)]
    if offset + limit < len(lines):
        out.append(f"… {len(lines) - offset - limit} more lines; read again with offset={offset + limit}")
    return "\n".join(out) if out else "(empty file)"


@_os_errors_to_model
async def write(ctx: RunContext[ToolContext], path: str, content: str) -> str:
    """Write a file (creating folders as needed), replacing what was there.

    Args:
        path: File path, relative to the workspace.
        content: The whole new content.
    """
    target = ctx.deps.path(path)
    if target.is_dir():
        raise ModelRetry(f"'{path}' is a directory")
    data = content.encode("utf-8")
    write_bytes(target, data)
    return f"wrote {len(data)} bytes to {relative(ctx.deps.workspace, target)}"


@_os_errors_to_model
async def edit(ctx: RunContext[ToolContext], path: str, old_string: str, new_string: str,
               replace_all: bool = False) -> str:
    """Replace exact text in a file.

    Args:
        path: File path, relative to the workspace.
        old_string: The exact text to replace; it must appear once unless replace_all is true.
        new_string: The text to put instead.
        replace_all: Replace every occurrence.
    """
    if old_string == new_string:
        raise ModelRetry("old_string and new_string are the same")
    if not old_string:
        raise ModelRetry("old_string is empty; use write to create a file")
    target = ctx.deps.path(path)
    if not target.is_file():
        raise ModelRetry(f"file '{path}' does not exist")
    text = read_bytes(target).decode("utf-8")
    count = text.count(old_string)
    if count == 0:
        raise ModelRetry(f"old_string was not found in '{path}'")
    if count > 1 and not replace_all:
        raise ModelRetry(f"old_string appears {count} times in '{path}'; give more context or set replace_all")
    write_bytes(target, text.replace(old_string, new_string).encode("utf-8"))
    return f"replaced {count if replace_all else 1} occurrence(s) in {relative(ctx.deps.workspace, target)}"


def _walk(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".git" not in p.relative_to(root).parts and p.is_file()]


def _usable(ctx: RunContext[ToolContext], path: Path) -> Path | None:
    """A found path resolved, when it is inside the workspace and not the server's (else None)."""
    try:
        return ctx.deps.path(str(path))
    except ModelRetry:
        return None


@_os_errors_to_model
async def glob(ctx: RunContext[ToolContext], pattern: str, path: str = ".") -> str:
    """Find files by name pattern (e.g. `**/*.py`), newest first.

    Args:
        pattern: A glob pattern, relative to `path`.
        path: The folder to search, relative to the workspace.
    """
    root = ctx.deps.path(path)
    if not root.is_dir():
        raise ModelRetry(f"'{path}' is not a directory")

    def find() -> list[Path]:
        found = [p for p in root.glob(pattern) if ".git" not in p.relative_to(root).parts]
        inside = [p for p in found if _usable(ctx, p) is not None]
        return sorted(inside, key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)

    try:
        matches = await asyncio.to_thread(find)
    except (ValueError, NotImplementedError) as exc:
        raise ModelRetry(f"bad glob pattern '{pattern}': {exc}") from None
    if not matches:
        return "no files match"
    lines = [relative(ctx.deps.workspace, p) + ("/" if p.is_dir() else "") for p in matches[:MAX_MATCHES]]
    if len(matches) > MAX_MATCHES:
        lines.append(f"… {len(matches) - MAX_MATCHES} more")
    return "\n".join(lines)


@_os_errors_to_model
async def grep(ctx: RunContext[ToolContext], pattern: str, path: str = ".", include: str | None = None) -> str:
    """Search file contents with a regular expression; prints `file:line: text`.

    Args:
        pattern: A Python regular expression.
        path: The folder or file to search, relative to the workspace.
        include: Only files whose name matches this glob (e.g. `*.py`).
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ModelRetry(f"bad regular expression '{pattern}': {exc}") from None
    root = ctx.deps.path(path)
    if not root.exists():
        raise ModelRetry(f"'{path}' does not exist")

    def search() -> list[str]:
        files = [root] if root.is_file() else _walk(root)
        out: list[str] = []
        for file in sorted(files):
            if include and not fnmatch.fnmatch(file.name, include):
                continue
            usable = _usable(ctx, file)
            if usable is None:
                continue
            try:
                data = read_bytes(usable)
            except OSError:
                continue
            if _is_binary(data):
                continue
            for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if regex.search(line):
                    out.append(f"{relative(ctx.deps.workspace, file)}:{n}: {line[:500]}")
                    if len(out) > MAX_MATCHES:
                        return out
        return out

    matches = await asyncio.to_thread(search)
    if not matches:
        return "no matches"
    if len(matches) > MAX_MATCHES:
        return "\n".join(matches[:MAX_MATCHES]) + "\n… more matches; narrow the search"
    return "\n".join(matches)
