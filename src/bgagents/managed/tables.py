"""The tables of the Managed Agents objects bgagents has no object of its own for: agents (every version
kept, since a session pins one), environments, and sessions (each the chain of turns of one task).

What a session *does* is not here: its task, transcript, approvals and events are the core's."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

agents = sa.Table(
    "bg_managed_agents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),  # name, description, model, system, tools, metadata (as answered)
    sa.Column("created_at", sa.Float, nullable=False),  # of the agent (its first version)
    sa.Column("updated_at", sa.Float, nullable=False),  # of this version
    sa.Column("archived_at", sa.Float, nullable=True),  # set on every version when archived
)

environments = sa.Table(
    "bg_managed_environments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),  # name, description, config, metadata
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("archived_at", sa.Float, nullable=True),
)

sessions = sa.Table(
    "bg_managed_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(64), nullable=False, unique=True),  # launched by the first user.message
    sa.Column("agent_id", sa.String(64), nullable=False, index=True),
    sa.Column("agent_version", sa.Integer, nullable=False),
    sa.Column("environment_id", sa.String(64), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("archived_at", sa.Float, nullable=True),
)
