"""The conversation tables, on their own metadata: created by the runtime when this extension attaches."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

conversations = sa.Table(
    "bg_conversations",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("main_task_id", sa.String(64), nullable=True),  # the main session; None until the first event
    sa.Column("next_seq", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", sa.Float, nullable=False),
)

conv_events = sa.Table(
    "bg_conv_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),  # per conversation: the order events are taken in
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),  # the ConversationEvent
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, started, done
    sa.Column("task_id", sa.String(64), nullable=True),  # the session whose turn took it
    sa.Column("turn", sa.Integer, nullable=True),
    sa.Column("plan", sa.JSON, nullable=True),  # how its turn starts (new, resume, fork) and its prompt, decided once
    # where it came from outside (e.g. a Telegram update): the same source is stored once, so a redelivery is ignored
    sa.Column("source", sa.String(128), nullable=True, unique=True),
    sa.UniqueConstraint("conversation_id", "seq"),
    sa.Index("ix_bg_conv_events_pending", "conversation_id", "status"),
)

conv_sessions = sa.Table(
    "bg_conv_sessions",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(128), nullable=False, index=True),
    sa.Column("name", sa.String(64), nullable=False),  # the name of the event its current turn answers
    sa.Column("prompt", sa.Text, nullable=False),  # the person's own words (or the agent's prompt), not the XML
    sa.Column("role", sa.String(16), nullable=False),  # main, background
    sa.Column("killed", sa.Boolean, nullable=False, default=False),
    sa.Column("result_override", sa.JSON, nullable=True),  # a health check's output for a stopped session
    sa.Column("turn_started_at", sa.Float, nullable=False),
    sa.Column("last_check_at", sa.Float, nullable=True),
    sa.Column("origin", sa.String(128), nullable=True, unique=True),  # what started it: found again on a replay
)

conv_outcomes = sa.Table(
    "bg_conv_outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(128), nullable=False),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("turn", sa.Integer, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("killed", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("handled", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("task_id", "turn"),
    sa.Index("ix_bg_conv_outcomes_pending", "conversation_id", "handled"),
)

conv_responses = sa.Table(
    "bg_conv_responses",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(128), nullable=False, index=True),
    sa.Column("event_name", sa.String(64), nullable=True),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("action_reason", sa.Text, nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("files", sa.JSON, nullable=False, default=list),
    sa.Column("buttons", sa.JSON, nullable=False, default=list),
    sa.Column("delivered", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
