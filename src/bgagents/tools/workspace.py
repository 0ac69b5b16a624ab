"""Keeps file tools inside the workspace: paths are resolved (symbolic links included) before use."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic_ai import ModelRetry


class WorkspaceError(ModelRetry):
    """A path the agent may not use; the agent sees the message and can correct itself."""


def resolve_path(workspace: Path, path: str, *, extra_roots: Iterable[Path] = ()) -> Path:
    if not isinstance(path, str) or not path.strip():
        raise WorkspaceError("the path is empty")
    if "\x00" in path:
        raise WorkspaceError("the path contains a NUL byte")
    root = workspace.resolve()
    candidate = Path(path).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    for allowed in (root, *(r.resolve() for r in extra_roots)):
        if resolved == allowed or resolved.is_relative_to(allowed):
            return resolved
    raise WorkspaceError(f"path '{path}' resolves outside the workspace ({root}); use paths inside it")


def relative(workspace: Path, path: Path) -> str:
    try:
        return str(path.relative_to(workspace.resolve()))
    except ValueError:
        return str(path)
