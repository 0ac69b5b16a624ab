"""A small HTTP client of the bgagents API, shared by the CLI commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import connect_sse

from ..settings import Settings


def dashboard_url(url: str, token: str) -> str:
    """The dashboard's address that logs a browser in (it then drops the token from the address bar)."""
    return f"{url.rstrip('/')}/?token={quote(token, safe='')}"


class ClientError(Exception):
    """An error to print as one line: the server's JSON error, or why no server answered."""

    def __init__(self, message: str, code: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"BGAGENTS_URL '{url}' needs a scheme: e.g. http://{url.split('://')[-1]}",
                              code="bad_url")
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)
        self._async: httpx.AsyncClient | None = None

    def with_timeout(self, timeout: float) -> Client:
        """Another connection to the same server (e.g. for a long poll beside ordinary calls)."""
        return Client(self.url, self.token, timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        return cls(settings.url, settings.resolve_token(create=False))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._answer(response)

    async def get_async(self, path: str, **params: Any) -> Any:
        """A GET that a cancel stops at once (a long poll must not hold up leaving the chat)."""
        if self._async is None:
            self._async = httpx.AsyncClient(base_url=self.http.base_url, headers=self.http.headers,
                                            timeout=self.http.timeout)
        try:
            response = await self._async.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._answer(response)

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def _unreachable(self, exc: httpx.HTTPError) -> ClientError:
        if isinstance(exc, httpx.TimeoutException):
            return ClientError(f"the server at {self.url} did not answer in time", code="timeout")
        if isinstance(exc, httpx.ConnectError):
            return ClientError(f"no bgagents server answers at {self.url}; start one with 'bgagents serve' "
                               "(or set BGAGENTS_URL)", code="no_server")
        return ClientError(f"the connection to {self.url} failed: {exc}", code="no_server")

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ClientError(error["message"], error.get("code", "error"), response.status_code)
            except (ValueError, KeyError, TypeError):
                raise ClientError(f"HTTP {response.status_code}: {response.text[:200]}",
                                  status=response.status_code) from None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        return self.request("POST", path, json=body or {}, params={k: v for k, v in params.items() if v is not None})

    def events(self, since: int = 0, task: str | None = None) -> Iterator[dict[str, Any]]:
        """Follows the event stream, reconnecting with Last-Event-ID when the connection drops; a server that
        stops says so (a `ClientError`)."""
        last = since
        params = {"task": task} if task else {}
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with connect_sse(self.http, "GET", "/events", params=params, headers=headers,
                                 timeout=httpx.Timeout(30.0, read=None)) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        self.request("GET", "/events", params=params)  # raises the server's error
                    for sse in source.iter_sse():
                        if sse.event == "server.stopping":
                            raise ClientError(f"the bgagents server at {self.url} stopped", code="server_stopped")
                        event: dict[str, Any] = json.loads(sse.data)
                        last = event["seq"]
                        yield event
            except httpx.ConnectError:
                raise ClientError(f"no bgagents server answers at {self.url}", code="no_server") from None
            except (httpx.ReadError, httpx.RemoteProtocolError):
                continue
