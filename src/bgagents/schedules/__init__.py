"""Schedules (SPEC 6): cron expressions and one-shot times that start a task or send a conversation a
`schedule-trigger` event, each exactly once. An extension of the core (see `core/extensions.py`)."""
