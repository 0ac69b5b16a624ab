"""Keeps file tools inside the workspace: paths are resolved (symbolic links included) before use, the
server's own files are refused wherever they lie, and files are opened without following links."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydantic_ai import ModelRetry

from .private import ServerFiles, open_resolved, person_umask


class WorkspaceError(ModelRetry):
    """A path the agent may not use; the agent sees the message and can correct itself."""


def resolve_path(workspace: Path, path: str, *, extra_roots: Iterable[Path] = (),
                 server: ServerFiles | None = None) -> Path:
    """`path` (relative to the workspace, or absolute) resolved; refused when it leads out of the workspace
    and `extra_roots`, or to one of the server's own files (`server`)."""
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
    if not any(resolved == r or resolved.is_relative_to(r) for r in (root, *(e.resolve() for e in extra_roots))):
        raise WorkspaceError(f"path '{path}' resolves outside the workspace ({root}); use paths inside it")
    if server is not None and server.owns(resolved, task_area=root):
        raise WorkspaceError(f"path '{path}' is one of the server's own files or its user's credentials; "
                             "use the workspace's files")
    return resolved


def relative(workspace: Path, path: Path) -> str:
    try:
        return str(path.relative_to(workspace.resolve()))
    except ValueError:
        return str(path)


def read_bytes(path: Path) -> bytes:
    """A resolved file's content, read without following a link planted since it was resolved."""
    fd = open_resolved(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_bytes(path: Path, data: bytes) -> None:
    """Writes a resolved file, creating it and its folders as the person's own process would (their umask),
    without following a link planted since it was resolved."""
    try:
        fd, created = open_resolved(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, parents=True), True
    except FileExistsError:
        fd, created = open_resolved(path, os.O_WRONLY | os.O_TRUNC), False
    with os.fdopen(fd, "wb") as f:
        umask = person_umask()
        if created and umask is not None:
            os.fchmod(f.fileno(), 0o666 & ~umask)
        f.write(data)
