"""Where the MCP tools send their work: the runtime of this process, or a running server over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ..core.runtime import Runtime
from ..core.schema import Output, Task
from ..errors import BgAgentsError

if TYPE_CHECKING:
    from ..server.stopping import Stopping


class Backend(Protocol):
    async def launch(self, prompt: str, name: str | None, agent: str | None, model: str | None) -> Task: ...
    async def get(self, task_id: str) -> Task: ...
    async def output(self, task_id: str, wait: bool, timeout: float) -> Output: ...
    async def send(self, task_id: str, message: str) -> Task: ...
    async def cancel(self, task_id: str) -> Task: ...
    async def cancel_all(self) -> list[Task]: ...
    async def list(self, status: str | None, limit: int) -> list[Task]: ...


class RuntimeBackend:
    """The runtime of this process (`bgagents mcp --local`, or `/mcp` on `serve`, whose `stopping` cuts a
    blocking wait short as the server stops)."""

    def __init__(self, runtime: Runtime, stopping: Stopping | None = None) -> None:
        self.runtime = runtime
        self.stopping = stopping

    async def launch(self, prompt: str, name: str | None, agent: str | None, model: str | None) -> Task:
        return await self.runtime.launch(prompt, name=name, agent=agent, model=model)

    async def get(self, task_id: str) -> Task:
        return await self.runtime.get(task_id)

    async def output(self, task_id: str, wait: bool, timeout: float) -> Output:
        if wait and self.stopping is not None:
            return await self.stopping.first(self.runtime.output(task_id, wait=True, timeout=timeout))
        return await self.runtime.output(task_id, wait=wait, timeout=timeout)

    async def send(self, task_id: str, message: str) -> Task:
        return await self.runtime.send(task_id, message)

    async def cancel(self, task_id: str) -> Task:
        return await self.runtime.cancel(task_id)

    async def cancel_all(self) -> list[Task]:
        return await self.runtime.cancel_all()

    async def list(self, status: str | None, limit: int) -> list[Task]:
        return await self.runtime.list([s.strip() for s in status.split(",")] if status else None, limit=limit)


class HttpBackend:
    """A running `bgagents serve`, through its JSON API; its errors come back as `BgAgentsError`s."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.url + "/api/v1", headers=headers, timeout=30.0)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, *, timeout: float = 30.0, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TransportError as exc:
            raise BgAgentsError(f"the bgagents server at {self.url} did not answer ({type(exc).__name__})",
                                code="no_server") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                message, code = str(error["message"]), str(error.get("code", "error"))
            except (ValueError, KeyError, TypeError):
                message, code = f"HTTP {response.status_code}: {response.text[:200]}", "error"
            raise BgAgentsError(message, code=code)
        return response.json()

    async def launch(self, prompt: str, name: str | None, agent: str | None, model: str | None) -> Task:
        body = {k: v for k, v in {"prompt": prompt, "name": name, "agent": agent, "model": model}.items()
                if v is not None}
        return Task.model_validate(await self._call("POST", "/tasks", json=body))

    async def get(self, task_id: str) -> Task:
        return Task.model_validate(await self._call("GET", f"/tasks/{task_id}"))

    async def output(self, task_id: str, wait: bool, timeout: float) -> Output:
        params = {"wait": wait, "timeout": timeout}
        return Output.model_validate(await self._call("GET", f"/tasks/{task_id}/output", params=params,
                                                      timeout=timeout + 30.0))

    async def send(self, task_id: str, message: str) -> Task:
        return Task.model_validate(await self._call("POST", f"/tasks/{task_id}/messages", json={"message": message}))

    async def cancel(self, task_id: str) -> Task:
        return Task.model_validate(await self._call("POST", f"/tasks/{task_id}/cancel"))

    async def cancel_all(self) -> list[Task]:
        return [Task.model_validate(t) for t in await self._call("POST", "/tasks/cancel", json={"all": True})]

    async def list(self, status: str | None, limit: int) -> list[Task]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return [Task.model_validate(t) for t in await self._call("GET", "/tasks", params=params)]
