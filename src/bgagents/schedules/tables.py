"""The schedule tables, on their own metadata: created by the runtime when this extension attaches.

`bg_schedule_runs` has one row per schedule and scheduled time, inserted in the transaction that
starts the run (the task or the conversation event): the unique pair is what makes a run fire once
across restarts and across processes on one database."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schedules = sa.Table(
    "bg_schedules",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),  # prompt, cron, at, timezone, conversation, agent, model, catch_up
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("source", sa.String(16), nullable=False),  # api, file, agent
    sa.Column("origin", sa.String(200), nullable=True, unique=True),  # the agent's tool call: found again on a replay
    sa.Column("file_entry", sa.JSON, nullable=True),  # the schedules.toml entry as last read (to see it change)
    sa.Column("cursor", sa.Float, nullable=False),  # runs scheduled up to here are handled
    sa.Column("done", sa.Boolean, nullable=False, default=False),  # a one-shot that fired or was dropped
    sa.Column("created_at", sa.Float, nullable=False),
)

runs = sa.Table(
    "bg_schedule_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("schedule", sa.String(64), nullable=False),
    sa.Column("scheduled_at", sa.Float, nullable=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Column("manual", sa.Boolean, nullable=False, default=False),  # run-now
    sa.Column("missed_by", sa.Float, nullable=True),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("event", sa.String(64), nullable=True),  # the conversation event's name
    sa.Column("error", sa.Text, nullable=True),  # why it could not start (e.g. its model is gone)
    sa.UniqueConstraint("schedule", "scheduled_at"),
)
