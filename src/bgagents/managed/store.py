"""Reads and writes of the managed tables (synchronous; run in the core store's worker threads).

Lists page by id: ids are made sortable in creation order (see `new_id`), so a page token is the last
id of the page before, and a page is the same whatever is created meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..core.names import task_id
from ..errors import Conflict, NotFound
from . import tables

Row = sa.Row[Any]


def new_id(prefix: str) -> str:
    """`prefix_` + a task-id body: sortable by creation, and a session's task is `bg_` + the same body."""
    return prefix + "_" + task_id().removeprefix("bg_")


def page(engine: sa.Engine, table: sa.Table, *, after: str | None, limit: int, descending: bool,
         where: Sequence[sa.ColumnElement[bool]] = ()) -> tuple[list[Row], bool]:
    """A page of `table` ordered by id, after the id `after`; and whether more follow."""
    id_ = table.c.id
    query = sa.select(table).where(*where).order_by(id_.desc() if descending else id_).limit(limit + 1)
    if after is not None:
        query = query.where(id_ < after if descending else id_ > after)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    return rows[:limit], len(rows) > limit


# -- agents ----------------------------------------------------------------------------------------

def latest_agents(engine: sa.Engine, *, after: str | None, limit: int, archived: bool,
                  since: float | None, until: float | None) -> tuple[list[Row], bool]:
    a = tables.agents
    newest = sa.select(a.c.id, sa.func.max(a.c.version).label("v")).group_by(a.c.id).subquery()
    latest = sa.select(a).join(newest, sa.and_(a.c.id == newest.c.id, a.c.version == newest.c.v)).subquery()
    where = [*([] if archived else [latest.c.archived_at.is_(None)]),
             *([latest.c.created_at >= since] if since is not None else []),
             *([latest.c.created_at <= until] if until is not None else [])]
    return page(engine, latest, after=after, limit=limit, descending=False, where=where)  # type: ignore[arg-type]


def agent(engine: sa.Engine, agent_id: str, version: int | None = None) -> Row:
    a = tables.agents
    query = sa.select(a).where(a.c.id == agent_id)
    query = query.where(a.c.version == version) if version is not None else query.order_by(a.c.version.desc())
    with engine.connect() as conn:
        row = conn.execute(query.limit(1)).first()
    if row is None:
        which = f" with version {version}" if version is not None else ""
        raise NotFound(f"no agent '{agent_id}'{which}")
    return row


def agent_versions(engine: sa.Engine, agent_id: str, *, after: int | None, limit: int) -> tuple[list[Row], bool]:
    a = tables.agents
    query = sa.select(a).where(a.c.id == agent_id).order_by(a.c.version.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(a.c.version < after)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    if not rows and after is None:
        raise NotFound(f"no agent '{agent_id}'")
    return rows[:limit], len(rows) > limit


def add_agent(engine: sa.Engine, agent_id: str, spec: dict[str, Any], now: float) -> Row:
    with engine.begin() as conn:
        conn.execute(tables.agents.insert().values(id=agent_id, version=1, spec=spec, created_at=now, updated_at=now))
    return agent(engine, agent_id)


def add_agent_version(engine: sa.Engine, current: Row, spec: dict[str, Any], now: float) -> Row:
    """The next version; a version taken meanwhile (a concurrent update) is a Conflict."""
    try:
        with engine.begin() as conn:
            conn.execute(tables.agents.insert().values(id=current.id, version=current.version + 1, spec=spec,
                                                       created_at=current.created_at, updated_at=now))
    except sa.exc.IntegrityError:
        raise Conflict(f"agent '{current.id}' was updated meanwhile; retrieve it and try again",
                       code="version_conflict") from None
    return agent(engine, current.id)


def archive_agent(engine: sa.Engine, agent_id: str, now: float) -> Row:
    agent(engine, agent_id)
    a = tables.agents
    with engine.begin() as conn:
        conn.execute(a.update().where(a.c.id == agent_id, a.c.archived_at.is_(None)).values(archived_at=now))
    return agent(engine, agent_id)


# -- environments ----------------------------------------------------------------------------------

def environment(engine: sa.Engine, environment_id: str) -> Row:
    e = tables.environments
    with engine.connect() as conn:
        row = conn.execute(sa.select(e).where(e.c.id == environment_id)).first()
    if row is None:
        raise NotFound(f"no environment '{environment_id}'")
    return row


def add_environment(engine: sa.Engine, environment_id: str, spec: dict[str, Any], now: float) -> Row:
    with engine.begin() as conn:
        conn.execute(tables.environments.insert().values(id=environment_id, spec=spec, created_at=now,
                                                         updated_at=now))
    return environment(engine, environment_id)


def update_environment(engine: sa.Engine, environment_id: str, values: dict[str, Any]) -> Row:
    e = tables.environments
    environment(engine, environment_id)
    with engine.begin() as conn:
        conn.execute(e.update().where(e.c.id == environment_id).values(**values))
    return environment(engine, environment_id)


def delete_environment(engine: sa.Engine, environment_id: str) -> None:
    environment(engine, environment_id)
    s = tables.sessions
    with engine.begin() as conn:
        used = conn.execute(sa.select(s.c.id).where(s.c.environment_id == environment_id).limit(1)).first()
        if used is not None:
            raise Conflict(f"environment '{environment_id}' is used by session '{used.id}'; archive it instead",
                           code="environment_in_use")
        conn.execute(tables.environments.delete().where(tables.environments.c.id == environment_id))


# -- sessions --------------------------------------------------------------------------------------

def session(engine: sa.Engine, session_id: str) -> Row:
    s = tables.sessions
    with engine.connect() as conn:
        row = conn.execute(sa.select(s).where(s.c.id == session_id)).first()
    if row is None:
        raise NotFound(f"no session '{session_id}'")
    return row


def session_of_task(engine: sa.Engine, task_id_: str) -> Row | None:
    s = tables.sessions
    with engine.connect() as conn:
        return conn.execute(sa.select(s).where(s.c.task_id == task_id_)).first()


def add_session(engine: sa.Engine, values: dict[str, Any]) -> Row:
    with engine.begin() as conn:
        conn.execute(tables.sessions.insert().values(**values))
    return session(engine, values["id"])


def update_session(engine: sa.Engine, session_id: str, values: dict[str, Any]) -> Row:
    s = tables.sessions
    session(engine, session_id)
    with engine.begin() as conn:
        conn.execute(s.update().where(s.c.id == session_id).values(**values))
    return session(engine, session_id)


def delete_session(engine: sa.Engine, session_id: str) -> None:
    session(engine, session_id)
    with engine.begin() as conn:
        conn.execute(tables.sessions.delete().where(tables.sessions.c.id == session_id))


def sessions_page(engine: sa.Engine, *, after: str | None, limit: int, descending: bool,
                  where: Sequence[sa.ColumnElement[bool]]) -> tuple[list[Row], bool]:
    return page(engine, tables.sessions, after=after, limit=limit, descending=descending, where=where)
