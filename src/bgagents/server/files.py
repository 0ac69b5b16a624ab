"""Workspace files, so a channel can offer a response's files as downloads (SPEC 4.9).

An agent writes these files, so they are hostile: the server's own files are refused whatever the layout
(a workspace that is the home, holds it, or links into it), the file is opened without following a link
planted after the check, and it is served as a download in a script-less sandbox (`FILE_POLICY`): an
HTML or SVG file never runs as the dashboard's origin.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from collections.abc import AsyncIterator
from typing import IO
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidInput, NotFound
from ..runtime import Runtime
from ..tools.private import open_resolved
from ..tools.workspace import WorkspaceError, resolve_path
from .headers import CSP, FILE_POLICY
from .openapi import errors

router = APIRouter(tags=["files"])
# types a browser would run or render as a document of the origin: sent as plain text
ACTIVE = frozenset({"text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml",
                    "text/javascript", "application/javascript", "application/ecmascript", "text/xsl"})
CHUNK = 65536


@router.get("/files/{path:path}", response_class=StreamingResponse, responses={
    200: {"description": "The file, as a download", "content": {"*/*": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}},
    **errors(404)})
async def download(path: str, request: Request) -> StreamingResponse:
    """A file inside the workspace (paths that leave it, and the server's own files, are refused)."""
    rt: Runtime = request.app.state.runtime
    try:
        resolved = resolve_path(rt.settings.workspace_path, path, server=rt.services.server_files)
    except WorkspaceError as exc:
        raise InvalidInput(str(exc), code="bad_path") from None
    try:
        f = os.fdopen(open_resolved(resolved, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except OSError:  # no such file, a folder, a name too long, a link planted since
        raise NotFound(f"no file '{path}' in the workspace") from None
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO, a device
        f.close()
        raise NotFound(f"no file '{path}' in the workspace")
    kind = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
    media = "text/plain; charset=utf-8" if kind in ACTIVE else kind
    headers = {"content-length": str(info.st_size), CSP: FILE_POLICY,
               "content-disposition": f"attachment; filename*=utf-8''{quote(resolved.name)}"}
    return StreamingResponse(_chunks(f), media_type=media, headers=headers)


async def _chunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while data := await asyncio.to_thread(f.read, CHUNK):
            yield data
    finally:
        f.close()
