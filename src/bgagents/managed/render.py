"""The Managed Agents API's objects as its SDK reads them, from the stored rows and the session's task."""

from __future__ import annotations

from typing import Any

from ..core.schema import Task
from .mapping import rfc3339

Row = Any  # a SQLAlchemy row of the managed tables


def _when(value: float | None) -> str | None:
    return rfc3339(value) if value is not None else None


def agent_body(spec: dict[str, Any], agent_id: str, version: int) -> dict[str, Any]:
    """The agent's definition (shared by an agent and a session's snapshot of it)."""
    return {"id": agent_id, "type": "agent", "version": version, "name": spec["name"],
            "description": spec.get("description"), "model": spec["model"], "system": spec.get("system"),
            "tools": spec.get("tools") or [], "mcp_servers": [], "skills": [], "multiagent": None,
            "execution_identity": {"type": "service_account"}}


def agent(row: Row) -> dict[str, Any]:
    return {**agent_body(row.spec, row.id, row.version), "metadata": row.spec.get("metadata") or {},
            "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
            "archived_at": _when(row.archived_at)}


def environment(row: Row) -> dict[str, Any]:
    spec = row.spec
    return {"id": row.id, "type": "environment", "name": spec["name"], "description": spec.get("description"),
            "config": spec["config"], "metadata": spec.get("metadata") or {}, "scope": spec.get("scope"),
            "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
            "archived_at": _when(row.archived_at)}


def session_status(task: Task | None) -> str:
    """idle until the first message, and whenever the task is not working (ended, or waiting on a person)."""
    if task is None or task.status in ("waiting", "completed", "failed", "cancelled"):
        return "idle"
    if task.status == "queued" and task.progress.note:  # put back on its queue by a shutdown: resumes at start
        return "rescheduling"
    return "running"


def _active_seconds(task: Task | None, now: float) -> float | None:
    if task is None:
        return None
    total = sum((a.finished_at or now) - a.started_at for a in task.attempts)
    if not task.finished and task.started_at is not None and not any(a.finished_at is None for a in task.attempts):
        last_end = max((a.finished_at or 0.0 for a in task.attempts), default=0.0)
        total += now - max(task.started_at, last_end)
    return round(total, 3)


def session(row: Row, agent_row: Row, task: Task | None, now: float) -> dict[str, Any]:
    progress = task.progress if task is not None else None
    usage: dict[str, Any] = {"input_tokens": progress.input_tokens if progress else 0,
                             "output_tokens": progress.output_tokens if progress else 0,
                             "cache_read_input_tokens": 0}
    if progress is not None and progress.cost_usd is not None:
        usage["list_cost"] = {"amount": str(round(progress.cost_usd * 100)), "currency": "USD"}  # in cents
    return {"id": row.id, "type": "session", "status": session_status(task), "title": row.title,
            "agent": agent_body(agent_row.spec, agent_row.id, agent_row.version),
            "environment_id": row.environment_id, "metadata": row.metadata or {}, "budget": None,
            "outcome_evaluations": [], "resources": [], "vault_ids": [], "deployment_id": None,
            "stats": {"active_seconds": _active_seconds(task, now),
                      "duration_seconds": round(((task.finished_at if task and task.finished else None) or now)
                                                - row.created_at, 3)},
            "usage": usage, "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
            "archived_at": _when(row.archived_at)}
