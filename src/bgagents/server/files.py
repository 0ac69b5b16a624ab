"""Workspace files, so a channel can offer a response's files as downloads (SPEC 4.9)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..errors import InvalidInput, NotFound
from ..runtime import Runtime
from ..tools.workspace import WorkspaceError, resolve_path
from .openapi import errors

router = APIRouter(tags=["files"])


@router.get("/files/{path:path}", response_class=FileResponse, responses={
    200: {"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
    **errors(404)})
async def download(path: str, request: Request) -> FileResponse:
    """A file inside the workspace (paths that leave it are refused)."""
    rt: Runtime = request.app.state.runtime
    try:
        resolved = resolve_path(rt.settings.workspace_path, path)
    except WorkspaceError as exc:
        raise InvalidInput(str(exc), code="bad_path") from None
    try:
        is_file = resolved.is_file()
    except OSError:  # e.g. a name too long: no such file either
        is_file = False
    if not is_file:
        raise NotFound(f"no file '{path}' in the workspace")
    return FileResponse(resolved, filename=resolved.name)
