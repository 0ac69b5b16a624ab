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
    try:
        candidate = Path(path).expanduser()
    except RuntimeError:  # `~nosuchuser/x`: no such user, so no home to expand
        raise WorkspaceError(f"cannot expand '{path.split('/', 1)[0]}': no such user; "
                             "use paths inside the workspace") from None
    try:
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except (RuntimeError, OSError) as exc:  # a symbolic link loop, a name too long
        raise WorkspaceError(f"path '{path}' cannot be resolved: {exc}") from None
    for allowed in (root, *(r.resolve() for r in extra_roots)):
        if resolved == allowed or resolved.is_relative_to(allowed):
            return resolved
    raise WorkspaceError(f"path '{path}' resolves outside the workspace ({root}); use paths inside it")


def relative(workspace: Path, path: Path) -> str:
    try:
        return str(path.relative_to(workspace.resolve()))
    except ValueError:
        return str(path)
