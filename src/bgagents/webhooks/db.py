"""The webhook tables, beside the runtime's in the same database (created at start when missing)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

subscriptions = sa.Table(
    "bg_webhooks",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),  # event types it wants
    sa.Column("secret", sa.Text, nullable=False),  # whsec_…, shown once when made through the API
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("source", sa.String(16), nullable=False),  # api | config | launch
    sa.Column("task_id", sa.String(64), nullable=True, index=True),  # a per-launch webhook: only this task
    sa.Column("created_at", sa.Float, nullable=False),
)

deliveries = sa.Table(
    "bg_webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the webhook-id header: the same on every try
    sa.Column("webhook_id", sa.String(32), nullable=False, index=True),
    sa.Column("event_seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the exact body, so every try sends the same bytes
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending | delivered | failed
    sa.Column("tries", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),  # a process sending it holds it until then
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.UniqueConstraint("webhook_id", "event_seq"),
)

tries = sa.Table(
    "bg_webhook_tries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(40), nullable=False, index=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
)

cursor = sa.Table(
    "bg_webhook_cursor",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),  # events up to here have their deliveries made
)
