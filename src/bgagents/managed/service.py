"""`Managed`: the extension that keeps the Managed Agents API's agents, environments and sessions.

A session is a bgagents task and the chain of its turns: its first `user.message` launches the task
(id `bg_` + the session id's body), a later one resumes it when it is idle or steers it while it
works; `user.interrupt` cancels the turn; `user.tool_confirmation` decides the approval its tool call
asks for. The task runs with an agent profile this extension defines per session (`managed:SESSION`):
the pinned agent version's prompt, tools and permissions, and the environment's network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..core.extensions import Extension
from ..core.profiles import Profile
from ..core.schema import Task
from ..errors import InvalidInput, NotFound
from . import render, specs, store, tables

if TYPE_CHECKING:
    from ..core.runtime import Runtime

log = logging.getLogger("bgagents.managed")
T = TypeVar("T")
PROFILE_PREFIX = "managed:"
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def page_size(limit: int | None, most: int = MAX_LIMIT) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= most:
        raise InvalidInput(f"limit must be between 1 and {most}")
    return limit


class Managed(Extension):
    """The Managed Agents API's objects, over the core's tasks, events and approvals."""

    name = "managed"
    metadata = tables.metadata

    def __init__(self) -> None:
        self._profiles: dict[str, Profile] = {}  # session id → its profile (agent versions never change)
        self._locks: dict[str, asyncio.Lock] = {}

    def attach(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.store.engine

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await self.runtime.store.run(lambda: fn(self.engine, *args, **kw))

    def _now(self) -> float:
        return self.runtime.clock()

    def lock(self, session_id: str) -> asyncio.Lock:
        """One change to a session at a time in this process (a launch is not made twice)."""
        return self._locks.setdefault(session_id, asyncio.Lock())

    # -- the core's hooks --------------------------------------------------------------------------

    def profile(self, name: str) -> Profile | None:
        if not name.startswith(PROFILE_PREFIX):
            return None
        session_id = name.removeprefix(PROFILE_PREFIX)
        found = self._profiles.get(session_id)
        if found is None:
            try:
                row = store.session(self.engine, session_id)
                agent = store.agent(self.engine, row.agent_id, row.agent_version)
                environment = store.environment(self.engine, row.environment_id)
            except NotFound:
                return None
            found = specs.profile_of(name, agent.spec, environment.spec)
            self._profiles[session_id] = found
        return found

    def retained(self) -> sa.Select[Any]:
        """A session's task stays while the session does (it may get its next message any day); a deleted
        session's task goes with bgagents' retention."""
        return sa.select(tables.sessions.c.task_id)

    # -- agents ------------------------------------------------------------------------------------

    def _check_model(self, spec: dict[str, Any]) -> None:
        self.runtime.models.check(spec["model"]["id"])

    async def create_agent(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = specs.agent_spec(body)
        self._check_model(spec)
        return render.agent(await self._run(store.add_agent, store.new_id("agent"), spec, self._now()))

    async def agent(self, agent_id: str, version: int | None = None) -> dict[str, Any]:
        if version is not None and version < 1:
            raise InvalidInput("version must be at least 1")
        return render.agent(await self._run(store.agent, agent_id, version))

    async def update_agent(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new version; the same definition again makes none. `version`, when given, must be the current one."""
        current = await self._run(store.agent, agent_id)
        expected = body.get("version")
        if expected is not None and expected != current.version:
            raise InvalidInput(f"version {expected} is not the agent's current version ({current.version})",
                               code="version_mismatch")
        if current.archived_at is not None:
            raise InvalidInput(f"agent '{agent_id}' is archived")
        spec = specs.agent_spec({k: v for k, v in body.items() if k != "version"}, current.spec)
        if spec == current.spec:
            return render.agent(current)
        self._check_model(spec)
        return render.agent(await self._run(store.add_agent_version, current, spec, self._now()))

    async def agents(self, *, page: str | None, limit: int | None, archived: bool, since: float | None,
                     until: float | None) -> tuple[list[dict[str, Any]], str | None]:
        rows, more = await self._run(store.latest_agents, after=page, limit=page_size(limit), archived=archived,
                                     since=since, until=until)
        return [render.agent(r) for r in rows], rows[-1].id if more and rows else None

    async def agent_versions(self, agent_id: str, *, page: str | None,
                             limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
        after = None
        if page is not None:
            if not page.isdigit():
                raise InvalidInput("page: not a page token of this list")
            after = int(page)
        rows, more = await self._run(store.agent_versions, agent_id, after=after, limit=page_size(limit))
        return [render.agent(r) for r in rows], str(rows[-1].version) if more and rows else None

    async def archive_agent(self, agent_id: str) -> dict[str, Any]:
        return render.agent(await self._run(store.archive_agent, agent_id, self._now()))

    # -- environments ------------------------------------------------------------------------------

    async def create_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = specs.environment_spec(body)
        return render.environment(await self._run(store.add_environment, store.new_id("env"), spec, self._now()))

    async def environment(self, environment_id: str) -> dict[str, Any]:
        return render.environment(await self._run(store.environment, environment_id))

    async def update_environment(self, environment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        current = await self._run(store.environment, environment_id)
        spec = specs.environment_spec(body, current.spec)
        row = await self._run(store.update_environment, environment_id, {"spec": spec, "updated_at": self._now()})
        self._profiles.clear()  # sessions of it run their next turn with its new network
        return render.environment(row)

    async def environments(self, *, page: str | None, limit: int | None,
                           archived: bool) -> tuple[list[dict[str, Any]], str | None]:
        e = tables.environments
        where = [] if archived else [e.c.archived_at.is_(None)]
        rows, more = await self._run(store.page, e, after=page, limit=page_size(limit), descending=False,
                                     where=where)
        return [render.environment(r) for r in rows], rows[-1].id if more and rows else None

    async def archive_environment(self, environment_id: str) -> dict[str, Any]:
        current = await self._run(store.environment, environment_id)
        values = {"archived_at": current.archived_at or self._now()}
        return render.environment(await self._run(store.update_environment, environment_id, values))

    async def delete_environment(self, environment_id: str) -> dict[str, Any]:
        await self._run(store.delete_environment, environment_id)
        return {"id": environment_id, "type": "environment_deleted"}

    # -- sessions ----------------------------------------------------------------------------------

    async def task_of(self, row: Any) -> Task | None:
        """The session's task, None before its first message."""
        try:
            return await self.runtime.get(row.task_id)
        except NotFound:
            return None

    async def render_session(self, row: Any) -> dict[str, Any]:
        agent = await self._run(store.agent, row.agent_id, row.agent_version)
        return render.session(row, agent, await self.task_of(row), self._now())

    async def session_row(self, session_id: str) -> Any:
        return await self._run(store.session, session_id)

    async def session_agent(self, row: Any) -> dict[str, Any]:
        agent: dict[str, Any] = (await self._run(store.agent, row.agent_id, row.agent_version)).spec
        return agent

    async def create_session_row(self, body: dict[str, Any]) -> Any:
        """Checks a create body and stores the session (its events are sent next, by the caller)."""
        specs_refused = {"resources": "session resources (files, GitHub repositories, memory stores)",
                         "vault_ids": "vaults", "budget": "session budgets"}
        for field, what in specs_refused.items():
            if body.get(field):
                raise InvalidInput(f"{field}: {what} {specs.NOT_YET}")
        agent_id, version = _agent_ref(body.get("agent"))
        agent = await self._run(store.agent, agent_id, version)
        if agent.archived_at is not None:
            raise InvalidInput(f"agent '{agent_id}' is archived")
        environment_id = body.get("environment_id")
        if not isinstance(environment_id, str) or not environment_id:
            raise InvalidInput("environment_id: required")
        environment = await self._run(store.environment, environment_id)
        if environment.archived_at is not None:
            raise InvalidInput(f"environment '{environment_id}' is archived")
        title = body.get("title")
        if title is not None and not isinstance(title, str):
            raise InvalidInput("title: must be a string")
        session_id = store.new_id("sesn")
        now = self._now()
        return await self._run(store.add_session, {
            "id": session_id, "task_id": "bg_" + session_id.removeprefix("sesn_"), "agent_id": agent.id,
            "agent_version": agent.version, "environment_id": environment_id, "title": title,
            "metadata": specs.metadata(body.get("metadata")), "created_at": now, "updated_at": now})

    async def sessions(self, *, page: str | None, limit: int | None, descending: bool, archived: bool,
                       agent_id: str | None, agent_version: int | None, statuses: list[str],
                       created: list[sa.ColumnElement[bool]]) -> tuple[list[dict[str, Any]], str | None]:
        s = tables.sessions
        where = [*created, *([] if archived else [s.c.archived_at.is_(None)])]
        if agent_id is not None:
            where.append(s.c.agent_id == agent_id)
            if agent_version is not None:
                where.append(s.c.agent_version == agent_version)
        size = page_size(limit, 1000)
        out: list[dict[str, Any]] = []
        after, more = page, True
        while more and len(out) < size:  # a status filter is the task's: read on until the page is full
            rows, more = await self._run(store.sessions_page, after=after, limit=size, descending=descending,
                                         where=where)
            for row in rows:
                after = row.id
                body = await self.render_session(row)
                if not statuses or body["status"] in statuses:
                    out.append(body)
                    if len(out) == size:
                        more = more or row is not rows[-1]
                        break
        return out, after if more and out else None

    async def update_session(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        for field, what in {"agent": "changing a session's agent", "budget": "session budgets",
                            "vault_ids": "vaults"}.items():
            if body.get(field) is not None:
                raise InvalidInput(f"{field}: {what} {specs.NOT_YET}")
        row = await self.session_row(session_id)
        values: dict[str, Any] = {"updated_at": self._now()}
        if "title" in body:
            if body["title"] is not None and not isinstance(body["title"], str):
                raise InvalidInput("title: must be a string")
            values["title"] = body["title"]
        if "metadata" in body:
            values["metadata"] = specs.metadata(body["metadata"], patch=row.metadata or {})
        return await self.render_session(await self._run(store.update_session, session_id, values))

    async def _stop(self, row: Any) -> None:
        task = await self.task_of(row)
        if task is not None and not task.finished:
            try:
                await self.runtime.cancel(task.id, "session archived")
            except Exception:  # it ended meanwhile
                log.debug("session %s: its task had ended", row.id)

    async def archive_session(self, session_id: str) -> dict[str, Any]:
        """Archived: it takes no more events; a turn it runs is cancelled. Its history stays readable."""
        row = await self.session_row(session_id)
        await self._stop(row)
        values = {"archived_at": row.archived_at or self._now(), "updated_at": self._now()}
        return await self.render_session(await self._run(store.update_session, session_id, values))

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        """The session is gone from this API (its task stays in bgagents' own, until retention removes it)."""
        row = await self.session_row(session_id)
        await self._stop(row)
        await self._run(store.delete_session, session_id)
        self._profiles.pop(session_id, None)
        return {"id": session_id, "type": "session_deleted"}


def _agent_ref(value: Any) -> tuple[str, int | None]:
    """`agent`: an id (its latest version), or `{type: "agent", id, version}`."""
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        if value.get("type") not in (None, "agent"):
            raise InvalidInput(f"agent.type: {value.get('type')!r} {specs.NOT_YET}")
        version = value.get("version")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise InvalidInput("agent.version: must be an integer of at least 1")
        if value.get("tools") is not None or value.get("mcp_servers") is not None:
            raise InvalidInput(f"agent: overriding an agent's tools per session {specs.NOT_YET}")
        return value["id"], version
    raise InvalidInput("agent: an agent id, or {\"type\": \"agent\", \"id\": …, \"version\": …}")
