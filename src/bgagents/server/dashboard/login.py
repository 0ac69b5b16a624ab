"""Logging in as Jupyter does: `/?token=TOKEN` (or the form) sets the session cookie, then a clean URL."""

from __future__ import annotations

import html
from pathlib import Path
from string import Template
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ... import __version__
from ..auth import (
    CSRF_HEADER,
    CSRF_HINT,
    SESSION_COOKIE,
    Forbidden,
    csrf_token,
    has_session,
    same_origin,
    session_value,
    token_matches,
)
from ..errors import error_response
from ..headers import CSP, page_policy

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"


def render(name: str, **values: str) -> str:
    """A page from templates/, with `$name` placeholders filled with HTML-escaped values."""
    text = (TEMPLATES / name).read_text()
    return Template(text).safe_substitute({k: html.escape(v) for k, v in values.items()})


def page(html: str, status: int = 200) -> HTMLResponse:
    """One of the dashboard's pages, never cached, with its Content-Security-Policy."""
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store", CSP: page_policy(html)})


def login_page(error: str = "", status: int = 200) -> HTMLResponse:
    return page(render("login.html", error=error, version=__version__), status)


def logged_in(request: Request) -> RedirectResponse:
    """A redirect to the clean URL, carrying the session cookie."""
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, session_value(request.app.state.token), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.get("/")
async def index(request: Request, token: str | None = None) -> Response:
    """The dashboard, or the login page; `?token=` logs in and redirects to the bare URL."""
    if token is not None:
        if token_matches(token, request.app.state.token):
            return logged_in(request)
        return login_page("Wrong token: it is not the one this server uses.", status=401)
    if not has_session(request, request.app.state.token):
        return login_page()
    return page(render("index.html", csrf=csrf_token(request.app.state.token), version=__version__))


@router.post("/login")
async def login(request: Request) -> Response:
    """The login form's POST (a plain urlencoded body, read without a multipart parser)."""
    token = parse_qs((await request.body()).decode(errors="replace")).get("token", [""])[0]
    if not same_origin(request):
        return login_page("Log in from this server's own page.", status=403)
    if not token_matches(token, request.app.state.token):
        return login_page("Wrong token: it is not the one this server uses.", status=401)
    return logged_in(request)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session: with the page's CSRF token (the `X-CSRF-Token` header, or a `csrf_token` form
    field), so another site cannot log a person out."""
    given = request.headers.get(CSRF_HEADER) or parse_qs(
        (await request.body()).decode(errors="replace")).get("csrf_token", [""])[0]
    if not (same_origin(request) and token_matches(given, csrf_token(request.app.state.token))):
        return error_response(403, Forbidden.code, CSRF_HINT)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
